#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

/// supervisor@itest under a real systemd (PID 1 of private namespaces): the
/// shipped unit files with only their paths pointed at this build, plus a
/// drop-in that shortens the watchdog and restart timings for the test.
final class SupervisorUnderSystemd {
    let work = TemporaryDirectory("systemd-service")
    let sandbox: SystemdSandbox
    let unit = "supervisor@itest.service"
    let socketPath = "/run/supervisor/itest.sock"
    let live: String

    init(config: (_ live: String) -> String, carrying: [String] = []) throws {
        live = work.file("bin/app")
        try FileManager.default.createDirectory(atPath: work.file("bin"), withIntermediateDirectories: true)
        sandbox = try SystemdSandbox(carrying: [work.path] + carrying)
        _ = work.write("itest.toml", config(live))
        for file in ["supervisor@.service", "supervisor@.socket"] {
            let text = try String(contentsOfFile: Repository.path("systemd/" + file), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/supervisord", with: Binaries.supervisord)
                .replacingOccurrences(of: "/etc/supervisor/%i.toml", with: work.file("%i.toml"))
            _ = sandbox.units.write(file, text)
        }
        try sandbox.install(
            "supervisor@itest.service.d/test.conf",
            """
            [Service]
            WatchdogSec=2s
            TimeoutAbortSec=2s
            RestartSec=300ms
            StandardOutput=append:\(work.file("supervisord.log"))
            StandardError=inherit
            """)
    }

    /// A config for demo-app on two side ports behind `caddy`, as these tests run it.
    static func behindCaddy(name: String, live: String, ports: [Int], caddy: CaddyUnderTest, extraApp: String = "", extra: String = "") -> String {
        """
        name = "\(name)"
        [app]
        binary = "\(live)"
        args = ["--port", "{port}"]
        ports = [\(ports[0]), \(ports[1])]
        stop_timeout = "5s"
        version_command = ["{binary}", "--version"]
        \(extraApp)
        [health]
        interval = "50ms"
        start_timeout = "20s"
        [drain]
        timeout = "5s"
        \(extra)
        \(caddy.proxySection(fault: nil))
        """
    }

    var log: String { (try? String(contentsOfFile: work.file("supervisord.log"), encoding: .utf8)) ?? "" }
    var state: String { sandbox.property("ActiveState", of: unit) }
    var mainPID: Int { Int(sandbox.property("MainPID", of: unit)) ?? 0 }
    var restarts: Int { Int(sandbox.property("NRestarts", of: unit)) ?? -1 }

    func ctl(_ arguments: [String], timeout: TimeInterval = 60) throws -> CommandResult {
        try sandbox.run([Binaries.supervisorctl, "--socket", socketPath] + arguments, timeout: timeout)
    }

    /// `supervisorctl swap PATH --json`, and its `total_ms`.
    func swap(_ path: String) throws -> (result: CommandResult, totalMS: Int?) {
        let result = try ctl(["swap", path, "--json"])
        let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (result, json?["total_ms"] as? Int)
    }

    func status() -> [String: Any]? {
        guard let result = try? ctl(["status", "--json"]), result.exitCode == 0 || result.exitCode == 1 else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    }

    /// `swap` (or `rollback`) as a process of its own, so the test can watch
    /// the unit's state while it runs. Returns the result and the states seen.
    func watchingStates(_ arguments: [String], onChange: (String) -> Void = { _ in }) throws -> (result: [String: Any]?, exitCode: Int32, states: [String], stderr: String) {
        let scratch = TemporaryDirectory("systemd-ctl")
        let process = try TestProcess(
            "/usr/bin/nsenter", sandbox.inside([Binaries.supervisorctl, "--socket", socketPath] + arguments),
            stdout: scratch.file("out"), stderr: scratch.file("err"))
        var states: [String] = []
        _ = eventually(timeout: 60, interval: 0.02) {
            let now = state
            if states.last != now {
                states.append(now)
                onChange(now)
            }
            return !process.isRunning
        }
        process.stop(SIGKILL, grace: 0)
        let out = (try? String(contentsOfFile: scratch.file("out"), encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: scratch.file("err"), encoding: .utf8)) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], process.exitCode ?? -1, states, err)
    }

    /// Kills the supervisor's main process with `signal` and waits until
    /// systemd has started a new one that is ready again.
    func killMainAndAwaitRestart(_ signal: String, timeout: TimeInterval = 40) -> (restarted: Bool, results: [String]) {
        let before = restarts
        let oldMain = mainPID
        let kill = try? sandbox.systemctl(["kill", "--kill-whom=main", "--signal=\(signal)", unit])
        #expect(kill?.exitCode == 0, "\(kill?.stderr ?? "")")
        var results: [String] = []
        let restarted = eventually(timeout: timeout, interval: 0.05) {
            let result = sandbox.property("Result", of: unit)
            if results.last != result { results.append(result) }
            return restarts == before + 1 && state == "active" && mainPID != oldMain && mainPID != 0
        }
        return (restarted, results)
    }
}

