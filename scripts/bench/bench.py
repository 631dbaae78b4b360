#!/usr/bin/python3
"""Benchmarks for supervisor: the usual ways to upgrade a service next to
`supervisorctl swap`, through real Caddy and nginx, under wrk load.

Run through scripts/bench.sh (it installs what is missing and builds in
release mode). Writes BENCHMARKS.md and docs/benchmarks/*.png. Exits 1 if a
swap, rollback or handoff swap of ours failed a request (see FAILURE_RULE).
"""

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OWNER = "SUPERVISOR_BENCH_OWNER=" + uuid.uuid4().hex
STEADY_S = 2.0  # load before the command: the steady-state reference
TAIL_S = 2.0  # load after the old process is gone
APP_START_DELAY_MS = 500  # every new version takes this long to listen, like a real app's start
FAILURE_RULE = (
    "a row of ours (supervisorctl swap, rollback, handoff swap, the soak) got a non-2xx answer, a failed swap, "
    "or any socket error in socket-handoff mode (no proxy reload, with or without a proxy in front); the socket errors a proxy's own reload "
    "causes (Caddy resets queued connections, nginx closes idle keep-alive connections of its old workers) "
    "are reported next to the hand-run way, which pays the same, and do not fail the run"
)


def log(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def free_ports(count):
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def wait_for(condition, timeout, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def http_get(port, path="/", timeout=2):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        conn.close()
        return response.status, body
    except OSError:
        return None, ""


def version_of(body):
    words = body.strip().split()
    return words[-1] if words else ""


class Processes:
    """Every process the bench starts carries OWNER in its environment; at
    the end each one still alive is stopped (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self.started = []

    def env(self, extra=None):
        env = dict(os.environ)
        key, value = OWNER.split("=", 1)
        env[key] = value
        env.update(extra or {})
        return env

    def start(self, argv, log_path, env=None, **kwargs):
        out = open(log_path, "ab")
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env(env), **kwargs)
        out.close()
        self.started.append(process)
        return process

    def owned_pids(self):
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if OWNER.encode() in f.read().split(b"\0"):
                        pids.append(int(name))
            except OSError:
                pass
        return pids

    def stop_all(self):
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for pid in self.owned_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- proxies


class Caddy:
    name = "caddy"

    def __init__(self, procs, work, upstream_port, try_duration="2s", tag="caddy"):
        self.dir = os.path.join(work, tag)
        if try_duration != "2s":
            self.name = f"caddy (lb_try_duration {try_duration})"
        os.makedirs(os.path.join(self.dir, "upstreams"), exist_ok=True)
        self.listen_port, self.admin_port = free_ports(2)
        self.upstream_file = os.path.join(self.dir, "upstreams", "app")
        self.caddyfile = os.path.join(self.dir, "Caddyfile")
        self.env = {"HOME": self.dir, "XDG_DATA_HOME": self.dir + "/data", "XDG_CONFIG_HOME": self.dir + "/config"}
        with open(self.upstream_file, "w") as f:
            f.write(f"to 127.0.0.1:{upstream_port}\n")
        with open(self.caddyfile, "w") as f:
            f.write(
                "{\n\tadmin 127.0.0.1:%d\n\tauto_https off\n\tgrace_period 10s\n}\n\n"
                ":%d {\n\treverse_proxy {\n\t\timport %s\n\t\tlb_try_duration %s\n\t\tlb_try_interval 50ms\n\t}\n}\n"
                % (self.admin_port, self.listen_port, self.upstream_file, try_duration))
        self.process = procs.start(["caddy", "run", "--config", self.caddyfile, "--adapter", "caddyfile"],
                                   os.path.join(self.dir, "caddy.log"), env=self.env)
        if not wait_for(lambda: http_get(self.admin_port, "/config/")[0] == 200, 20):
            raise SystemExit("caddy did not start; see " + self.dir + "/caddy.log")

    def proxy_section(self):
        return (f'[proxy]\nkind = "caddy"\nupstream_file = "{self.upstream_file}"\nconfig = "{self.caddyfile}"\n'
                f'admin = "http://127.0.0.1:{self.admin_port}"\n')

    def set_upstream(self, port, force=False):
        """The hand-run way: rewrite the upstream, reload. Caddy skips a load
        whose config is unchanged; `force` makes it reload anyway."""
        with open(self.upstream_file, "w") as f:
            f.write(f"to 127.0.0.1:{port}\n")
        subprocess.run(["caddy", "reload", "--config", self.caddyfile, "--adapter", "caddyfile",
                        "--address", f"127.0.0.1:{self.admin_port}"] + (["--force"] if force else []),
                       env={**os.environ, **self.env}, check=True, capture_output=True)


class Nginx:
    name = "nginx"

    def __init__(self, procs, work, upstream_port):
        self.dir = os.path.join(work, "nginx")
        for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.dir, "tmp", temp), exist_ok=True)
        os.chmod(os.path.join(self.dir, "tmp"), 0o777)
        self.listen_port = free_ports(1)[0]
        self.upstream_file = os.path.join(self.dir, "upstream.conf")
        self.pid_file = os.path.join(self.dir, "nginx.pid")
        self.conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(self.upstream_file, "w") as f:
            f.write(f"server 127.0.0.1:{upstream_port};\n")
        with open(self.conf, "w") as f:
            f.write(f"""daemon off;
master_process on;
worker_processes 2;
pid {self.pid_file};
error_log {d}/error.log notice;
worker_shutdown_timeout 10s;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    upstream app {{
        include {self.upstream_file};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{self.listen_port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
        }}
    }}
}}
""")
        self.prefix = ["/usr/sbin/nginx", "-p", d, "-c", self.conf, "-e", d + "/error.log"]
        self.process = procs.start(self.prefix, os.path.join(d, "nginx.out"))
        if not wait_for(lambda: os.path.exists(self.pid_file) and http_get(self.listen_port)[0] is not None, 20):
            raise SystemExit("nginx did not start; see " + d + "/error.log")

    def proxy_section(self):
        def argv(words):
            return "[" + ", ".join(json.dumps(w) for w in words) + "]"
        # No reload command: supervisord signals the master itself, as with an operator's defaults.
        return (f'[proxy]\nkind = "nginx"\nupstream_file = "{self.upstream_file}"\nconfig = "{self.conf}"\n'
                f'pid_file = "{self.pid_file}"\nvalidate = {argv(self.prefix + ["-t", "-q"])}\n')

    def set_upstream(self, port, force=False):
        """nginx reloads on every SIGHUP, changed or not: `force` changes nothing."""
        with open(self.upstream_file, "w") as f:
            f.write(f"server 127.0.0.1:{port};\n")
        subprocess.run(self.prefix + ["-s", "reload"], check=True, capture_output=True)


# ---------------------------------------------------------------- load


class Prober:
    """Requests one after another, each timed, for the latency-over-time
    plot and the percentiles: one thread with a new connection per request
    and one reusing a keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.samples = []  # (start, latency_s, ok, version, keepalive)
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self.run, args=(keep,), daemon=True) for keep in (False, True)]
        for t in self.threads:
            t.start()

    def run(self, keepalive):
        conn = None
        while self.running:
            start = time.monotonic()
            ok, version = False, ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/", headers={} if keepalive else {"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                ok = 200 <= response.status < 300
                version = version_of(body)
                if not keepalive or response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            latency = time.monotonic() - start
            with self.lock:
                self.samples.append((start, latency, ok, version, keepalive))
            time.sleep(0.002)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(timeout=10)
        return list(self.samples)


