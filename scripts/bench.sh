#!/usr/bin/env bash
# Measures upgrades under load, side by side: the naive restart, the
# hand-run script of common guides, supervisorctl swap and rollback (after
# and inside the warm hold) through real Caddy and nginx, and a swap in
# socket-handoff mode; then the daemon's own cost and a soak of 300 swaps.
# Writes BENCHMARKS.md and docs/benchmarks/*.png. Exits 1 if one of our
# swaps failed a request. Not part of scripts/test.sh: nothing here is a test.
#
# Usage: scripts/bench.sh [--soak N] [--idle SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_swift
ensure_packages "${SUPERVISOR_APT_PACKAGES[@]}" python3 python3-matplotlib

say "building (release)"
swift build -c release --product supervisord
swift build -c release --product supervisorctl
swift build -c release --product demo-app

say "measuring (about 8 minutes on 2 cores)"
exec /usr/bin/python3 scripts/bench/bench.py --bin "$(swift build -c release --show-bin-path)" --command "scripts/bench.sh $*" "$@"
