#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and end-to-end).
# Usage: scripts/test.sh [swift test --filter expression]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_swift
ensure_packages "${SUPERVISOR_APT_PACKAGES[@]}"

ensure_ansible

say "building (debug, with tests)"
swift build --build-tests

if [[ $(id -u) -ne 0 ]]; then
    say "WARNING: not root: tests that run a client as another user will record a loud skip issue and fail; CI runs as root"
fi

if [[ $# -eq 0 ]]; then
    say "fuzzing the config core with libFuzzer (bounded: ${FUZZ_SECONDS:-20}s)"
    bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi

say "running tests"
if [[ $# -gt 0 ]]; then
    swift test --skip-build --filter "$1"
else
    swift test --skip-build
fi
