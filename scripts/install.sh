#!/usr/bin/env bash
# Builds (release) and installs supervisord and supervisorctl to
# /usr/local/bin, the systemd units to /etc/systemd/system, the emergency
# rollback script and the man pages. Never overwrites a file it did not
# install: the Python Supervisor package ships commands of the same names
# (in /usr/bin); ours go to /usr/local/bin, and an existing
# /usr/local/bin/supervisorctl that is not ours is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

PREFIX="${PREFIX:-/usr/local}"
UNITS="${UNITS:-/etc/systemd/system}"
# What this script installed, so a later run knows which files are its own.
MANIFEST="$PREFIX/share/supervisor/installed-files"

ensure_swift
ensure_packages pkg-config libsystemd-dev libcurl4-openssl-dev
say "building (release)"
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"

ours() {  # is $1 absent, or a file this script installed?
    [[ ! -e $1 ]] && return 0
    [[ -f $MANIFEST ]] && grep -qxF "$1" "$MANIFEST"
}

install_file() {  # mode source destination
    local mode=$1 source=$2 destination=$3
    if ! ours "$destination"; then
        say "NOT overwriting $destination: it was not installed by this script (the Python Supervisor's?). Remove it or set PREFIX."
        return 1
    fi
    install -D -m "$mode" "$source" "$destination"
    mkdir -p "$(dirname "$MANIFEST")"
    grep -qxF "$destination" "$MANIFEST" 2>/dev/null || echo "$destination" >> "$MANIFEST"
    echo "installed $destination"
}

status=0
for tool in supervisord supervisorctl; do
    install_file 0755 "$BIN/$tool" "$PREFIX/bin/$tool" || status=1
done
install_file 0755 scripts/emergency-rollback.sh "$PREFIX/sbin/supervisor-emergency-rollback" || status=1
for page in docs/man/*.1 docs/man/*.5 docs/man/*.8; do
    section=${page##*.}
    install_file 0644 "$page" "$PREFIX/share/man/man$section/$(basename "$page")" || status=1
done
for unit in 'supervisor@.service' 'supervisor@.socket'; do
    install_file 0644 "systemd/$unit" "$UNITS/$unit" || status=1
done
if [[ -x /usr/bin/supervisorctl ]]; then
    say "note: /usr/bin/supervisorctl exists (the Python Supervisor package); ours is $PREFIX/bin/supervisorctl, first in the default PATH"
fi
command -v systemctl >/dev/null && systemctl daemon-reload 2>/dev/null || true
say "next: write /etc/supervisor/NAME.toml, then: systemctl enable --now supervisor@NAME"
exit $status
