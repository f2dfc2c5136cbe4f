#!/usr/bin/env bash
# Puts LoCoMo's locomo10.json (snap-research/LoCoMo, CC BY-NC 4.0: not vendored) into a cache
# outside the repo and checks it. Usage: bench/fetch_locomo.sh [CACHE_DIR]
set -euo pipefail
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/zocalo-bench/locomo}"
sha="79fa87e90f04081343b8c8debecb80a9a6842b76a7aa537dc9fdf651ea698ff4"
mkdir -p "$dir"
f="$dir/locomo10.json"
if [ ! -s "$f" ]; then
  url="https://raw.githubusercontent.com/snap-research/LoCoMo/3eb6f2c585f5e1699204e3c3bdf7adc5c28cb376/data/locomo10.json"
  curl -fsSL --retry 3 -o "$f.tmp" "$url" || {
    rm -f "$f.tmp"
    echo "cannot download $url; copy data/locomo10.json of that commit to $f, e.g. from a" >&2
    echo "clone: git -C LoCoMo show 3eb6f2c585f5e1699204e3c3bdf7adc5c28cb376:data/locomo10.json > $f" >&2
    exit 1; }
  mv "$f.tmp" "$f"
fi
echo "$sha  $f" | sha256sum -c - >&2
echo "$f"
