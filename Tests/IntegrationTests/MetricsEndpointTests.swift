#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// `[metrics] listen`: Prometheus text over TCP, with the gauges of the present.
@Suite(.timeLimit(.minutes(3)))
struct MetricsEndpointTests {
    static func scrape(_ port: Int, path: String = "/metrics") throws -> (status: Int, body: String) {
        let result = try Command.run("/usr/bin/curl", ["-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"])
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = lines.popLast().flatMap { Int($0) } ?? 0
        return (status, lines.joined(separator: "\n"))
    }

    @Test func prometheusScrapesTheConfiguredAddressAndSeesUpHealthyAndPhase() throws {
        let port = FreePort.pick()[0]
        var options = DaemonUnderTest.Options()
        options.proxySection = "[metrics]\nlisten = \"127.0.0.1:\(port)\""
        let daemon = DaemonUnderTest(options)
        try daemon.start()
        defer { daemon.stop() }
        #expect(daemon.waitUntilRunning() != nil, "\(daemon.log)")

        let (status, body) = try Self.scrape(port)
        #expect(status == 200)
        let metrics = try PrometheusText.parse(body)
        #expect(metrics.value("supervisor_app_up", [:]) == 1, "\(body)")
        #expect(metrics.value("supervisor_app_healthy", [:]) == 1)
        #expect(metrics.value("supervisor_phase_info", ["phase": "running"]) == 1)
        #expect(metrics.value("supervisor_swaps_total", ["result": "ok"]) == 0)
        // The same page as on the control socket.
        #expect(try PrometheusText.parse(try daemon.metrics()).value("supervisor_phase_info", ["phase": "running"]) == 1)
        // Nothing else is served over TCP.
        #expect(try Self.scrape(port, path: "/status").status == 404)
        let post = try Command.run("/usr/bin/curl", ["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "http://127.0.0.1:\(port)/metrics"])
        #expect(post.stdout == "405")
    }

    @Test func aCrashLoopingAppIsNotUpNorHealthy() throws {
        let port = FreePort.pick()[0]
        var options = DaemonUnderTest.Options()
        options.appArgs = ["--crash-at-start"]
        options.proxySection = "[metrics]\nlisten = \"127.0.0.1:\(port)\""
        let daemon = DaemonUnderTest(options)
        try daemon.start()
        defer { daemon.stop() }
        var last = ""
        let seen = eventually(timeout: 20) {
            guard let (status, body) = try? Self.scrape(port), status == 200, let metrics = try? PrometheusText.parse(body) else { return false }
            last = body
            return metrics.value("supervisor_app_healthy", [:]) == 0 && metrics.value("supervisor_app_up", [:]) == 0
                && metrics.value("supervisor_phase_info", ["phase": "running"]) == nil
        }
        #expect(seen, "\(last)\n\(daemon.log)")
    }

    @Test func aBadAddressIsAConfigProblemAndAHeldOneRefusesTheStart() throws {
        let directory = TemporaryDirectory("metrics")
        let app = directory.write("app", "#!/bin/sh\n", mode: 0o755)
        let bad = try ConfigCheckTests.check(in: directory, binary: app, app: "user = \"nobody\"\n[metrics]\nlisten = \"/run/metrics.sock\"", socket: directory.file("c.sock"))
        #expect(bad.exitCode == 2)
        #expect(bad.stderr.contains("metrics.listen: \"/run/metrics.sock\" is not a numeric TCP address"), "\(bad.stderr)")
        let named = try ConfigCheckTests.check(in: directory, binary: app, app: "user = \"nobody\"\n[metrics]\nlisten = \"localhost:9101\"", socket: directory.file("c.sock"))
        #expect(named.exitCode == 2 && named.stderr.contains("(no host names)"), "\(named.stderr)")
        let appPort = try ConfigCheckTests.check(in: directory, binary: app, app: "user = \"nobody\"\n[metrics]\nlisten = \"127.0.0.1:8082\"", socket: directory.file("c.sock"))
        #expect(appPort.exitCode == 2 && appPort.stderr.contains("port 8082 is one of [app] ports"), "\(appPort.stderr)")

        let port = FreePort.pick()[0]
        let holder = try listenOn(port: port)
        defer { close(holder) }
        var options = DaemonUnderTest.Options()
        options.proxySection = "[metrics]\nlisten = \"127.0.0.1:\(port)\""
        let daemon = DaemonUnderTest(options)
        let start = try Command.run(Binaries.supervisord, ["--config", daemon.configPath], timeout: 30)
        #expect(start.exitCode == 2, "\(start.stderr)")
        #expect(start.stderr.contains("metrics.listen: cannot listen on 127.0.0.1:\(port): Address already in use; nothing was started"), "\(start.stderr)")
        #expect(!daemon.ports.contains(where: isListening(port:)), "the app was not started")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the control socket was removed")
    }
}
