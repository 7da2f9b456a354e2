#!/usr/bin/env bash
# The test command: builds clunet twice (optimised, and with AddressSanitizer
# and UndefinedBehaviorSanitizer) and runs the whole suite on both.
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in build build-asan; do
	opts=()
	[ "$dir" = build-asan ] && opts=(-Db_sanitize=address,undefined -Db_lundef=false)
	if [ -d "$dir" ]; then
		meson setup --reconfigure "$dir" "${opts[@]}" > /dev/null
	else
		meson setup "$dir" "${opts[@]}" > /dev/null
	fi
	meson compile -C "$dir"
	# the "slow" suite (real layouts, gigabytes of random weights) runs unsanitised only
	skip=()
	[ "$dir" = build-asan ] && skip=(--no-suite slow)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$dir" --print-errorlogs "${skip[@]}"
done
# the parser fuzzers, briefly, when clang and its libFuzzer runtime are there
if command -v clang > /dev/null; then
	tools/fuzz.sh 20
fi
