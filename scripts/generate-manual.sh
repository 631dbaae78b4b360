#!/usr/bin/env bash
# Regenerates supervisor.toml(5) from docs/configuration.md (the table the
# config reference test keeps complete). supervisord(1) and supervisorctl(1)
# are written by hand in docs/man; ManPageTests checks them against the
# parsers' options and checks all three with `man -l`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/man/toml5.py docs/configuration.md "$(date '+%B %-d, %Y')" > docs/man/supervisor.toml.5
echo "man pages in docs/man: man -l docs/man/supervisorctl.1"
