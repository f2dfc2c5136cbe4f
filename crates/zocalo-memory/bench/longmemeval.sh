#!/usr/bin/env bash
# Memory at scale (issue 24, goal 2): LongMemEval-S haystacks imported through the real CLI
# (`zocalo memory import`) into a fresh data home, timed, then every question searched in its
# own scope by one `zocalo memory search --batch`; the example bench_longmemeval writes the
# input files and scores the output beside BM25 alone and the seed's hashed TF-IDF.
#
# Usage: bench/longmemeval.sh [PER_TYPE]   (default 10 per question type: 60 questions)
# Env: ZOCALO     the binary to measure (default $CARGO_TARGET_DIR/debug/zocalo)
#      MODELS     a models dir holding all-minilm-l6-v2 (`zocalo models fetch`); required
#      DATA       the shared benchmarks folder (default ../shared/benchmarks from the repo)
#      CACHE      where the data set is decompressed (default ~/.cache/zocalo-bench/longmemeval)
#      IMPORT_ONLY=1  stop after the import (for timing two binaries against each other)
#      LOCOMO=1   also run LoCoMo (turns.jsonl/qa.jsonl) through the same CLI path
#      LOCOMO_ONLY=1  only LoCoMo
# The data set and everything derived from it stay outside the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")/../../.." && pwd)"
per_type="${1:-10}"
target="${CARGO_TARGET_DIR:-$here/target}"
zocalo="${ZOCALO:-$target/debug/zocalo}"
data="${DATA:-$here/../shared/benchmarks}"
cache="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zocalo-bench/longmemeval}"
: "${MODELS:?set MODELS to a models dir with all-minilm-l6-v2 (zocalo models fetch)}"
mkdir -p "$cache"

json="$cache/lme120.json"
want="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["xz_sha256"])' "$data/longmemeval/stats.json")"
echo "$want  $data/longmemeval/lme120.json.xz" | sha256sum -c --quiet -
if [ ! -s "$json" ] || [ "$json" -ot "$data/longmemeval/lme120.json.xz" ]; then
  xz -dc "$data/longmemeval/lme120.json.xz" > "$json.tmp" && mv "$json.tmp" "$json"
fi

cargo build -q -p zocalo-memory --example bench_longmemeval
bench="$target/debug/examples/bench_longmemeval"

run="$cache/run-$per_type"
"$bench" prepare "$json" "$per_type" "$run" > "$run.counts"
read -r questions memories chars < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["questions"], d["memories"], d["chars"])' "$run.counts")

home="$(mktemp -d "$cache/home.XXXXXX")"
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/models"
ln -s "$(cd "$MODELS" && pwd)/all-minilm-l6-v2" "$home/models/all-minilm-l6-v2"
export ZOCALO_HOME="$home"
unset ZOCALO_DATABASE_URL

echo "binary: $zocalo ($(stat -c %y "$zocalo" | cut -d. -f1))"
if [ "${LOCOMO_ONLY:-0}" != 1 ]; then
  echo "$questions questions, $memories memories, $chars characters; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  # Wall and CPU seconds: on a shared machine the CPU time per character is the steadier number.
  /usr/bin/time -f "%e %U %S" -o "$run.time" "$zocalo" memory import "$run/import.jsonl" --json > /dev/null
  read -r wall user sys < "$run.time"
  python3 -c 'import sys; m,c,w,u,s=int(sys.argv[1]),int(sys.argv[2]),*map(float,sys.argv[3:]); print(f"import: {w:.1f} s wall, {u+s:.1f} s CPU; {m/w:.1f} memories/s, {c/w:.0f} characters/s; {c/(u+s):.0f} characters per CPU second")' \
    "$memories" "$chars" "$wall" "$user" "$sys"
  echo "load average after import: $(cut -d' ' -f1-3 /proc/loadavg)"
  [ "${IMPORT_ONLY:-0}" = 1 ] && exit 0

  t0=$(date +%s.%N)
  "$zocalo" memory search --batch "$run/queries.jsonl" --limit 10 --json > "$run/results.json"
  t1=$(date +%s.%N)
  echo "search --batch: $(echo "$t1 - $t0" | bc) s for $questions queries (includes loading the index)"
  "$bench" score "$json" "$per_type" "$run/results.json"
fi

if [ "${LOCOMO:-0}" = 1 ] || [ "${LOCOMO_ONLY:-0}" = 1 ]; then
  "$bench" locomo-queries "$data/locomo/qa.jsonl" "$cache/locomo-queries.jsonl"
  lhome="$home/locomo"
  mkdir -p "$lhome"
  ln -s "$home/models" "$lhome/models"
  t0=$(date +%s.%N)
  ZOCALO_HOME="$lhome" "$zocalo" memory import "$data/locomo/turns.jsonl" --json > /dev/null
  t1=$(date +%s.%N)
  echo "LoCoMo import: $(echo "$t1 - $t0" | bc) s"
  ZOCALO_HOME="$lhome" "$zocalo" memory search --batch "$cache/locomo-queries.jsonl" --limit 10 --json > "$cache/locomo-results.json"
  "$bench" locomo-score "$data/locomo/turns.jsonl" "$data/locomo/qa.jsonl" "$cache/locomo-results.json"
fi
