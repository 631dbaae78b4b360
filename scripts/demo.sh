#!/usr/bin/env bash
# The main job, end to end on this machine, with a real proxy and real load:
#   supervisord runs demo-app v1 behind the proxy; wrk sends requests through
#   it the whole time; `supervisorctl swap` upgrades to v2, then
#   `supervisorctl rollback` goes back to v1. It prints what happened
#   (requests served, failed requests, time per phase) and stops everything
#   it started.
#
# Usage: scripts/demo.sh [--proxy caddy|caddy-api|nginx]   (default: caddy)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

PROXY=caddy
while [[ $# -gt 0 ]]; do
    case "$1" in
        --proxy) PROXY="${2:-}"; shift 2 ;;
        --proxy=*) PROXY="${1#--proxy=}"; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$PROXY" in
    caddy|caddy-api|nginx) ;;
    *) echo "demo.sh: --proxy must be caddy, caddy-api or nginx, not \"$PROXY\"" >&2; exit 2 ;;
esac

ensure_swift
ensure_packages "${SUPERVISOR_APT_PACKAGES[@]}"

say "building (release; the first build takes a few minutes)"
swift build -c release >/dev/null
BIN="$(swift build -c release --show-bin-path)"

WORK="$(mktemp -d /tmp/supervisor-demo.XXXXXX)"
# The app runs as an unprivileged user (nobody), as it should in production;
# it must be able to enter the work directory to run its binary.
chmod 755 "$WORK"
APP_USER_TOML=""
if [ "$(id -u)" = 0 ]; then APP_USER_TOML='user = "nobody"'; fi
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

# The "binaries": v1 and v2 of demo-app, each a compiled ELF as a real
# service is (a copy of demo-app with its options baked into a trailer line
# it reads from /proc/self/exe). v2 takes half a second to start listening,
# so switching before it is healthy would show as errors.
mkdir -p "$WORK/bin" "$WORK/release"
cp "$BIN/demo-app" "$WORK/bin/app"
printf '\n#demo-app-args: --version-tag v1\n' >> "$WORK/bin/app"
cp "$BIN/demo-app" "$WORK/release/app-v2"
printf '\n#demo-app-args: --version-tag v2 --start-delay-ms 500\n' >> "$WORK/release/app-v2"
chmod 755 "$WORK/bin/app" "$WORK/release/app-v2"

mkdir -p "$WORK/proxy"
case "$PROXY" in
caddy)
    echo "to 127.0.0.1:$PORT_A" > "$WORK/proxy/upstream"
    cat > "$WORK/proxy/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$ADMIN_PORT
	auto_https off
	grace_period 2s
}
:$PROXY_PORT {
	reverse_proxy {
		import $WORK/proxy/upstream
		lb_try_duration 2s
		lb_try_interval 50ms
	}
}
CADDY
    PROXY_TOML="kind = \"caddy\"
upstream_file = \"$WORK/proxy/upstream\"
config = \"$WORK/proxy/Caddyfile\"
admin = \"http://127.0.0.1:$ADMIN_PORT\""
    PROXY_CMD=(caddy run --config "$WORK/proxy/Caddyfile" --adapter caddyfile)
    ;;
caddy-api)
    cat > "$WORK/proxy/caddy.json" <<JSON
{"admin": {"listen": "127.0.0.1:$ADMIN_PORT"},
 "apps": {"http": {"grace_period": "2s", "servers": {"demo": {
   "listen": [":$PROXY_PORT"], "automatic_https": {"disable": true},
   "routes": [{"handle": [{"handler": "reverse_proxy",
     "upstreams": [{"@id": "demo-upstream", "dial": "127.0.0.1:$PORT_A"}],
     "load_balancing": {"try_duration": "2s", "try_interval": "50ms"}}]}]}}}}}
JSON
    PROXY_TOML="kind = \"caddy-api\"
admin = \"http://127.0.0.1:$ADMIN_PORT\"
upstream_id = \"demo-upstream\""
    PROXY_CMD=(caddy run --config "$WORK/proxy/caddy.json")
    ;;
nginx)
    echo "server 127.0.0.1:$PORT_A;" > "$WORK/proxy/upstream.conf"
    mkdir -p "$WORK/proxy/tmp" && chmod 777 "$WORK/proxy/tmp"
    cat > "$WORK/proxy/nginx.conf" <<NGINX
