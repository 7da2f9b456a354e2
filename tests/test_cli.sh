#!/usr/bin/env bash
# The command-line contract: exit statuses, one-line errors naming the
# file or key, run/bench/cache/info output. Usage: test_cli.sh CLUNET FIXTURES
set -u
clunet=$1
fixtures=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clunet-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CLUNET_CACHE_DIR="$tmp/cache"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "  ok: $*"; }

case_dir=$fixtures/unet2d/ddpm_cifar10_small

"$clunet" info > "$tmp/info" 2>&1 && grep -q "compute units" "$tmp/info" \
	&& ok "info lists devices" || fail "info"

"$clunet" run --model "$case_dir" --inputs "$case_dir/inputs.safetensors" \
	--output "$tmp/out.safetensors" > "$tmp/stdout" 2> "$tmp/err" && [ -s "$tmp/out.safetensors" ] \
	&& [ ! -s "$tmp/err" ] && grep -q "wrote sample \[1, 3, 32, 32\]" "$tmp/stdout" \
	&& ok "run: $(cat "$tmp/stdout")" || fail "run: $(cat "$tmp/err")"

# a 1-D model whose timestep is a Python number (safetensors metadata), and bench --length
one_d=$fixtures/unet1d/dance_positional_pyfloat
"$clunet" run --model "$one_d" --inputs "$one_d/inputs.safetensors" --output "$tmp/out1d.st" \
	> "$tmp/stdout" 2> "$tmp/err" && grep -q "UNet1DModel: wrote sample \[2, 2, 96\]" "$tmp/stdout" \
	&& ok "run (1-D): $(cat "$tmp/stdout")" || fail "run (1-D): $(cat "$tmp/err")"
"$clunet" bench --model "$fixtures/unet1d/hopper_planner_h32" --length 64 --runs 1 --json \
	> "$tmp/b1.json" 2> "$tmp/err" && grep -q '"sample": \[1, 14, 64\]' "$tmp/b1.json" \
	&& ok "bench --length" || fail "bench --length: $(cat "$tmp/err")"

# one-line errors and non-zero exit statuses
expect_error() { # what, needle, command...
	local what=$1 needle=$2
	shift 2
	if "$@" > "$tmp/out" 2> "$tmp/err"; then
		fail "$what: exit status 0"
	elif [ "$(wc -l < "$tmp/err")" -ne 1 ]; then
		fail "$what: expected one line on stderr, got: $(cat "$tmp/err")"
	elif ! grep -q -- "$needle" "$tmp/err"; then
		fail "$what: '$needle' not in: $(cat "$tmp/err")"
	else
		ok "$what: $(cat "$tmp/err")"
	fi
}
expect_error "model folder missing" "nowhere/config.json" \
	"$clunet" run --model "$tmp/nowhere" --inputs "$case_dir/inputs.safetensors" --output "$tmp/o.st"
expect_error "inputs file missing" "missing.safetensors" \
	"$clunet" run --model "$case_dir" --inputs "$tmp/missing.safetensors" --output "$tmp/o.st"
expect_error "inputs of another model" "class_labels" \
	"$clunet" run --model "$case_dir" --inputs "$fixtures/unet2d/learned_classes_gelu/inputs.safetensors" --output "$tmp/o.st"
expect_error "output folder missing" "no/such/dir" \
	"$clunet" run --model "$case_dir" --inputs "$case_dir/inputs.safetensors" --output "$tmp/no/such/dir/o.st"
expect_error "unknown option" "--frobnicate" "$clunet" run --frobnicate 3
expect_error "device that does not exist" "matches no OpenCL device" \
	"$clunet" run --device "no-such-device" --model "$case_dir" --inputs "$case_dir/inputs.safetensors" --output "$tmp/o.st"

expect_error "bench at a length the layout refuses" "multiple of 8" \
	"$clunet" bench --model "$fixtures/unet1d/hopper_planner_h32" --length 60 --runs 1

# device choice: index, platform:device, name substring, environment
name=$(sed -n 's/^device 0:0  //p' "$tmp/info" | head -1)
word=$(echo "$name" | tr -c 'A-Za-z0-9\n' ' ' | awk '{print tolower($1)}')
for spec in 0 0:0 "$word"; do
	"$clunet" run --device "$spec" --model "$case_dir" --inputs "$case_dir/inputs.safetensors" \
		--output "$tmp/dev.st" > "$tmp/stdout" 2> "$tmp/err" && grep -q "on $name" "$tmp/stdout" \
		&& ok "--device '$spec' picks $name" || fail "--device '$spec': $(cat "$tmp/err")"
done
CLUNET_DEVICE=0:0 "$clunet" run --model "$case_dir" --inputs "$case_dir/inputs.safetensors" \
	--output "$tmp/dev.st" > /dev/null 2>&1 && ok "CLUNET_DEVICE=0:0" || fail "CLUNET_DEVICE=0:0"
expect_error "device index out of range" "device '99'" env CLUNET_DEVICE=99 \
	"$clunet" run --model "$case_dir" --inputs "$case_dir/inputs.safetensors" --output "$tmp/o.st"

# bench: JSON with the documented keys; a config-only folder runs on random weights
mkdir -p "$tmp/config-only"
cp "$case_dir/config.json" "$tmp/config-only/"
for m in "$case_dir" "$tmp/config-only"; do
	if "$clunet" bench --model "$m" --runs 2 --json > "$tmp/bench.json" 2> "$tmp/err" &&
		python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("median_s", "gflop", "peak_activation_bytes", "ops", "device_peak_gflops"):
    assert k in d, k
assert d["median_s"] > 0 and d["gflop"] > 0 and d["peak_activation_bytes"] > 0
assert all({"name", "count", "total_s"} <= set(o) for o in d["ops"]) and d["ops"]
' "$tmp/bench.json"; then
		ok "bench --json on $(basename "$m")"
	else
		fail "bench --json on $m: $(cat "$tmp/err")"
	fi
done
"$clunet" bench --model "$case_dir" --batch 2 --height 16 --width 16 --runs 1 > "$tmp/bench.txt" 2>&1 \
	&& grep -q "% of the device peak" "$tmp/bench.txt" && grep -q "conv2d" "$tmp/bench.txt" \
	&& ok "bench table" || fail "bench table: $(cat "$tmp/bench.txt")"

# cache commands
[ "$("$clunet" cache path)" = "$tmp/cache" ] && ok "cache path" || fail "cache path"
"$clunet" cache list | grep -q ".bin" && ok "cache list shows entries" || fail "cache list"
"$clunet" cache --cache-dir "$tmp/cache" list | grep -q ".bin" && ok "cache OPTIONS list" || fail "cache OPTIONS list"
"$clunet" cache clear | grep -q "removed" && ! "$clunet" cache list | grep -q ".bin" \
	&& ok "cache clear" || fail "cache clear"

echo "cli: $failures failures"
[ "$failures" -eq 0 ]
