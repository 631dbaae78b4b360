#!/bin/sh
# Emergency rollback in plain POSIX sh, for a host where the supervisor's own
# binaries cannot run. Does what `supervisorctl rollback --emergency` does,
# except wait for the confirmation (check it with `supervisorctl status`):
#
#   1. <binary>.bak must be a regular, executable, non-empty file; else
#      nothing is touched (exit 1).
#   2. A running supervisord for the service (the pid holding
#      <state_dir>/supervisord.lock, from /proc/locks) is stopped with
#      SIGKILL, hung or not: the app is not signalled and keeps serving. The
#      lock is then held (flock) until step 3 is done.
#   3. <binary> and <binary>.bak trade places; the record the next daemon
#      reads (<state_dir>/emergency-rollback.json) and a history line are
#      written.
#   4. The daemon is started again: $SUPERVISOR_RESTART_COMMAND if set, else
#      [control] emergency_restart from the config (a one-line array of
#      words without spaces), else `systemctl start supervisor@NAME`. It adopts the running instance and
#      moves traffic to the restored binary the way a rollback does. If that
#      start fails, the files stay exchanged: exit 5 (past the point of no
#      return; start the service by hand).
#
# Usage: emergency-rollback.sh /etc/supervisor/NAME.toml
#   Reads `name`, `state_dir`, `[app] binary`, `[control] socket` and
#   `[control] emergency_restart` from the config (plain `key = "value"` / `key = ["a", "b"]` lines).
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

# top-level `key = "…"` (before the first table), and `key = …` inside [table].
top() { awk -F'"' -v key="$1" '/^\[/{exit} $0 ~ "^[ \t]*" key "[ \t]*=" {print $2; exit}' "$config"; }
in_table() { awk -v table="[$1]" -v key="$2" '/^\[/{inside = ($0 == table); next} inside && $0 ~ "^[ \t]*" key "[ \t]*=" {sub(/^[^=]*=[ \t]*/, ""); print; exit}' "$config"; }

name=$(top name)
binary=$(in_table app binary | awk -F'"' '{print $2}')
[ -n "$name" ] || die "no name = \"…\" line in $config"
[ -n "$binary" ] || die "no binary = \"…\" line under [app] in $config"
# The state directory the daemon last used: what it wrote next to its control
# socket (under systemd $STATE_DIRECTORY wins over state_dir), else the config's.
socket=$(in_table control socket | awk -F'"' '{print $2}')
socket=${socket:-/run/supervisor/$name.sock}
state_dir=
if [ -r "$socket.state-dir" ]; then state_dir=$(head -n 1 "$socket.state-dir"); fi
case "$state_dir" in /*) ;; *) state_dir=${STATE_DIRECTORY:-$(top state_dir)} ;; esac
state_dir=${state_dir:-/var/lib/supervisor/$name}

backup="$binary.bak"
if [ ! -e "$backup" ]; then die "no previous binary to roll back to: $backup does not exist; nothing was exchanged or restarted"; fi
if [ ! -f "$backup" ]; then die "$backup is not a regular file; it cannot run; nothing was exchanged or restarted"; fi
if [ ! -x "$backup" ]; then die "$backup is not executable; it cannot run; nothing was exchanged or restarted"; fi
if [ ! -s "$backup" ]; then die "$backup is empty; it cannot run; nothing was exchanged or restarted"; fi
[ -e "$binary" ] || die "$binary does not exist; restore it by hand: cp -p $backup $binary"

say "emergency rollback of $name ($config), without the daemon"

# The daemon holding the lock, from /proc/locks ("1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF").
lock="$state_dir/supervisord.lock"
holder() {
    [ -e "$lock" ] || return 0
    inode=$(stat -c %i "$lock")
    awk -v inode="$inode" '$2 == "FLOCK" { n = split($6, part, ":"); if (part[n] == inode) { print $5; exit } }' /proc/locks
}
# Take the daemon's lock (fd 9, held until the files and the record are in
# place): a daemon systemd restarts meanwhile finds it taken and exits 2
# instead of adopting the app without the record. Whoever holds it is stopped
# with SIGKILL (never SIGTERM, which stops the app).
mkdir -p "$state_dir"
exec 9>>"$lock"
tries=0
stopped=
until flock -n 9; do
    pid=$(holder)
    if [ -n "$pid" ]; then
        # Only a daemon is killed: another emergency rollback holding the lock is left to finish.
        case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
        */supervisord*) ;;
        *) die "$lock is held by pid $pid ($(readlink "/proc/$pid/exe" 2>/dev/null || echo "executable unknown")), not supervisord: another emergency rollback runs? Nothing was exchanged or restarted" ;;
        esac
        kill -KILL "$pid" 2>/dev/null || [ ! -d "/proc/$pid" ] || die "cannot stop supervisord (pid $pid); nothing was exchanged or restarted (run it as root)"
        case " $stopped " in *" $pid "*) ;; *)
            stopped="$stopped $pid"
            say "  stopped supervisord (pid $pid) with SIGKILL; the app was not signalled and keeps serving" ;;
        esac
    fi
    tries=$((tries + 1))
    [ $tries -lt 200 ] || die "$lock is still held 10 s after SIGKILL; nothing was exchanged or restarted"
    sleep 0.05