extension UnderLoad {
    @Suite(.timeLimit(.minutes(5)), .enabled(if: SystemdSandbox.shouldRun, SystemdSandbox.skipReason))
    struct SystemdBootTests {
        /// Proxy mode behind Caddy, run by the shipped units: socket
        /// activation, READY=1 only once the app is healthy and the proxy
        /// points at it, STATUS= with the version, RELOADING=1 around a
        /// swap, SIGKILL and a hung supervisor (watchdog) restarted by
        /// systemd with the app re-adopted, not restarted.
        @Test func behindCaddyUnderTheShippedUnits() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let ports = FreePort.pick(2)
            let caddy = CaddyUnderTest(initialUpstreamPort: ports[0])
            try caddy.start()
            defer { caddy.stop() }
            let service = try SupervisorUnderSystemd(
                config: { live in
                    SupervisorUnderSystemd.behindCaddy(name: "itest", live: live, ports: ports, caddy: caddy, extra: "[control]\nsocket = \"/run/supervisor/itest.sock\"")
                }, carrying: [caddy.directory.path])
            // v1 takes 1.5 s before it listens: long enough to see "activating".
            try FileManager.default.copyItem(atPath: AppVersions.make("v1", in: service.work, flags: ["--start-delay-ms", "1500"]), toPath: service.live)
            try service.sandbox.install(
                "supervisor@itest.service.d/caddy.conf",
                "[Service]\n" + caddy.environment.filter { ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"].contains($0.key) }
                    .map { "Environment=\($0.key)=\($0.value)" }.sorted().joined(separator: "\n") + "\n")

            // Socket activation: only the socket unit is started; the first
            // supervisorctl call starts the service.
            let listen = try service.sandbox.systemctl(["start", "supervisor@itest.socket"])
            #expect(listen.exitCode == 0, "\(listen.stderr)")
            #expect(service.state == "inactive")
            // Active only after READY=1: the moment systemd first says active
            // (watched while the call that activates the service runs), the
            // app answers on its port (asked directly: Caddy would hold the
            // request until the app is up). ExecStartPre runs first, so
            // "activating" is seen either way; what counts is the answer.
            var servedAtActive: String?
            func appAnswers() -> String { servedVersion(port: ports[0]) ?? "nothing" }
            let first = try service.watchingStates(["status", "--json"]) { now in
                if now == "active", servedAtActive == nil { servedAtActive = appAnswers() }
            }
            // The socket-activated status answers while the app starts (exit 1: not
            // serving yet) or once it runs (0); either way it is a status.
            #expect(first.exitCode == 0 || first.exitCode == 1, "\(first.stderr)\n\(service.log)")
            #expect(first.result?["phase"] != nil, "\(first.stderr)\n\(service.log)")
            #expect(service.log.contains("control socket from systemd (socket activation)"), "\(service.log)")
            var seen = first.states
            _ = eventually(timeout: 30, interval: 0.02) {
                let now = service.state
                if seen.last != now {
                    seen.append(now)
                    if now == "active", servedAtActive == nil { servedAtActive = appAnswers() }
                }
                return now == "active" || now == "failed"
            }
            #expect(seen.contains("activating") && seen.last == "active", "states seen: \(seen)")
            #expect(servedAtActive == "v1", "the app answered, when systemd first said active: \(servedAtActive ?? "-"); states seen: \(seen); \(service.log)")
            #expect(caddy.servedVersion() == "v1")
            let status = try service.sandbox.systemctl(["status", service.unit])
            #expect(status.stdout.contains("Status: \"running") && status.stdout.contains("version v1"), "\(status.stdout)")

            // A swap under systemd, under load through Caddy.
            let load = try LoadGenerator(port: caddy.listenPort)
            let swap = try service.watchingStates(["swap", AppVersions.make("v2", in: service.work), "--json"])
            #expect(swap.exitCode == 0, "\(swap.stderr)\n\(service.log)")
            #expect(swap.states.contains("reloading"), "states during the swap: \(swap.states)")
            // READY=1 is sent before the caller hears the result, but systemd reads its notify
            // socket on its own schedule: the unit may still say "reloading" for a moment.
            #expect(eventually(timeout: 10) { service.state == "active" }, "states during the swap: \(swap.states), now \(service.state)")
            #expect(caddy.servedVersion() == "v2")
            let afterSwap = try service.sandbox.systemctl(["status", service.unit])
            #expect(afterSwap.stdout.contains("version v2"), "\(afterSwap.stdout)")
            let swapLoad = load.finish()
            print("LOAD systemd: swap behind caddy under supervisor@.service (Connection: close): \(swapLoad)")
            #expect(swapLoad.non2xx == 0, "\(swapLoad)")

            // SIGKILL of the supervisor: systemd restarts it (KillMode=process
            // leaves the app serving), the new one re-adopts the same app.
            let appPID = try #require(service.status()?["pid"] as? Int)
            let close = try LoadGenerator(port: caddy.listenPort)
            let keepAlive = try LoadGenerator(port: caddy.listenPort, connections: 8, closeConnections: false)
            let killed = service.killMainAndAwaitRestart("SIGKILL")
            #expect(killed.restarted, "\(service.log.suffix(3000))")
            #expect(eventually(timeout: 20) { service.status()?["phase"] as? String == "running" })
            #expect(service.status()?["pid"] as? Int == appPID, "the app was re-adopted, not restarted")
            #expect(service.log.contains("adopted"), "\(service.log.suffix(3000))")

            // A hung supervisor (SIGSTOP: no more WATCHDOG=1) is killed by the
            // watchdog and restarted; the app again keeps serving.
            let hung = service.killMainAndAwaitRestart("SIGSTOP")
            #expect(hung.restarted, "\(service.log.suffix(3000))")
            #expect(hung.results.contains("watchdog"), "Result= values seen: \(hung.results)")
            #expect(eventually(timeout: 20) { service.status()?["pid"] as? Int == appPID })
            #expect(caddy.servedVersion() == "v2")
            close.finish().expectNothingFailed("systemd: supervisor SIGKILLed and watchdog-killed, app re-adopted (Connection: close)")
            keepAlive.finish().expectNothingFailed("systemd: supervisor SIGKILLed and watchdog-killed, app re-adopted (keep-alive)")

            // Emergency rollback with the supervisor hung (SIGSTOP), with the shipped unit and the
            // default emergency_restart (`systemctl start`): the CLI SIGKILLs it at once (no
            // TimeoutStopSec), exchanges the files while holding its lock (systemd's own restart
            // meanwhile exits 2), starts it, and says ok once the started one moved traffic to v1.
            let emergencyLoad = try LoadGenerator(port: caddy.listenPort)
            let hang = try service.sandbox.systemctl(["kill", "--kill-whom=main", "--signal=SIGSTOP", service.unit])
            #expect(hang.exitCode == 0, "\(hang.stderr)")
            let emergency = try service.sandbox.run(
                [Binaries.supervisorctl, "rollback", "--emergency", "--config", service.work.file("itest.toml")], timeout: 120)
            #expect(emergency.exitCode == 0, "\(emergency.stderr)\n\(service.log.suffix(3000))")
            #expect(emergency.stderr.contains("confirmed: pid"), "\(emergency.stderr)")
            #expect(emergency.stderr.contains("systemctl start supervisor@itest"), "\(emergency.stderr)")
            #expect(caddy.servedVersion() == "v1")
            let rolledBack = try #require(service.status())
            let v1PID = try #require(rolledBack["pid"] as? Int)
            #expect(v1PID != appPID)
            #expect(rolledBack["version"] as? String == "v1")
            #expect((rolledBack["emergency_rollback"] as? [String: Any])?["state"] as? String == "ok")
            #expect(eventually(timeout: 10) { !service.sandbox.exists(appPID) }, "the rolled-away v2 instance was stopped")
            #expect(service.state == "active")
            // One Caddy reload (the move's switch): Caddy 2.6 may reset a queued connection on it.
            emergencyLoad.finish().expectNothingFailed("systemd: emergency rollback with the supervisor hung, behind caddy", through: .caddy, caddyReloads: 1)

            // A normal stop stops the app too.
            let stop = try service.sandbox.systemctl(["stop", service.unit, "supervisor@itest.socket"])
            #expect(stop.exitCode == 0, "\(stop.stderr)")
            #expect(service.state == "inactive")
            #expect(eventually(timeout: 10) { !service.sandbox.exists(v1PID) }, "the app stops with the service")
        }

