#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import Testing

extension UnderLoad {
    /// `[app] strategy = "stop-start"` with demo-app holding an exclusive lock
    /// on a file (`--lock-file`, as an SQLite or DuckDB app does): the old
    /// instance stops before the new one starts, and requests wait meanwhile:
    /// on the supervisor's socket in handoff mode, in Caddy's `lb_try_duration`.
    @Suite(.timeLimit(.minutes(5)))
    struct StopStartTests {
        /// Handoff mode, wrk straight at the supervisor's socket and through nginx in
        /// front of it (its upstream fixed on that socket): swaps, a rollback and a new
        /// version that fails its gate cost no request and no socket error.
        @Test func inHandoffModeRequestsWaitOnTheSupervisorsSocket() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx: run scripts/test.sh")
            let work = TemporaryDirectory("stop-start-handoff")
            let lock = work.file("app.lock")
            let port = FreePort.pick()[0]
            let daemon = try Self.handoffDaemon(in: work, port: port, lock: lock)
            try daemon.start()
            #expect(daemon.waitUntilRunning() != nil, "\(daemon.log)")
            let nginx = ProxyKindUnderTest.nginx.make(initialUpstreamPort: port)
            try nginx.start()
            defer { nginx.stop() }
            #expect(eventually(timeout: 10) { nginx.servedVersion() == "v1" })

            let direct = try LoadGenerator(port: port)
            let keepAlive = try LoadGenerator(port: port, connections: 8, closeConnections: false)
            let throughNginx = try LoadGenerator(port: nginx.listenPort)
            for tag in ["v2", "v3"] {
                let swap = try daemon.ctl(["swap", Self.version(tag, in: work, lock: lock), "--json"])
                #expect(swap.exitCode == 0, "\(swap.stderr)\n\(daemon.log.suffix(3000))")
                #expect(swap.stderr.contains("stop-start: stopping the old instance"), "\(swap.stderr)")
                #expect(swap.stderr.contains("wait in the listening socket's backlog"), "\(swap.stderr)")
                #expect(httpGet(port: port)?.body.contains("demo-app \(tag)") == true)
            }
            let rollback = try daemon.ctl(["rollback"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            #expect(rollback.stderr.contains("stop-start: stopping the old instance"), "\(rollback.stderr)")
            #expect(httpGet(port: port)?.body.contains("demo-app v2") == true)

            // A new version that fails its gate: the old binary starts again.
            let before = try #require(daemon.status())
            let broken = try daemon.ctl(["swap", Self.version("broken", in: work, lock: lock, extra: ["--crash-at-start"]), "--json"])
            #expect(broken.exitCode == 1, "\(broken.stderr)")
            #expect(broken.stderr.contains("started the old binary again"), "\(broken.stderr)")
            #expect(broken.stderr.contains("the old version serves again"), "\(broken.stderr)")
            let after = try #require(daemon.status())
            #expect(after["version"] as? String == "v2" && after["pid"] as? Int != before["pid"] as? Int, "\(after)")
            #expect(httpGet(port: port)?.body.contains("demo-app v2") == true)
            #expect(!FileManager.default.fileExists(atPath: work.file("bin/app.new")))

            let reports = [
                ("direct, Connection: close", direct.finish()), ("direct, keep-alive", keepAlive.finish()),
                ("through nginx", throughNginx.finish()),
            ]
            for (label, report) in reports {
                report.expectNothingFailed("stop-start in handoff mode, 3 swaps, a rollback and a failed gate (\(label)); slowest request \(report.maxLatencyMS.map { "\(Int($0)) ms" } ?? "?")")
                // Requests waited through a stop and a 500 ms start instead of failing fast.
                #expect((report.maxLatencyMS ?? 0) >= 400, "\(label): slowest request \(report.maxLatencyMS ?? -1) ms")
            }
        }

        /// Behind Caddy (proxy mode): the new instance takes the old one's port, so Caddy
        /// is not reloaded, and its lb_try_duration retries hold what arrives meanwhile.
        @Test func behindCaddyRequestsWaitInItsRetries() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            try #require(ProxyKindUnderTest.caddy.isInstalled, "caddy: run scripts/test.sh")
            let work = TemporaryDirectory("stop-start-caddy")
            let lock = work.file("app.lock")
            let stack = try ProxyStack(.caddy, v1Flags: ["--lock-file", lock], options: { options in
                options.extraApp += "\nstrategy = \"stop-start\""
            }, caddyTryDuration: "10s")
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let port = try #require(stack.daemon.status()?["port"] as? Int)
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (swap, json) = try stack.swap(stack.version("v2", flags: ["--start-delay-ms", "500", "--lock-file", lock]))
            #expect(swap.exitCode == 0, "\(swap.stderr)\n\(stack.daemon.log.suffix(3000))")
            #expect(swap.stderr.contains("requests wait in Caddy's lb_try_duration retries"), "\(swap.stderr)")
            #expect(swap.stderr.contains("nothing to reload"), "\(swap.stderr)")
            #expect(json?["port"] as? Int == port, "the new instance took the old one's port")
            #expect(stack.serves("v2"))
            let failed = try stack.swap(stack.version("broken", flags: ["--crash-at-start", "--lock-file", lock]))
            #expect(failed.0.exitCode == 1, "\(failed.0.stderr)")
            #expect(failed.0.stderr.contains("the old version serves again"), "\(failed.0.stderr)")
            #expect(stack.serves("v2"))
            let report = load.finish()
            report.expectNothingFailed("stop-start behind caddy, a swap and a failed gate; slowest request \(report.maxLatencyMS.map { "\(Int($0)) ms" } ?? "?")")
            #expect((report.maxLatencyMS ?? 0) >= 400, "slowest request \(report.maxLatencyMS ?? -1) ms")
            stack.expectNothingStray()
        }

