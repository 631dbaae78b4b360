#!/bin/sh
# Emergency rollback in plain POSIX sh, for a host where the supervisor's own
# binaries cannot run. Does what `supervisorctl rollback --emergency` does:
# puts <binary>.bak back as <binary> (keeping the one it replaces as .bak) and
# restarts the unit.
#
# Usage: emergency-rollback.sh /etc/supervisor/NAME.toml
#   Reads `name` and `[app] binary` from the config (plain `key = "value"` lines).
#   Restart command: $SUPERVISOR_RESTART_COMMAND if set, else
#   `systemctl restart supervisor@NAME`.
#
# Without renameat2 from sh the exchange is three steps, each an atomic
# rename or link, so <binary> exists at every instant:
#   ln <binary> <binary>.emergency.PID; mv <binary>.bak <binary>; mv <binary>.emergency.PID <binary>.bak
set -eu

say() { printf '%s\n' "$*" >&2; }
die() { say "emergency-rollback: $*"; exit 1; }

[ $# -eq 1 ] || { say "usage: $0 /etc/supervisor/NAME.toml"; exit 2; }
config=$1
[ -r "$config" ] || die "cannot read $config"

# name = "…" at top level; binary = "…" inside [app].
name=$(awk -F'"' '/^\[/{exit} /^[ \t]*name[ \t]*=/{print $2; exit}' "$config")
binary=$(awk -F'"' '/^\[app\]/{app=1; next} /^\[/{app=0} app && /^[ \t]*binary[ \t]*=/{print $2; exit}' "$config")
[ -n "$name" ] || die "no name = \"…\" line in $config"
[ -n "$binary" ] || die "no binary = \"…\" line under [app] in $config"

backup="$binary.bak"
[ -e "$backup" ] || die "no previous binary to roll back to: $backup does not exist"
[ -e "$binary" ] || die "$binary does not exist; restore it by hand: cp -p $backup $binary"

temp="$binary.emergency.$$"
say "emergency rollback of $name ($config), without the daemon"
ln -f "$binary" "$temp"
mv -f "$backup" "$binary"
mv -f "$temp" "$backup"
say "  exchanged $binary and $backup: the previous binary is live, the one it replaced is kept as $backup"

restart=${SUPERVISOR_RESTART_COMMAND:-"systemctl restart supervisor@$name"}
say "  restarting: $restart"
if sh -c "$restart"; then
    say "ok: rolled back; check it with: supervisorctl --name $name status"
else
    die "the binaries are exchanged, but \`$restart\` failed; restart the service by hand"
fi