daemon off;
pid $WORK/proxy/nginx.pid;
error_log $WORK/proxy/error.log notice;
worker_processes 2;
worker_shutdown_timeout 10s;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/proxy/tmp/body;
    proxy_temp_path $WORK/proxy/tmp/proxy;
    fastcgi_temp_path $WORK/proxy/tmp/fastcgi;
    uwsgi_temp_path $WORK/proxy/tmp/uwsgi;
    scgi_temp_path $WORK/proxy/tmp/scgi;
    upstream demo {
        include $WORK/proxy/upstream.conf;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
        }
    }
}
NGINX
    NGINX=(nginx -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" -e "$WORK/proxy/error.log")
    PROXY_TOML="kind = \"nginx\"
upstream_file = \"$WORK/proxy/upstream.conf\"
config = \"$WORK/proxy/nginx.conf\"
pid_file = \"$WORK/proxy/nginx.pid\"
validate = [\"nginx\", \"-p\", \"$WORK/proxy\", \"-c\", \"$WORK/proxy/nginx.conf\", \"-e\", \"$WORK/proxy/error.log\", \"-t\", \"-q\"]
reload = [\"nginx\", \"-p\", \"$WORK/proxy\", \"-c\", \"$WORK/proxy/nginx.conf\", \"-e\", \"$WORK/proxy/error.log\", \"-s\", \"reload\"]"
    PROXY_CMD=("${NGINX[@]}")
    ;;
esac

cat > "$WORK/demo.toml" <<TOML
name = "demo"
state_dir = "$WORK/state"

[app]
binary = "$WORK/bin/app"
args = ["--port", "{port}"]
ports = [$PORT_A, $PORT_B]
stop_timeout = "5s"
version_command = ["{binary}", "--version"]
$APP_USER_TOML

[health]
path = "/health"
interval = "50ms"
start_timeout = "10s"

[proxy]
$PROXY_TOML

[control]
socket = "$WORK/demo.sock"
TOML

export XDG_DATA_HOME="$WORK/proxy/data" XDG_CONFIG_HOME="$WORK/proxy/config"
export SUPERVISOR_SOCKET="$WORK/demo.sock"
CTL="$BIN/supervisorctl"

say "starting $PROXY on 127.0.0.1:$PROXY_PORT"
"${PROXY_CMD[@]}" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/" && break; sleep 0.1; done

say "starting supervisord with demo-app v1 (log: $WORK/supervisord.log)"
"$BIN/supervisord" --config "$WORK/demo.toml" >"$WORK/supervisord.log" 2>&1 &
PIDS=("$!" "${PIDS[@]}")
for _ in $(seq 1 100); do
    "$CTL" status --json 2>/dev/null | grep -q '"phase":"running"' && break
    sleep 0.1
done
"$CTL" status
APP_PID="$("$CTL" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("pid") or "")')"
[ -n "$APP_PID" ] && echo "the app (pid $APP_PID) runs as: $(ps -o user= -p "$APP_PID")"
echo "through $PROXY: $(curl -s "http://127.0.0.1:$PROXY_PORT/")"

say "load: wrk -t2 -c16 -H 'Connection: close' through $PROXY, for the whole demo"
# wrk stops and prints its summary on SIGINT; a background job of a script
# ignores SIGINT, so start it with the default disposition restored.
python3 -c 'import os,signal,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp("wrk", sys.argv[1:])' \
    wrk -t2 -c16 -d300s --timeout 5s -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep 1

say "supervisorctl swap $WORK/release/app-v2"
"$CTL" swap "$WORK/release/app-v2" --json >"$WORK/swap.json"
echo "through $PROXY: $(curl -s "http://127.0.0.1:$PROXY_PORT/")"
sleep 1

say "supervisorctl rollback"
"$CTL" rollback --json >"$WORK/rollback.json"
echo "through $PROXY: $(curl -s "http://127.0.0.1:$PROXY_PORT/")"
sleep 1

kill -INT "$WRK_PID"
wait "$WRK_PID" || true

say "supervisorctl history"
"$CTL" history

say "summary"
python3 - "$PROXY" "$WORK/wrk.out" "$WORK/swap.json" "$WORK/rollback.json" <<'PY'
import json, re, sys
proxy = sys.argv[1]
wrk = open(sys.argv[2]).read()
requests = int(re.search(r"(\d+) requests in", wrk).group(1))
non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", wrk) or [0, 0])[1])
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk)
connect, read, write, timeout = (int(x) for x in sock.groups()) if sock else (0, 0, 0, 0)
print(f"requests served through {proxy:<6}: {requests}")
print(f"failed responses (non-2xx)    : {non2xx}")
print(f"socket errors                 : connect {connect}, read {read}, write {write}, timeout {timeout}")
if proxy != "nginx" and connect + read + write + timeout:
    print("  (Caddy 2.6 resets a few queued client connections on every config change,")
    print("   ours or by hand; see docs/operations.md 'What zero failed requests means')")
order = ["stage", "preflight", "start", "health", "switch", "drain", "stop", "commit"]
for path in sys.argv[3:]:
    r = json.load(open(path))
    phases = ", ".join(f"{p} {r['phases_ms'][p]}" for p in order if p in r["phases_ms"])
    frm, to = r["from"].get("version"), r["to"].get("version")
    status = "ok" if r["ok"] else f"FAILED: {r['error']['message']}"
    print(f"{r['action']:<8} {frm} -> {to}: {status} in {r['total_ms']} ms ({phases})")
sys.exit(0 if non2xx == 0 else 1)
PY
say "done: stopping supervisord, $PROXY and the app"
