#!/usr/bin/env bash
# The main job, end to end on this machine, with real Caddy and real load:
#   supervisord runs demo-app v1 behind Caddy; wrk sends requests through
#   Caddy the whole time; `supervisorctl swap` upgrades to v2, then
#   `supervisorctl rollback` goes back to v1. It prints what happened
#   (requests served, failed requests, time per phase) and stops everything
#   it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

ensure_swift
ensure_packages "${SUPERVISOR_APT_PACKAGES[@]}"

say "building (release; the first build takes a few minutes)"
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"

WORK="$(mktemp -d /tmp/supervisor-demo.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_ports() {
    python3 -c 'import socket,sys
s=[socket.socket() for _ in range(int(sys.argv[1]))]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])' "$1"
}
read -r PORT_A PORT_B PROXY_PORT ADMIN_PORT < <(free_ports 4)

# The "binaries": v1 and v2 of demo-app (v2 takes half a second to start
# listening, so switching before it is healthy would show as errors).
mkdir -p "$WORK/bin" "$WORK/release" "$WORK/caddy"
cp "$BIN/demo-app" "$WORK/demo-app"
printf '#!/bin/sh\nexec %s --version-tag v1 "$@"\n' "$WORK/demo-app" > "$WORK/bin/app"
printf '#!/bin/sh\nexec %s --version-tag v2 --start-delay-ms 500 "$@"\n' "$WORK/demo-app" > "$WORK/release/app-v2"
chmod 755 "$WORK/bin/app" "$WORK/release/app-v2"

echo "to 127.0.0.1:$PORT_A" > "$WORK/caddy/upstream"
cat > "$WORK/caddy/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$ADMIN_PORT
	auto_https off
	grace_period 2s
}
:$PROXY_PORT {
	reverse_proxy {
		import $WORK/caddy/upstream
		lb_try_duration 2s
		lb_try_interval 50ms
	}
}
CADDY

cat > "$WORK/demo.toml" <<TOML
name = "demo"
state_dir = "$WORK/state"

[app]
binary = "$WORK/bin/app"
args = ["--port", "{port}"]
ports = [$PORT_A, $PORT_B]
stop_timeout = "5s"
version_command = ["{binary}", "--version"]

[health]
path = "/health"
interval = "50ms"
start_timeout = "10s"

[proxy]
kind = "caddy"
upstream_file = "$WORK/caddy/upstream"
config = "$WORK/caddy/Caddyfile"
admin = "http://127.0.0.1:$ADMIN_PORT"

[control]
socket = "$WORK/demo.sock"
TOML

export XDG_DATA_HOME="$WORK/caddy/data" XDG_CONFIG_HOME="$WORK/caddy/config"
export SUPERVISOR_SOCKET="$WORK/demo.sock"
CTL="$BIN/supervisorctl"

say "starting Caddy on :$PROXY_PORT (admin 127.0.0.1:$ADMIN_PORT)"
caddy run --config "$WORK/caddy/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN_PORT/config/" >/dev/null && break; sleep 0.1; done

say "starting supervisord with demo-app v1 (log: $WORK/supervisord.log)"
"$BIN/supervisord" --config "$WORK/demo.toml" >"$WORK/supervisord.log" 2>&1 &
PIDS=("$!" "${PIDS[@]}")
for _ in $(seq 1 100); do
    "$CTL" status --json 2>/dev/null | grep -q '"phase":"running"' && break
    sleep 0.1
done
"$CTL" status
echo "through Caddy: $(curl -s "http://127.0.0.1:$PROXY_PORT/")"

say "load: wrk -t2 -c16 -H 'Connection: close' through Caddy, for the whole demo"
# wrk stops and prints its summary on SIGINT; a background job of a script
# ignores SIGINT, so start it with the default disposition restored.
python3 -c 'import os,signal,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp("wrk", sys.argv[1:])' \
    wrk -t2 -c16 -d300s --timeout 5s -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep 1

say "supervisorctl swap $WORK/release/app-v2"
"$CTL" swap "$WORK/release/app-v2" --json >"$WORK/swap.json"
echo "through Caddy: $(curl -s "http://127.0.0.1:$PROXY_PORT/")"
sleep 1

say "supervisorctl rollback"
"$CTL" rollback --json >"$WORK/rollback.json"
echo "through Caddy: $(curl -s "http://127.0.0.1:$PROXY_PORT/")"
sleep 1

kill -INT "$WRK_PID"
wait "$WRK_PID" || true

say "supervisorctl history"
"$CTL" history

say "summary"
python3 - "$WORK/wrk.out" "$WORK/swap.json" "$WORK/rollback.json" <<'PY'
import json, re, sys
wrk = open(sys.argv[1]).read()
requests = int(re.search(r"(\d+) requests in", wrk).group(1))
non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", wrk) or [0, 0])[1])
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk)
connect, read, write, timeout = (int(x) for x in sock.groups()) if sock else (0, 0, 0, 0)
print(f"requests served through Caddy : {requests}")
print(f"failed responses (non-2xx)    : {non2xx}")
print(f"socket errors                 : connect {connect}, read {read}, write {write}, timeout {timeout}")
print("  (Caddy 2.6 resets a few queued client connections on every reload, ours or")
print("   by hand; see README 'What zero failed requests means')")
order = ["stage", "preflight", "start", "health", "switch", "drain", "stop", "commit"]
for path in sys.argv[2:]:
    r = json.load(open(path))
    phases = ", ".join(f"{p} {r['phases_ms'][p]}" for p in order if p in r["phases_ms"])
    frm, to = r["from"].get("version"), r["to"].get("version")
    status = "ok" if r["ok"] else f"FAILED: {r['error']['message']}"
    print(f"{r['action']:<8} {frm} -> {to}: {status} in {r['total_ms']} ms ({phases})")
sys.exit(0 if non2xx == 0 else 1)
PY
say "done: stopping supervisord, Caddy and the app"
