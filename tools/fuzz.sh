#!/usr/bin/env bash
# Builds the parser fuzz targets with clang's libFuzzer (plus ASan/UBSan) in
# build-fuzz/ and runs each for SECONDS (default 20), starting from the
# checked-in corpus. A crash leaves its input in build-fuzz/fuzz-<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
if [ ! -d build-fuzz ]; then
	CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
		-Db_lundef=false > /dev/null
fi
meson compile -C build-fuzz tests/fuzz/fuzz_safetensors tests/fuzz/fuzz_config > /dev/null
for target in safetensors config; do
	work=build-fuzz/fuzz-$target
	mkdir -p "$work/corpus"
	cp tests/fuzz/corpus/$target/* "$work/corpus/"
	(cd "$work" && ../tests/fuzz/fuzz_$target -max_total_time="$seconds" -print_final_stats=1 \
		corpus 2>&1 | grep -E "^(stat::number_of_executed_units|Done|==.*ERROR)" || true)
	# libFuzzer exits non-zero on a crash; the pipeline above hides that, so check again
	if ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* > /dev/null 2>&1; then
		echo "fuzz_$target found a failing input: $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null)"
		exit 1
	fi
	echo "fuzz_$target: ${seconds}s without a failure"
done
