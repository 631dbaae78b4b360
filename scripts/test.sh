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
    # The .debs PackageTests installs: this tree's version and a higher one
    # (an upgrade), built the way operators get them. The second build is
    # incremental (only the compiled-in version differs).
    packages=.build-package/test-dist
    version="$(tr -d '[:space:]' < VERSION)"
    say "building the .deb packages for PackageTests (scripts/package.sh, release)"
    bash scripts/package.sh --with-demo-app --version "$version" --out "$packages/current" >/dev/null
    bash scripts/package.sh --version "$version+next" --out "$packages/next" >/dev/null
    export SUPERVISOR_TEST_PACKAGES="$PWD/$packages"
    say "lintian $packages/current/*.deb (no error, no warning: each override in the package says why)"
    lintian --fail-on error,warning "$packages"/current/*.deb

    say "fuzzing the config core with libFuzzer (bounded: ${FUZZ_SECONDS:-20}s)"
    bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi

say "running tests"
if [[ $# -gt 0 ]]; then
    swift test --skip-build --filter "$1"
else
    # The in-process runtime suite drives the supervisor's actor on Swift's
    # cooperative pool, which has one thread per core. The end-to-end suites
    # wait synchronously on real processes and can hold every one of those
    # threads for seconds at a time (2 cores: 2 threads), so the runtime suite
    # runs first, on its own, and the rest after it.
    swift test --skip-build --filter SupervisorRuntimeTests
    swift test --skip-build --skip SupervisorRuntimeTests
fi