        /// Socket-handoff mode under systemd: the supervisor opens the public
        /// socket, keeps it in systemd's FD store, and passes it to each
        /// instance. Swaps and a supervisor restart fail nothing, for
        /// clients straight on the socket and through Caddy in front of it.
        @Test func handoffWithTheFDStoreFailsNothing() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let port = FreePort.pick()[0]
            let caddy = CaddyUnderTest(initialUpstreamPort: port)  // its upstream never changes
            try caddy.start()
            defer { caddy.stop() }
            let service = try SupervisorUnderSystemd(config: { live in
                """
                name = "itest"
                [app]
                binary = "\(live)"
                listen = ["127.0.0.1:\(port)"]
                stop_timeout = "5s"
                version_command = ["{binary}", "--version"]
                [health]
                mode = "notify"
                start_timeout = "20s"
                [drain]
                timeout = "5s"
                [control]
                socket = "/run/supervisor/itest.sock"
                [proxy]
                kind = "none"
                """
            })
            try FileManager.default.copyItem(atPath: AppVersions.make("v1", in: service.work, flags: []), toPath: service.live)
            let start = try service.sandbox.systemctl(["start", service.unit])
            #expect(start.exitCode == 0, "\(start.stderr)\n\(service.log)")
            #expect(httpGet(port: port)?.body.contains("demo-app v1") == true)
            #expect(caddy.servedVersion() == "v1")

