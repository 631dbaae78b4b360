#!/usr/bin/env bash
# Regenerates the man pages in docs/man from the argument parsers
# (swift-argument-parser's generate-manual plugin; builds in release mode).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/man
swift package --allow-writing-to-package-directory generate-manual \
    --multi-page --date "$(date +%Y-%m-%d)" --output-directory docs/man
echo "man pages in docs/man: man -l docs/man/supervisorctl.1"
