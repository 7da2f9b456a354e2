#!/usr/bin/env bash
# The test command: builds clunet twice (optimised, and with AddressSanitizer
# and UndefinedBehaviorSanitizer) and runs the suite on both (the sanitised
# build without the slow and impl suites, see below), then the fuzzers.
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
	# unsanitised only: the "slow" suite (real layouts, gigabytes of random weights) and the
	# "impl" suites (the same op and model tests with one implementation forced: they differ
	# from the default run in kernels, which the sanitizers do not see, not in host code)
	skip=()
	[ "$dir" = build-asan ] && skip=(--no-suite slow --no-suite impl)
	# new_delete_type_mismatch=0: clFFT 2.12 deletes its plan actions through a base class
	# without a virtual destructor (clMathLibraries/clFFT PR #219, never merged), inside
	# clfftDestroyPlan; nothing of ours. Every other ASan check stays on. tools/lsan.supp
	# likewise names clFFT's own leaks, and PoCL's.
	ASAN_OPTIONS=detect_leaks=1:new_delete_type_mismatch=0 \
		LSAN_OPTIONS=suppressions="$PWD/tools/lsan.supp":print_suppressions=0 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$dir" --print-errorlogs "${skip[@]}"
done
# the parser fuzzers, briefly, when clang and its libFuzzer runtime are there
if command -v clang > /dev/null; then
	tools/fuzz.sh 20
fi
