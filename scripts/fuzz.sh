#!/usr/bin/env bash
# Fuzzes the pure config core with libFuzzer for a bounded time (default 20s):
# scripts/fuzz.sh [seconds]. Exits non-zero on any crash, trap or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-${FUZZ_SECONDS:-20}}"
OUT="$(mktemp -d /tmp/supervisor-fuzz.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
mapfile -t SOURCES < <(find Sources/SupervisorCore -name '*.swift' | sort)
swiftc -sanitize=fuzzer,address -parse-as-library -module-name SupervisorCoreFuzz \
    "${SOURCES[@]}" Fuzz/ConfigDecoderFuzz.swift -o "$OUT/config-fuzz" 2>&1 | grep -v "warning: Cannot export local symbol" || true
[[ -x "$OUT/config-fuzz" ]] || { echo "fuzz.sh: the fuzzer did not build" >&2; exit 1; }
mkdir -p "$OUT/corpus"
"$OUT/config-fuzz" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 "$OUT/corpus" 2>&1 | tail -4
echo "fuzz.sh: config core survived ${SECONDS_TO_RUN}s of libFuzzer"