done

restart=${SUPERVISOR_RESTART_COMMAND:-}
if [ -z "$restart" ]; then
    # ["a", "b {name}"] -> a b NAME (words without spaces, as the defaults are)
    restart=$(in_table control emergency_restart | sed -e 's/^\[//' -e 's/\][ \t]*$//' -e 's/"//g' -e 's/,/ /g' -e "s/{name}/$name/g")
fi
restart=${restart:-"systemctl start supervisor@$name"}

if [ -r "$state_dir/state.json" ] && grep -q '"swap":{' "$state_dir/state.json" \
    && ! grep -Eq '"phase":"(watch|done)"' "$state_dir/state.json"; then
    say "  supervisord was stopped during a swap: $backup may not be the version to go back to; nothing was exchanged"
    exec 9>&-
    say "  starting supervisord: $restart"
    sh -c "$restart" || die "\`$restart\` failed; start the service by hand"
    die "recovery finishes or undoes that swap; run \`supervisorctl --name $name rollback\` afterwards if still needed"
fi

from=$(sha256sum "$binary" | cut -d' ' -f1)
to=$(sha256sum "$backup" | cut -d' ' -f1)
temp="$binary.emergency.$$"
ln -f "$binary" "$temp"
mv -f "$backup" "$binary"
# Past this point "nothing changed" no longer holds: any failure is exit 5
# (emergency_incomplete), and the daemon is still started.
incomplete() {
    say "emergency-rollback: $* [emergency_incomplete]"
    exec 9>&-
    sh -c "$restart" || say "  \`$restart\` failed too; start the service by hand (systemctl start supervisor@$name)"
    exit 5
}
mv -f "$temp" "$backup" || incomplete "$binary is the restored binary, but the one it replaced could not be moved to $backup (it is $temp)"
say "  exchanged $binary and $backup: the previous binary (sha256 $(printf %.12s "$to")) is $binary, the one it replaced is kept as $backup"

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
id="emergency-$(date +%s)-$$"
uid=$(id -u)
mkdir -p "$state_dir" || incomplete "the binaries are exchanged, but $state_dir cannot be created to record it"
record="$state_dir/emergency-rollback.json"
if ! { printf '{"id":"%s","time":"%s","caller_uid":%s,"from_sha256":"%s","to_sha256":"%s"}\n' \
        "$id" "$now" "$uid" "$from" "$to" > "$record.tmp.$$" && mv -f "$record.tmp.$$" "$record"; }; then
    # Without the record the started daemon would keep the rolled-away version serving while
    # the files say otherwise: put the files back as they were, and start the daemon anyway.
    rm -f "$record.tmp.$$"
    if ln -f "$binary" "$temp" && mv -f "$backup" "$binary" && mv -f "$temp" "$backup"; then
        exec 9>&-
        sh -c "$restart" || true
        die "cannot write $record; the files were exchanged back and supervisord started again: nothing changed"
    fi
    incomplete "cannot write $record, and cannot exchange the files back: $binary is the restored binary while the rolled-away one still serves"
fi
printf '{"id":"%s","time":"%s","action":"emergency-rollback","caller_uid":%s,"from":{"sha256":"%s"},"to":{"sha256":"%s"},"result":"ok","phases_ms":{},"total_ms":0}\n' \
    "$id" "$now" "$uid" "$from" "$to" >> "$state_dir/history.jsonl" || say "  warning: could not append to $state_dir/history.jsonl"
say "  recorded in $state_dir/history.jsonl; $record tells the started daemon to move traffic"

exec 9>&-
say "  starting supervisord: $restart"
if sh -c "$restart"; then
    say "ok: files exchanged and supervisord started; it moves traffic to the restored binary: check with \`supervisorctl --name $name status\` (emergency: ok)"
else
    say "emergency-rollback: the binaries are exchanged, but \`$restart\` failed; start the service by hand (systemctl start supervisor@$name) [emergency_incomplete]"
    exit 5
fi