            let loads = [
                ("direct, Connection: close", try LoadGenerator(port: port, connections: 8)),
                ("direct, keep-alive", try LoadGenerator(port: port, connections: 8, closeConnections: false)),
                ("behind caddy, Connection: close", try LoadGenerator(port: caddy.listenPort, connections: 8)),
                ("behind caddy, keep-alive", try LoadGenerator(port: caddy.listenPort, connections: 8, closeConnections: false)),
            ]
            var swapTimes: [Int] = []
            for tag in ["v2", "v3"] {
                let (swap, total) = try service.swap(AppVersions.make(tag, in: service.work))
                #expect(swap.exitCode == 0, "\(swap.stderr)\n\(service.log.suffix(3000))")
                swapTimes += total.map { [$0] } ?? []
                #expect(httpGet(port: port)?.body.contains("demo-app \(tag)") == true)
            }
            // The restarted supervisor gets the socket back from the FD store
            // (it could not bind the port again: the app holds it).
            let appPID = try #require(service.status()?["pid"] as? Int)
            let killed = service.killMainAndAwaitRestart("SIGKILL")
            #expect(killed.restarted, "\(service.log.suffix(3000))")
            #expect(service.log.contains("(sockets from systemd)"), "\(service.log.suffix(3000))")
            #expect(eventually(timeout: 20) { service.status()?["pid"] as? Int == appPID }, "re-adopted")
            let (swap, total) = try service.swap(AppVersions.make("v4", in: service.work))
            #expect(swap.exitCode == 0, "\(swap.stderr)\n\(service.log.suffix(3000))")
            swapTimes += total.map { [$0] } ?? []
            #expect(httpGet(port: port)?.body.contains("demo-app v4") == true)
            let rollback = try service.ctl(["rollback"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            #expect(caddy.servedVersion() == "v3")
            print("LOAD systemd handoff: swap total_ms \(swapTimes) (each new version starts 500 ms late on purpose)")
            for (name, load) in loads {
                load.finish().expectNothingFailed("systemd handoff, 3 swaps + supervisor SIGKILL + rollback (\(name))")
            }
        }
    }
}
