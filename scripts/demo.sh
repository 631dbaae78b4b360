#!/usr/bin/env bash
# The main job, end to end on this machine: builds (release), starts
# supervisord with demo-app v1 in a temp dir, shows `supervisorctl status`,
# kills the app to show a supervised restart, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_swift
ensure_packages "${SUPERVISOR_APT_PACKAGES[@]}"

say "building (release)"
swift build -c release --product supervisord >/dev/null
swift build -c release --product supervisorctl >/dev/null
swift build -c release --product demo-app >/dev/null
BIN="$(swift build -c release --show-bin-path)"

WORK="$(mktemp -d /tmp/supervisor-demo.XXXXXX)"
DAEMON_PID=""
cleanup() {
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Two free side ports.
read -r PORT_A PORT_B < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')

mkdir -p "$WORK/bin"
cp "$BIN/demo-app" "$WORK/bin/demo-app"
cat > "$WORK/demo.toml" <<TOML
name = "demo"
state_dir = "$WORK/state"

[app]
binary = "$WORK/bin/demo-app"
args = ["--port", "{port}", "--version-tag", "v1"]
ports = [$PORT_A, $PORT_B]
stop_timeout = "5s"

[health]
path = "/health"
interval = "100ms"
start_timeout = "10s"

[control]
socket = "$WORK/demo.sock"
TOML

export SUPERVISOR_SOCKET="$WORK/demo.sock"
CTL="$BIN/supervisorctl"

say "checking the config: supervisord --config demo.toml --check"
"$BIN/supervisord" --config "$WORK/demo.toml" --check

say "starting supervisord (log: $WORK/supervisord.log)"
"$BIN/supervisord" --config "$WORK/demo.toml" >"$WORK/supervisord.log" 2>&1 &
DAEMON_PID=$!

for _ in $(seq 1 100); do
    "$CTL" status --json 2>/dev/null | grep -q '"phase":"running"' && break
    sleep 0.1
done

say "supervisorctl status"
"$CTL" status
say "the app answers on its port: curl http://127.0.0.1:$PORT_A/"
curl -s "http://127.0.0.1:$PORT_A/"

APP_PID="$("$CTL" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')"
say "killing the app (pid $APP_PID) with SIGKILL: supervisord restarts it"
kill -KILL "$APP_PID"
for _ in $(seq 1 100); do
    NEW_PID="$("$CTL" status --json 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["pid"] if s["phase"]=="running" else "")' 2>/dev/null || true)"
    [[ -n $NEW_PID && $NEW_PID != "$APP_PID" ]] && break
    sleep 0.1
done
"$CTL" status

say "stopping supervisord with SIGTERM: it stops the app first"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" && echo "supervisord exited 0"
DAEMON_PID=""
if kill -0 "${NEW_PID:-0}" 2>/dev/null; then
    echo "error: app $NEW_PID still running" >&2
    exit 1
fi
say "daemon log:"
sed 's/^/    /' "$WORK/supervisord.log"
say "done: nothing left running"