        /// The default strategy with an app that cannot run twice: the new instance
        /// cannot take the lock and exits; the swap fails and the old one serves on.
        @Test func overlapWithALockHoldingAppFailsCleanly() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            try #require(ProxyKindUnderTest.caddy.isInstalled, "caddy: run scripts/test.sh")
            let work = TemporaryDirectory("overlap-lock")
            let lock = work.file("app.lock")
            let stack = try ProxyStack(.caddy, v1Flags: ["--lock-file", lock])
            let running = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (swap, json) = try stack.swap(stack.version("v2", flags: ["--lock-file", lock]))
            #expect(swap.exitCode == 1, "\(swap.stderr)")
            #expect((json?["error"] as? [String: Any])?["code"] as? String == "app_exited", "\(swap.stdout)")
            #expect(swap.stderr.contains("exited with code 5"), "\(swap.stderr)")
            #expect(stack.daemon.log.contains("is locked by another instance (pid \(running["pid"] as? Int ?? 0))"), "\(stack.daemon.log.suffix(2000))")
            #expect(stack.daemon.status()?["pid"] as? Int == running["pid"] as? Int)
            #expect(stack.serves("v1"))
            load.finish().expectNothingFailed("overlap with a lock-holding app: the swap fails, v1 serves on")
            stack.expectNothingStray()
        }

        /// The daemon dies as each phase of a stop-start begins; the one started after
        /// it reaches one version: until the commit the old one (the new instance, which
        /// may hold the lock and the port, is stopped before the old binary starts), from
        /// the commit on the new one. Caddy holds the requests meanwhile.
        @Test(arguments: [SwapPhase.stop, .start, .health, .switch, .commit])
        func supervisorKilledDuringAStopStartRecoversToOneVersion(_ phase: SwapPhase) throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            try #require(ProxyKindUnderTest.caddy.isInstalled, "caddy: run scripts/test.sh")
            let work = TemporaryDirectory("stop-start-recovery")
            let lock = work.file("app.lock")
            let stack = try ProxyStack(.caddy, v1Flags: ["--lock-file", lock], daemonEnvironment: ["SUPERVISOR_FAULT_EXIT_AT": phase.rawValue], options: { options in
                options.extraApp += "\nstrategy = \"stop-start\""
            }, caddyTryDuration: "10s")
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (swap, _) = try stack.swap(stack.version("v2", flags: ["--start-delay-ms", "300", "--lock-file", lock]))
            #expect(swap.exitCode != 0, "the daemon died mid-swap: \(swap.stderr)")
            #expect(stack.daemon.process?.waitForExit(timeout: 10) == true)
            #expect(stack.daemon.process?.exitCode == 99)

            try stack.daemon.start(environment: stack.proxy.environment)
            let status = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let expected = phase == .commit ? "v2" : "v1"
            #expect(status["version"] as? String == expected, "\(status)")
            #expect(stack.serves(expected))
            let report = load.finish()
            report.expectNothingFailed("caddy stop-start, supervisor killed at \(phase.rawValue), restarted: serving \(expected)")
            #expect(eventually(timeout: 10) { !FileManager.default.fileExists(atPath: stack.live + ".new") }, "no stray .new")
            // One instance of the app is left (adopted or started: not always the daemon's child).
            func instances() -> [String] {
                ((try? Command.run("/usr/bin/pgrep", ["-f", stack.work.path + "/"]))?.stdout ?? "").split(separator: "\n").map(String.init)
            }
            #expect(eventually(timeout: 10) { instances().count == 1 }, "app instances: \(instances())")
        }

        static func version(_ tag: String, in work: TemporaryDirectory, lock: String, extra: [String] = []) -> String {
            AppVersions.make(tag, in: work, flags: ["--start-delay-ms", "500", "--lock-file", lock] + extra)
        }

        static func handoffDaemon(in work: TemporaryDirectory, port: Int, lock: String) throws -> DaemonUnderTest {
            let live = work.file("bin/app")
            try FileManager.default.createDirectory(atPath: work.file("bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: AppVersions.make("v1", in: work, flags: ["--lock-file", lock]), toPath: live)
            var options = DaemonUnderTest.Options()
            options.binary = live
            options.appArgs = []
            options.ports = []
            options.extraApp = "listen = [\"127.0.0.1:\(port)\"]\nversion_command = [\"{binary}\", \"--version\"]\nstrategy = \"stop-start\""
            options.extraHealth = "mode = \"notify\""
            options.proxySection = "[proxy]\nkind = \"none\""
            return DaemonUnderTest(options, handoff: true)
        }
    }
}
