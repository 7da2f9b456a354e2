#!/usr/bin/env bash
# What `clunet tune` buys on a device the defaults were not written for.
# Plans as for another CPU class (CLUNET_VEC_WIDTH: 16 = the AVX-512-class
# defaults; run on an AVX2 machine, or 8 on an AVX-512 one), in a fresh copy of
# the program cache without a tuning database: bench with those defaults, tune,
# bench again; then the same model with this device's own defaults, untuned,
# for comparison. Forward medians are printed beside the FMA peak measured in
# the same bench run.
#
#   tools/bench_tune.sh MODEL_DIR [VEC_WIDTH] [bench options, e.g. --height 64 --width 64]
#
# BENCH_TUNE_LOGS=DIR keeps the bench and tune outputs (before.txt, tune.txt,
# after.txt, native.txt) in DIR, also when the run is stopped.
set -euo pipefail
clunet=${CLUNET:-$(dirname "$0")/../build/clunet}
model=$1
width=${2:-16}
shift 2 || shift $#
cache=$(mktemp -d "${TMPDIR:-/tmp}/clunet-tune-XXXXXX")
logs=${BENCH_TUNE_LOGS:-}
trap '[ -n "$logs" ] && mkdir -p "$logs" && cp "$cache"/*.txt "$logs"/ 2>/dev/null; rm -rf "$cache"' EXIT
src=${CLUNET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clunet}
[ -d "$src" ] && cp -r "$src"/. "$cache"/ && rm -f "$cache"/*/tuning.json
export CLUNET_CACHE_DIR=$cache
summary() { grep -E "^forward|^work" "$1" | sed 's/^/    /'; }
echo "== defaults for vector width $width, untuned"
CLUNET_VEC_WIDTH=$width "$clunet" bench --model "$model" --runs 3 "$@" > "$cache/before.txt"
summary "$cache/before.txt"
echo "== clunet tune (vector width $width defaults)"
CLUNET_VEC_WIDTH=$width "$clunet" tune "$model" "$@" > "$cache/tune.txt"
tail -n 3 "$cache/tune.txt" | sed 's/^/    /'
echo "== defaults for vector width $width, tuned"
CLUNET_VEC_WIDTH=$width "$clunet" bench --model "$model" --runs 3 "$@" > "$cache/after.txt"
summary "$cache/after.txt"
echo "== this device's own defaults, untuned"
rm -f "$cache"/*/tuning.json
"$clunet" bench --model "$model" --runs 3 "$@" > "$cache/native.txt"
summary "$cache/native.txt"
med() { awk '/^forward/ { print $3 }' "$1"; }
awk -v b="$(med "$cache/before.txt")" -v a="$(med "$cache/after.txt")" \
	'BEGIN { printf "tuned / untuned forward: %.2fx faster\n", b / a }'