def parse_wrk(text):
    report = {"requests": 0, "non2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    for line in text.splitlines():
        line = line.strip()
        words = line.replace(",", " ").split()
        if "requests in" in line and words and words[0].isdigit():
            report["requests"] = int(words[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            report["non2xx"] = int(words[-1])
        elif line.startswith("Socket errors:"):
            for key in ("connect", "read", "write", "timeout"):
                if key in words:
                    report[key] = int(words[words.index(key) + 1])
    report["socket"] = report["connect"] + report["read"] + report["write"] + report["timeout"]
    report["failed"] = report["non2xx"] + report["socket"]
    return report


class Load:
    """wrk with `Connection: close` and wrk with keep-alive at once, plus the prober."""

    def __init__(self, procs, work, port, connections=8):
        self.outputs = []
        self.processes = []
        for keepalive in (False, True):
            out = os.path.join(work, f"wrk-{uuid.uuid4().hex[:8]}.out")
            argv = ["wrk", "-t1", f"-c{connections}", "-d600s", "--timeout", "5s"]
            if not keepalive:
                argv += ["-H", "Connection: close"]
            argv.append(f"http://127.0.0.1:{port}/")
            self.processes.append(procs.start(argv, out))
            self.outputs.append(out)
        self.prober = Prober(port)

    def stop(self):
        samples = self.prober.stop()
        reports = []
        for process, out in zip(self.processes, self.outputs):
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            with open(out) as f:
                reports.append(parse_wrk(f.read()))
        return {"close": reports[0], "keepalive": reports[1]}, samples


# ---------------------------------------------------------------- the app and the supervisor


class Bench:
    def __init__(self, bin_dir, work, procs):
        self.bin = bin_dir
        self.work = work
        self.procs = procs
        self.versions = os.path.join(work, "versions")
        os.makedirs(self.versions, exist_ok=True)

    def version(self, tag, delay_ms=APP_START_DELAY_MS):
        """A distinct executable per version: a wrapper around demo-app."""
        path = os.path.join(self.versions, f"{tag}-{delay_ms}")
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec {self.bin}/demo-app --version-tag {tag} --start-delay-ms {delay_ms} "$@"\n')
        os.chmod(path, 0o755)
        return path

    def start_app(self, tag, port, delay_ms=APP_START_DELAY_MS):
        process = self.procs.start([self.version(tag, delay_ms), "--port", str(port)], os.path.join(self.work, f"app-{tag}-{port}.log"))
        return process

    def service(self, tag, proxy_section, ports=None, listen=None, health=None, version_command=True, app_extra=""):
        """A directory of its own with v1 (fast start) as the live binary and a
        config serving it on `ports`, or on `listen` in handoff mode."""
        directory = tempfile.mkdtemp(prefix=f"supervisord-{tag}-", dir=self.work)
        live = os.path.join(directory, "app")
        shutil.copy(self.version("v1", 0), live)
        app = f'ports = [{ports[0]}, {ports[1]}]\nargs = ["--port", "{{port}}"]\n' if ports else f'listen = ["127.0.0.1:{listen}"]\n'
        if version_command:
            app += 'version_command = ["{binary}", "--version"]\n'
        app += app_extra
        health = dict(health or {}, **({"mode": "notify"} if listen else {}))
        health_lines = "".join(f'{key} = "{value}"\n' for key, value in health.items())
        config = os.path.join(directory, "service.toml")
        with open(config, "w") as f:
            f.write(f'name = "bench"\nstate_dir = "{directory}/state"\n\n[app]\nbinary = "{live}"\n{app}\n'
                    f'[health]\n{health_lines}\n[control]\nsocket = "{directory}/control.sock"\n\n{proxy_section}')
        return directory, config

    def start_supervisord(self, directory, config, env=None):
        return self.procs.start([f"{self.bin}/supervisord", "--config", config], os.path.join(directory, "supervisord.log"), env=env)

    def supervisord(self, proxy_section, ports=None, listen=None, watch="0s", tag="row", app_extra=""):
        """A supervisord serving v1, once it runs."""
        directory, config = self.service(tag, proxy_section, ports=ports, listen=listen, health={"watch": watch}, app_extra=app_extra)
        supervisor = Supervisor(self, directory, self.start_supervisord(directory, config))
        if not wait_for(lambda: (supervisor.status() or {}).get("phase") == "running", 30, 0.05):
            raise SystemExit(f"supervisord did not start; see {directory}/supervisord.log")
        return supervisor


class Supervisor:
    def __init__(self, bench, directory, process):
        self.bench = bench
        self.directory = directory
        self.process = process
        self.socket = os.path.join(directory, "control.sock")

    def ctl(self, args):
        return subprocess.run([f"{self.bench.bin}/supervisorctl", "--socket", self.socket] + args, capture_output=True, text=True, timeout=120)

    def status(self):
        try:
            result = self.ctl(["status", "--json"])
        except subprocess.TimeoutExpired:
            return None
        # Exit 1 is a status too: the app does not serve right now.
        return json.loads(result.stdout) if result.returncode in (0, 1) and result.stdout.strip() else None

    def run(self, args):
        result = self.ctl(args + ["--json"])
        try:
            body = json.loads(result.stdout)
        except json.JSONDecodeError:
            body = {}
        if result.returncode != 0:
            log(f"supervisorctl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
        return result.returncode, body

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---------------------------------------------------------------- one measured switch


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    index = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[index]


def settle(port, version):
    """Until the stack answers `version` 50 times in a row (the proxy points
    at it and a reload before has finished), so no row pays for set-up."""
    streak = [0]

    def good():
        status, body = http_get(port)
        streak[0] = streak[0] + 1 if status == 200 and version_of(body) == version else 0
        return streak[0] >= 50

    if not wait_for(good, 30, 0.01):
        raise SystemExit(f"the stack on port {port} does not serve {version}")
    time.sleep(0.5)


def measure(bench, method, proxy_name, port, act, old_gone, new_version, ours, old_version="v1"):
    """Load through `port`, then `act()` (the upgrade), until the old
    process is gone and the new version answers, then a tail of load."""
    log(f"{method} via {proxy_name}")
    settle(port, old_version)
    load = Load(bench.procs, bench.work, port)
    time.sleep(STEADY_S)
    t_cmd = time.monotonic()
    gone_at = {}

    def watch_old():
        if wait_for(old_gone, 120, 0.005):
            gone_at["t"] = time.monotonic()

    watcher = threading.Thread(target=watch_old, daemon=True)
    watcher.start()
    details = act() or {}
    t_done = time.monotonic()
    watcher.join(timeout=125)
    wait_for(lambda: any(s[2] and s[3] == new_version and s[0] >= t_cmd for s in list(load.prober.samples)), 30)
    time.sleep(TAIL_S)
    reports, samples = load.stop()
    new_seen = [s[0] + s[1] for s in samples if s[2] and s[3] == new_version and s[0] >= t_cmd]
    t_new = min(new_seen) if new_seen else None
    t_gone = gone_at.get("t")
    window_end = max(filter(None, [t_new, t_gone, t_done])) + 0.5
    steady = [s[1] * 1000 for s in samples if t_cmd - STEADY_S <= s[0] < t_cmd and s[2]]
    switch = [s[1] * 1000 for s in samples if t_cmd <= s[0] <= window_end]
    row = {
        "method": method, "proxy": proxy_name, "ours": ours,
        "close": reports["close"], "keepalive": reports["keepalive"],
        "probe_failed": sum(1 for s in samples if not s[2]),
        "probe_requests": len(samples),
        "to_new_ms": None if t_new is None else (t_new - t_cmd) * 1000,
        "old_gone_ms": None if t_gone is None else (t_gone - t_cmd) * 1000,
        "command_ms": (t_done - t_cmd) * 1000,
        "p50_steady": percentile(steady, 50), "p99_steady": percentile(steady, 99),
        "p50_switch": percentile(switch, 50), "p99_switch": percentile(switch, 99),
        "max_switch": max(switch) if switch else float("nan"),
        "phases": details.get("phases_ms"),
        "serving_ms": details.get("serving_ms"),
        "ok": details.get("ok", True),
        "samples": [(s[0] - t_cmd, s[1] * 1000, s[2], s[3], s[4]) for s in samples],
        "marks": {"new": None if t_new is None else t_new - t_cmd, "gone": None if t_gone is None else t_gone - t_cmd},
    }
    failed = row["close"]["failed"] + row["keepalive"]["failed"]
    log(f"  {failed} failed of {row['close']['requests'] + row['keepalive']['requests']}; new version after "
        f"{fmt_ms(row['to_new_ms'])}, old gone after {fmt_ms(row['old_gone_ms'])}")
    return row


def fmt_ms(value):
    return "—" if value is None else f"{value:.0f} ms"


# ---------------------------------------------------------------- the methods


def serve_v1_directly(bench, proxy):
    """v1 started by the bench (no supervisord) on a port of its own, the proxy pointed at it."""
    port = free_ports(1)[0]
    app = bench.start_app("v1", port, 0)
    wait_for(lambda: http_get(port)[0] == 200, 20)
    proxy.set_upstream(port)
    return app, port


def stop_app(app):
    app.send_signal(signal.SIGTERM)
    app.wait(timeout=30)


def by_hand(bench, proxy, method, upgrade):
    """An upgrade without supervisord: v1 started by the bench and routed
    to, then `upgrade(old, port)` returns the new process."""
    old, port = serve_v1_directly(bench, proxy)
    started = {}

    def act():
        started["new"] = upgrade(old, port)

    row = measure(bench, method, proxy.name, proxy.listen_port, act, lambda: old.poll() is not None, "v2", ours=False)
    stop_app(started["new"])
    return row


def reload_alone(bench, proxy):
    """One reload of the proxy with the upstream it already has: nothing is
    upgraded, so whatever fails here is the reload's own cost, which every
    method that repoints a proxy pays once."""
    app, port = serve_v1_directly(bench, proxy)

    def act():
        proxy.set_upstream(port, force=True)

    row = measure(bench, "proxy reload alone (same upstream, nothing upgraded)", proxy.name, proxy.listen_port, act,
                  lambda: True, "v1", ours=False)
    row["to_new_ms"] = row["old_gone_ms"] = None
    row["marks"] = {"new": None, "gone": None}
    stop_app(app)
    return row


def naive_restart(bench, proxy):
    """systemctl restart: stop the old process, start the new one on the same port."""
    def upgrade(old, port):
        old.send_signal(signal.SIGTERM)
        old.wait(timeout=60)
        new = bench.start_app("v2", port)
        wait_for(lambda: http_get(port, "/health")[0] == 200, 30)
        return new

    return by_hand(bench, proxy, "naive restart (stop, start on the same port)", upgrade)


def hand_run(bench, proxy):
    """The guides' script: side port, sleep 5, curl -f /health, rewrite upstream, reload, kill -TERM."""
    def upgrade(old, port):
        side = free_ports(1)[0]
        new = bench.start_app("v2", side)
        time.sleep(5)
        if subprocess.run(["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{side}/health"]).returncode != 0:
            log("  hand-run: health check failed (the script would stop here)")
        proxy.set_upstream(side)
        old.send_signal(signal.SIGTERM)
        return new

    return by_hand(bench, proxy, "hand-run script (side port, sleep 5, reload)", upgrade)


def ours_swap(bench, proxy):
    supervisor = bench.supervisord(proxy.proxy_section(), ports=free_ports(2), tag="swap")
    old_pid = supervisor.status()["pid"]

    def act():
        code, body = supervisor.run(["swap", bench.version("v2")])
        return {**body, "ok": code == 0}

    row = measure(bench, "supervisorctl swap", proxy.name, proxy.listen_port, act, lambda: not alive(old_pid), "v2", ours=True)
    supervisor.stop()
    return row


def ours_rollback(bench, proxy, inside_warm_hold):
    watch = "60s" if inside_warm_hold else "2s"
    supervisor = bench.supervisord(proxy.proxy_section(), ports=free_ports(2), watch=watch, tag="rollback")
    code, _ = supervisor.run(["swap", bench.version("v2")])
    if code != 0:
        raise SystemExit("the swap before the rollback failed")
    if not inside_warm_hold:
        # Until the warm hold has ended: the old instance drained and stopped.
        wait_for(lambda: len(children(supervisor.process.pid)) == 1, 30, 0.05)
        time.sleep(0.5)
    serving_pid = supervisor.status()["pid"]

    def act():
        code, body = supervisor.run(["rollback"])
        return {**body, "ok": code == 0}

    label = "supervisorctl rollback (inside the warm hold: a flip)" if inside_warm_hold else "supervisorctl rollback (after the warm hold)"
    row = measure(bench, label, proxy.name, proxy.listen_port, act, lambda: not alive(serving_pid), "v1", ours=True, old_version="v2")
    supervisor.stop()
    return row


def ours_handoff(bench, proxy=None):
    """Socket-handoff mode: straight on the supervisor-held socket, or with a
    proxy in front whose upstream is that socket (it never changes)."""
    port = free_ports(1)[0]
    supervisor = bench.supervisord('[proxy]\nkind = "none"\n', listen=port, tag="handoff")
    if proxy is not None:
        proxy.set_upstream(port)
    old_pid = supervisor.status()["pid"]

    def act():
        code, body = supervisor.run(["swap", bench.version("v2")])
        return {**body, "ok": code == 0}

    label = "supervisorctl swap, socket handoff" + (" (proxy upstream fixed)" if proxy else "")
    row = measure(bench, label, proxy.name if proxy else "none", proxy.listen_port if proxy else port, act,
                  lambda: not alive(old_pid), "v2", ours=True)
    row["strict"] = True
    supervisor.stop()
    return row


def ours_stop_start(bench, proxy=None):
    """`[app] strategy = "stop-start"` (an app that cannot run twice): the old
    instance stops, then the new one starts on its port or socket; requests
    wait on the supervisor's socket (handoff) or in Caddy's lb_try_duration."""
    if proxy is None:
        port = free_ports(1)[0]
        supervisor = bench.supervisord('[proxy]\nkind = "none"\n', listen=port, tag="stop-start", app_extra='strategy = "stop-start"\n')
        listen_port, proxy_name = port, "none"
    else:
        supervisor = bench.supervisord(proxy.proxy_section(), ports=free_ports(2), tag="stop-start", app_extra='strategy = "stop-start"\n')
        listen_port, proxy_name = proxy.listen_port, proxy.name
    old_pid = supervisor.status()["pid"]

    def act():
        code, body = supervisor.run(["swap", bench.version("v2")])
        return {**body, "ok": code == 0}

    label = "supervisorctl swap, stop-start" + (", socket handoff" if proxy is None else "")
    row = measure(bench, label, proxy_name, listen_port, act, lambda: not alive(old_pid), "v2", ours=True)
    row["strict"] = proxy is None
    supervisor.stop()
    return row


def children(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return [p for p in found if alive(p)]


# ---------------------------------------------------------------- the daemon's own cost


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def memory_kib(pid):
    """RSS, PSS (shared pages divided among the processes mapping them) and
    private anonymous memory (heap, stacks: what the daemon itself allocated),
    from /proc/PID/smaps_rollup."""
    values = {"rss": 0, "pss": 0, "anonymous": 0}
    names = {"Rss:": "rss", "Pss:": "pss", "Anonymous:": "anonymous"}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            words = line.split()
            if words and words[0] in names:
                values[names[words[0]]] = int(words[1])
    return values


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def daemon_cost(bench, proxy, idle_seconds):
    log("the daemon's own cost: idle RSS and CPU, start to READY=1")
    supervisor = bench.supervisord(proxy.proxy_section(), ports=free_ports(2), tag="idle")
    time.sleep(1)
    pid = supervisor.process.pid
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(idle_seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    idle = {"rss_kib": rss_kib(pid), "memory": memory_kib(pid), "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "fds": fd_count(pid), "seconds": idle_seconds}
    supervisor.stop()

    # Start to READY=1 (no proxy to point: that is the proxy's time), and
    # the app's own start to healthy, for comparison.
    ready = {"default": ready_times(bench, None), "fast": ready_times(bench, "10ms")}
    port_times = []
    for _ in range(5):
        port = free_ports(1)[0]
        start = time.monotonic()
        app = bench.start_app("v1", port, 0)
        wait_for(lambda: http_get(port, "/health")[0] == 200, 20, 0.002)
        port_times.append((time.monotonic() - start) * 1000)
        stop_app(app)
    ready["app_ms"] = statistics.median(port_times)
    return idle, ready


def ready_times(bench, interval, runs=5):
    """Median time from exec of supervisord to READY=1 on its NOTIFY_SOCKET."""
    times = []
    for attempt in range(runs):
        directory, config = bench.service("ready", '[proxy]\nkind = "none"\n', ports=free_ports(2),
                                          health={"interval": interval} if interval else None, version_command=False)
        notify_path = os.path.join(directory, "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(30)
        start = time.monotonic()
        process = bench.start_supervisord(directory, config, env={"NOTIFY_SOCKET": notify_path})
        try:
            while True:
                if "READY=1" in notify.recv(4096).decode().split("\n"):
                    times.append((time.monotonic() - start) * 1000)
                    break
        except socket.timeout:
            log("  no READY=1 within 30 s")
        notify.close()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return statistics.median(times) if times else float("nan")


def soak(bench, proxy, count):
    log(f"soak: {count} swaps through {proxy.name} under load")
    supervisor = bench.supervisord(proxy.proxy_section(), ports=free_ports(2), tag="soak")
    pid = supervisor.process.pid
    time.sleep(1)
    before = {"rss_kib": rss_kib(pid), "fds": fd_count(pid), "children": len(children(pid))}
    binaries = [bench.version("v2", 0), bench.version("v1", 0)]
    load = Load(bench.procs, bench.work, proxy.listen_port)
    failures, totals = [], []
    started = time.monotonic()
    for index in range(count):
        code, body = supervisor.run(["swap", binaries[index % 2]])
        if code != 0:
            failures.append(index)
        else:
            totals.append(body.get("total_ms", 0))
        if (index + 1) % 50 == 0:
            log(f"  {index + 1} swaps, rss {rss_kib(pid)} KiB, fds {fd_count(pid)}")
    elapsed = time.monotonic() - started
    reports, samples = load.stop()
    time.sleep(1)
    after = {"rss_kib": rss_kib(pid), "fds": fd_count(pid), "children": len(children(pid))}
    supervisor.stop()
    return {"count": count, "failed_swaps": len(failures), "before": before, "after": after, "load": reports,
            "median_swap_ms": statistics.median(totals) if totals else None, "elapsed_s": elapsed,
            "probe_failed": sum(1 for s in samples if not s[2])}


def reloads_alone(bench, proxy, count, spacing_s):
    """The soak's control: the same load, `count` reloads of the proxy with an
    unchanged upstream, `spacing_s` apart (the soak's pace), no swap."""
    log(f"control: {count} reloads of {proxy.name} alone under load, {spacing_s:.2f} s apart")
    app, port = serve_v1_directly(bench, proxy)
    settle(proxy.listen_port, "v1")
    load = Load(bench.procs, bench.work, proxy.listen_port)
    for _ in range(count):
        started = time.monotonic()
        proxy.set_upstream(port, force=True)
        time.sleep(max(0.0, spacing_s - (time.monotonic() - started)))
    reports, _ = load.stop()
    stop_app(app)
    return {"count": count, "spacing_s": spacing_s, "load": reports}


# ---------------------------------------------------------------- report


def plot(row, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    colours = {"v1": "#4C72B0", "v2": "#DD8452"}
    for version, colour in colours.items():
        points = [(s[0], s[1]) for s in row["samples"] if s[2] and s[3] == version]
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=4, c=colour, label=f"answered by {version}", linewidths=0)
    errors = [s for s in row["samples"] if not s[2]]
    if errors:
        top = max([s[1] for s in row["samples"]] + [1])
        ax.scatter([s[0] for s in errors], [top * 1.2] * len(errors), marker="x", c="#C44E52", s=18, label=f"failed ({len(errors)})")
    ax.axvline(0, color="black", lw=1, label="command")
    if row["marks"]["new"] is not None:
        ax.axvline(row["marks"]["new"], color="green", ls="--", lw=1, label="new version serves")
    if row["marks"]["gone"] is not None:
        ax.axvline(row["marks"]["gone"], color="grey", ls=":", lw=1.5, label="old process gone")
    ax.set_yscale("log")
    ax.set_xlabel("seconds from the command")
    ax.set_ylabel("request latency (ms)")
    failed = row["close"]["failed"] + row["keepalive"]["failed"]
    ax.set_title(f"{row['method']} — {row['proxy']}: {failed} failed under wrk", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def failed_cell(report):
    if report["failed"] == 0:
        return f"**0** / {report['requests']}"
    parts = []
    if report["non2xx"]:
        parts.append(f"non-2xx {report['non2xx']}")
    for key in ("connect", "read", "write", "timeout"):
        if report[key]:
            parts.append(f"{key} {report[key]}")
    return f"**{report['failed']}** / {report['requests']} ({', '.join(parts)})"


def ratio(a, b):
    if not a or not b or a != a or b != b:
        return "—"
    return f"{a / b:.1f}×"


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_gib = int(f.readline().split()[1]) / 1024 / 1024

    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    with open("/etc/os-release") as f:
        os_name = next((l.split("=", 1)[1].strip().strip('"') for l in f if l.startswith("PRETTY_NAME=")), "?")
    return {
        "os": os_name, "kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(), "memory": f"{mem_gib:.0f} GiB",
        "caddy": version(["caddy", "version"]).split()[0], "nginx": version(["nginx", "-v"]).split("/")[-1],
        "wrk": version(["wrk", "-v"]).split()[1] if version(["wrk", "-v"]) != "?" else "?",
        "swift": version(["swift", "--version"]),
    }


def write_report(path, rows, idle, ready, soak_result, reload_control, info, command):
    lines = ["# Benchmarks", ""]
    lines += [
        "Written by `scripts/bench.sh` from one run; do not edit by hand. Every row is the same upgrade (v1 → v2 of",
        f"`demo-app`, whose new version takes {APP_START_DELAY_MS} ms to start listening, like a real service), done one way, under",
        "two `wrk` streams through the proxy at once: 8 connections with `Connection: close` and 8 keep-alive",
        "connections, plus a prober timing requests one by one for the plots and percentiles. The exception, first",
        "for each proxy: one reload of the proxy with the upstream it already has, under the same load, to show what",
        "a reload costs by itself.",
        "",
        "Ratios are the headline (measured in the same run); absolute times are **this machine's**:",
        f"{info['cpu']}, {info['cores']} cores, {info['memory']}, {info['os']}, Linux {info['kernel']}; Caddy {info['caddy']},",
        f"nginx {info['nginx']}, wrk {info['wrk']}; {info['swift']}; supervisor built in release mode.",
        "",
        "Reproduce: `" + command.strip() + "`",
        "",
        "## Upgrading under load",
        "",
        "| method | proxy | failed, `Connection: close` | failed, keep-alive | new version serves after | old process gone after | p50 during / steady | p99 during / steady | slowest request during |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['proxy']} | {failed_cell(row['close'])} | {failed_cell(row['keepalive'])} | "
            f"{fmt_ms(row['to_new_ms'])} | {fmt_ms(row['old_gone_ms'])} | {ratio(row['p50_switch'], row['p50_steady'])} | "
            f"{ratio(row['p99_switch'], row['p99_steady'])} | {row['max_switch']:.0f} ms |")
    lines += [
        "",
        "Failed = non-2xx answers plus socket errors (connect, read, write, timeout) counted by wrk. \"During\" is from",
        "the command until the new version serves and the old process is gone (+0.5 s); \"steady\" the 2 s before it.",
        "A proxy's reload costs a few socket errors whoever reloads (the reload-alone rows change nothing else): Caddy 2.6 resets",
        "connections queued on its listener, nginx's old workers close idle keep-alive client connections (a client",
        "that sent a request at that instant sees a read error). Socket-handoff mode, alone or behind a proxy whose",
        "upstream never changes, reloads nothing. Caddy's `lb_try_duration` retries refused connections, so the naive",
        "restart fails nothing through Caddy: its cost shows as requests held for the whole restart (slowest request).",
        "The stop-start rows are for apps that cannot run twice (`[app] strategy = \"stop-start\"`): the old instance",
        "stops first, so requests wait (on the supervisor's socket in handoff mode, in Caddy's retries, here with",
        "`lb_try_duration 30s` as `--check` asks, beside the naive restart through the same Caddy); their slowest request",
        "is about the old instance's stop plus the new one's start.",
        "",
        "### Where our time goes (ms, per phase)",
        "",
        "| method | proxy | " + " | ".join(PHASES) + " | `serving_ms` | command |",
        "|---|---|" + "---|" * (len(PHASES) + 2),
    ]
    for row in rows:
        if row["phases"]:
            cells = [str(row["phases"].get(p, "—")) for p in PHASES]
            serving = "—" if row.get("serving_ms") is None else str(row["serving_ms"])
            lines.append(f"| {row['method']} | {row['proxy']} | " + " | ".join(cells) + f" | {serving} | {row['command_ms']:.0f} |")
    lines += [
        "",
        "`health` includes the new version's own start (here 500 ms on purpose); `drain` waits until the old instance",
        "has been quiet for 250 ms (or `[drain] timeout`); `stop` is the old instance's own drain after SIGTERM",
        "(demo-app closes idle keep-alive connections after 2 s, and Caddy keeps some open to it). The rollback rows run",
        "with `[health] watch`: \"after the warm hold\" uses `watch = \"2s\"`, so the instance it replaces is itself kept",
        "warm 2 s before it is drained (old process gone later, no drain/stop phase in the command); \"inside the warm",
        "hold\" flips back to the instance still running (nothing starts). `serving_ms` is the daemon's own figure in the",
        "result: from the request until the proxy confirmed the new upstream; `command` is the CLI's wall time, from",
        "its exec to its exit (the \"new version serves after\" column above also counts the CLI's start and the proxy).",
        "",
        "## The daemon's own cost",
        "",
        "| measure | value |",
        "|---|---|",
        f"| RSS when idle (app running, {idle['seconds']:.0f} s) | {idle['rss_kib'] / 1024:.1f} MiB |",
        f"| of it PSS (shared library pages divided among the processes that map them) | {idle['memory']['pss'] / 1024:.1f} MiB |",
        f"| of it private anonymous memory (heap, stacks: the daemon's own) | {idle['memory']['anonymous'] / 1024:.1f} MiB |",
        f"| CPU when idle | {idle['cpu_percent']:.2f} % of one core |",
        f"| open file descriptors when idle | {idle['fds']} |",
        f"| exec of supervisord to `READY=1`, no proxy, `[health]` defaults (median of 5) | {ready['default']:.0f} ms |",
        f"| the same with `[health] interval = \"10ms\"` | {ready['fast']:.0f} ms |",
        f"| the app alone: exec to its first 2xx on `/health` (median of 5) | {ready['app_ms']:.0f} ms |",
        "",
        f"So the supervisor's own start costs {ready['fast'] - ready['app_ms']:.0f} ms above the app's;",
        "the health gate probes as soon as the app listens and asks its `healthy_after` answers back to back, so",
        "`interval` (the wait after an answer that is not good) changes little. Behind a proxy, `READY=1` also waits",
        "for the proxy to point at the app (the switch column above).",
        "",
        f"### Soak: {soak_result['count']} swaps in a row through nginx, under load",
        "",
        "| | before | after |",
        "|---|---|---|",
        f"| supervisord RSS | {soak_result['before']['rss_kib'] / 1024:.1f} MiB | {soak_result['after']['rss_kib'] / 1024:.1f} MiB |",
        f"| open file descriptors | {soak_result['before']['fds']} | {soak_result['after']['fds']} |",
        f"| child processes | {soak_result['before']['children']} | {soak_result['after']['children']} |",
        "",
        f"Failed swaps: **{soak_result['failed_swaps']}** of {soak_result['count']} (median swap {soak_result['median_swap_ms']} ms, "
        f"{soak_result['elapsed_s']:.0f} s in all). Requests: `Connection: close` {failed_cell(soak_result['load']['close'])}, "
        f"keep-alive {failed_cell(soak_result['load']['keepalive'])}.",
        "",
        f"The control: the same load through nginx over {reload_control['count']} reloads alone (unchanged upstream, no swap,",
        f"one every {reload_control['spacing_s']:.2f} s, the soak's pace): `Connection: close` {failed_cell(reload_control['load']['close'])}, "
        f"keep-alive {failed_cell(reload_control['load']['keepalive'])}.",
        "",
        "## Latency and errors around the switch",
        "",
        "Each dot is one request of the prober (log scale); red crosses are failed requests; the black line is the",
        "command, the green one the first answer of the new version, the grey one the old process gone.",
        "",
    ]
    for row in rows:
        lines += [f"**{row['method']} — {row['proxy']}**", "", f"![{row['method']} via {row['proxy']}]({row['plot']})", ""]
    lines += ["## Rule", "", "`scripts/bench.sh` exits 1 when " + FAILURE_RULE + ".", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


PHASES = ["stage", "preflight", "start", "health", "switch", "drain", "stop", "commit"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "release"))
    parser.add_argument("--soak", type=int, default=300, help="swaps in the soak (default 300)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--command", default="scripts/bench.sh")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="supervisor-bench-")
    procs = Processes()
    bench = Bench(args.bin, work, procs)
    plots = os.path.join(os.path.dirname(args.output), "docs", "benchmarks")
    os.makedirs(plots, exist_ok=True)
    for stale in os.listdir(plots):
        if stale.endswith(".png"):
            os.remove(os.path.join(plots, stale))
    try:
        parking = free_ports(1)[0]  # nothing listens here until a method points the proxy somewhere
        caddy = Caddy(procs, work, parking)
        nginx = Nginx(procs, work, parking)
        rows = []
        for proxy in (caddy, nginx):
            rows.append(reload_alone(bench, proxy))
            rows.append(naive_restart(bench, proxy))
            rows.append(hand_run(bench, proxy))
            rows.append(ours_swap(bench, proxy))
            rows.append(ours_rollback(bench, proxy, inside_warm_hold=False))
            rows.append(ours_rollback(bench, proxy, inside_warm_hold=True))
            rows.append(ours_handoff(bench, proxy))
        rows.append(ours_handoff(bench))
        # Apps that cannot run twice: stop-start, beside the naive restart above.
        rows.append(ours_stop_start(bench))
        patient = Caddy(procs, work, parking, try_duration="30s", tag="caddy-patient")
        rows.append(naive_restart(bench, patient))
        rows.append(ours_stop_start(bench, patient))
        idle, ready = daemon_cost(bench, nginx, args.idle)
        soak_result = soak(bench, nginx, args.soak)
        reload_control = reloads_alone(bench, nginx, args.soak, soak_result["elapsed_s"] / max(1, args.soak))
        for index, row in enumerate(rows):
            name = f"{index + 1:02d}-" + "".join(c if c.isalnum() else "-" for c in f"{row['method']}-{row['proxy']}".lower()).strip("-")
            while "--" in name:
                name = name.replace("--", "-")
            plot(row, os.path.join(plots, name + ".png"))
            row["plot"] = f"docs/benchmarks/{name}.png"
        write_report(args.output, rows, idle, ready, soak_result, reload_control, machine(), args.command)
        log(f"wrote {args.output} and {len(rows)} plots in {plots}")
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    # The guard: our rows fail nothing (see FAILURE_RULE).
    broken = []
    for row in rows:
        if not row["ours"]:
            continue
        strict = row.get("strict", False)
        for stream in ("close", "keepalive"):
            report = row[stream]
            if report["non2xx"] or (strict and report["socket"]) or not row["ok"]:
                broken.append(f"{row['method']} via {row['proxy']} ({stream}): {report}")
    if soak_result["failed_swaps"] or soak_result["load"]["close"]["non2xx"] or soak_result["load"]["keepalive"]["non2xx"]:
        broken.append(f"soak: {soak_result['failed_swaps']} failed swaps, load {soak_result['load']}")
    print(open(args.output).read().split("## The daemon's own cost")[0])
    if broken:
        print("FAILED: ours failed requests:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
