#!/usr/bin/env bash
# Local-model benchmarks: ours vs llama.cpp (generation) and vs sentence-transformers
# (embeddings), interleaved ROUNDS times so background load hits both sides alike.
#   PY=/path/to/venv/bin/python crates/zocalo-local/benches/run.sh [MODELS_DIR]
# PY's environment needs llama-cpp-python and sentence-transformers (benchmark only);
# ONLY=embed runs the embeddings alone (sentence-transformers only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
models=${1:-$HOME/.cache/zocalo-models-test}
py=${PY:-python3}
rounds=${ROUNDS:-3}
# PROFILE=dev uses the dev profile, where zocalo-local and candle are built at opt-level 3
# anyway (root Cargo.toml), when a release build of the whole tree is too slow to wait for.
profile=${PROFILE:-release}
cargo build --profile "$profile" -q -p zocalo-local --examples
dir=$profile; [ "$profile" = dev ] && dir=debug
ex=${CARGO_TARGET_DIR:-$here/../../../target}/$dir/examples
for r in $(seq "$rounds"); do
  echo "== round $r (load: $(cut -d' ' -f1 /proc/loadavg))"
  if [ "${ONLY:-}" != embed ]; then
    ZOCALO_MODELS=$models "$ex/local_chat" --max 64 "What is the capital of France?" 2>&1 | tail -1
    ZOCALO_MODELS=$models "$ex/local_chat" --max 128 "Write a short story about a robot who learns to paint." 2>&1 | tail -1
  fi
  ZOCALO_MODELS=$models "$ex/bench_embed" 2>/dev/null
  "$py" "$here/reference_bench.py" "$models" 2>/dev/null | grep engine
done
