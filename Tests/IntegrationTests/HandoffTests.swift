#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import Testing

extension UnderLoad {
    /// Socket-handoff mode: the supervisor holds the listening socket and
    /// passes it to each instance (fd 3, LISTEN_FDS, LISTEN_PID = the child's
    /// own pid); readiness is READY=1 on a NOTIFY_SOCKET of the supervisor's.
    @Suite(.timeLimit(.minutes(5)))
    struct HandoffTests {
        @Test func swapsAndRollbacksFailNothingForCloseAndKeepAliveClients() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let work = TemporaryDirectory("handoff")
            let port = FreePort.pick()[0]
            let daemon = try Self.handoffDaemon(v1In: work, port: port)
            try daemon.start()
            #expect(daemon.waitUntilRunning() != nil, "\(daemon.log)")
            #expect(httpGet(port: port)?.body.contains("demo-app v1") == true)

            let close = try LoadGenerator(port: port)
            let keepAlive = try LoadGenerator(port: port, connections: 8, closeConnections: false)
            for index in 2...4 {
                let next = AppVersions.make("v\(index)", in: work)
                let result = try daemon.ctl(["swap", next, "--json"])
                #expect(result.exitCode == 0, "\(result.stderr)\n\(daemon.log.suffix(2000))")
                #expect(result.stderr.contains("ready: READY=1 from pid"))
                #expect(httpGet(port: port)?.body.contains("demo-app v\(index)") == true)
            }
            let rollback = try daemon.ctl(["rollback"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            #expect(httpGet(port: port)?.body.contains("demo-app v3") == true)
            close.finish().expectNothingFailed("handoff 3 swaps + rollback (Connection: close)")
            keepAlive.finish().expectNothingFailed("handoff 3 swaps + rollback (keep-alive)")
        }

        /// An app that runs as `nobody` serves a privileged port: the supervisor
        /// (root) opens it and hands it over; READY=1 reaches the supervisor on
        /// an abstract NOTIFY_SOCKET the app can use without any file rights.
        @Test func anUnprivilegedAppServesALowPortTheSupervisorHandsIt() throws {
            try #require(getuid() == 0, "needs root: the app is started as nobody on a port below 1024")
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let port = try #require((700..<1000).first { !isListening(port: $0) }, "no free port below 1024")
            let work = TemporaryDirectory("handoff-low-port")
            let daemon = try Self.handoffDaemon(v1In: work, port: port, extraApp: "user = \"nobody\"")
            try daemon.start()
            let running = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
            #expect(httpGet(port: port)?.body.contains("demo-app v1") == true)
            #expect(procStatus(try #require(running["pid"] as? Int))["Uid"]?.hasPrefix("65534") == true)

            let load = try LoadGenerator(port: port)
            let result = try daemon.ctl(["swap", AppVersions.make("v2", in: work), "--json"])
            #expect(result.exitCode == 0, "\(result.stderr)\n\(daemon.log.suffix(2000))")
            #expect(result.stderr.contains("ready: READY=1 from pid"))
            #expect(httpGet(port: port)?.body.contains("demo-app v2") == true)
            let after = try #require(daemon.status())
            #expect(procStatus(try #require(after["pid"] as? Int))["Uid"]?.hasPrefix("65534") == true)
            load.finish().expectNothingFailed("handoff as nobody on port \(port)")
        }

        /// A daemon in handoff mode (notify readiness, no proxy) on `port`, v1 of demo-app as its binary.
        static func handoffDaemon(v1In work: TemporaryDirectory, port: Int, extraApp: String = "") throws -> DaemonUnderTest {
            let live = work.file("bin/app")
            try FileManager.default.createDirectory(atPath: work.file("bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: AppVersions.make("v1", in: work, flags: []), toPath: live)
            var options = DaemonUnderTest.Options()
            options.binary = live
            options.appArgs = []
            options.ports = []
            options.extraApp = "listen = [\"127.0.0.1:\(port)\"]\nversion_command = [\"{binary}\", \"--version\"]\n\(extraApp)"
            options.extraHealth = "mode = \"notify\""
            options.proxySection = "[proxy]\nkind = \"none\""
            return DaemonUnderTest(options, handoff: true)
        }
    }
}
