#!/usr/bin/env bash
# The pool benchmark the issue asks for, in one run on one Postgres: N no-op jobs enqueued with
# `zocalo pool submit noop --count N`, then drained at concurrency C by `zocalo worker --drain`;
# the same with graphile-worker 0.17 (npm, installed into a temp dir, benchmark only); and
# `zocalo` on SQLite. Prints jobs/s. Usage: crates/zocalo-pool/bench/compare.sh [N] [C]
set -euo pipefail
cd "$(dirname "$0")/../../.."
N=${1:-20000}
C=${2:-10}
PG=${ZOCALO_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zocalo-target}"
cargo build -q --release -p zocalo
Z="$CARGO_TARGET_DIR/release/zocalo"
HOME_DIR=$(mktemp -d)
trap 'rm -rf "$HOME_DIR"; psql "$PG" -q -c "DROP SCHEMA IF EXISTS pool_bench CASCADE" 2>/dev/null || true' EXIT
export ZOCALO_HOME="$HOME_DIR"

now() { date +%s.%N; }
rate() { awk -v n="$N" -v a="$1" -v b="$2" 'BEGIN { printf "%.0f jobs/s (%.3f s)", n / (b - a), b - a }'; }

zocalo_run() {  # $1 label, $2 database URL
  "$Z" --database-url "$2" pool stats >/dev/null   # migrate outside the timing
  local t0 t1 t2
  t0=$(now); "$Z" --database-url "$2" pool submit noop --count "$N" >/dev/null; t1=$(now)
  "$Z" --database-url "$2" worker --drain --concurrency "$C" --poll-ms 10 2>/dev/null; t2=$(now)
  local done; done=$("$Z" --database-url "$2" pool stats --json | sed -n 's/.*"succeeded": *\([0-9]*\).*/\1/p')
  [ "$done" = "$N" ] || { echo "only $done of $N jobs succeeded" >&2; exit 1; }
  echo "zocalo ($1): enqueue $(rate "$t0" "$t1")   drain $(rate "$t1" "$t2"), concurrency $C"
}

psql "$PG" -q -c "DROP SCHEMA IF EXISTS pool_bench CASCADE; CREATE SCHEMA pool_bench"
sep='?'; case "$PG" in *\?*) sep='&';; esac
zocalo_run postgres "${PG}${sep}options=-c%20search_path%3Dpool_bench"

GW=$(mktemp -d)
(cd "$GW" && npm init -y >/dev/null && npm install --silent graphile-worker@0.17 pg >/dev/null)
NODE_PATH="$GW/node_modules" N="$N" C="$C" PG="$PG" node crates/zocalo-pool/bench/graphile.js \
  | grep -v '^\['
rm -rf "$GW"

zocalo_run sqlite "sqlite://$HOME_DIR/bench.db"
