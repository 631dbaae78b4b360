#!/usr/bin/env bash
# Fuzzes the pure config core with libFuzzer for a bounded time (default 20s):
# scripts/fuzz.sh [seconds]. Exits non-zero on any crash, trap or sanitizer report.
# Fuzz/corpus holds inputs that once crashed it (regressions), run first every time.
# A new crashing input is kept in .build/fuzz-crashes/ and its cause printed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-${FUZZ_SECONDS:-20}}"
OUT="$(mktemp -d /tmp/supervisor-fuzz.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
mapfile -t SOURCES < <(find Sources/SupervisorCore -name '*.swift' | sort)
swiftc -sanitize=fuzzer,address -parse-as-library -module-name SupervisorCoreFuzz \
    "${SOURCES[@]}" Fuzz/ConfigDecoderFuzz.swift -o "$OUT/config-fuzz" 2>&1 | grep -v "warning: Cannot export local symbol" || true
[[ -x "$OUT/config-fuzz" ]] || { echo "fuzz.sh: the fuzzer did not build" >&2; exit 1; }
mkdir -p "$OUT/corpus" "$OUT/crashes"
# New units go to the first directory (scratch); Fuzz/corpus is only read.
# SWIFT_BACKTRACE=enable=no: libFuzzer's report names the input; Swift's own
# backtracer would only add pages of registers.
status=0
SWIFT_BACKTRACE=enable=no "$OUT/config-fuzz" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 \
    -artifact_prefix="$OUT/crashes/" "$OUT/corpus" Fuzz/corpus >"$OUT/log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
    mkdir -p .build/fuzz-crashes
    cp "$OUT"/crashes/* .build/fuzz-crashes/ 2>/dev/null || true
    echo "fuzz.sh: the config core crashed (libFuzzer exit $status); the cause:" >&2
    grep -E "Fatal error|ERROR:|SUMMARY|#[0-9]+ .*SupervisorCoreFuzz|Base64|Test unit written" "$OUT/log" | head -20 >&2 || tail -30 "$OUT/log" >&2
    echo "fuzz.sh: crashing input kept in .build/fuzz-crashes/; once fixed, add it to Fuzz/corpus" >&2
    exit 1
fi
tail -4 "$OUT/log"
echo "fuzz.sh: config core survived ${SECONDS_TO_RUN}s of libFuzzer (after the $(ls Fuzz/corpus | wc -l) input(s) in Fuzz/corpus that once crashed it)"
