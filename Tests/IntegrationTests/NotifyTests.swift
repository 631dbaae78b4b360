#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@Suite(.timeLimit(.minutes(1)))
struct NotifyTests {
    @Test func readyStatusAndStoppingReachNotifySocket() throws {
        let notify = try NotifyListener()
        let daemon = DaemonUnderTest()
        try daemon.start(environment: ["NOTIFY_SOCKET": notify.path])
        let status = try #require(daemon.waitUntilRunning())
        let pid = try #require(status["pid"] as? Int)

        #expect(eventually { notify.received.contains { $0.contains("READY=1") } }, "got \(notify.received)")
        let ready = try #require(notify.received.first { $0.contains("READY=1") })
        #expect(ready.contains("STATUS=running, pid \(pid), port \(daemon.ports[0])"), "got \(ready)")
        // READY only after the socket answers: status was reachable when READY came.
        #expect(daemon.terminate() == 0)
        #expect(eventually { notify.received.contains { $0.contains("STOPPING=1") } }, "got \(notify.received)")
        let order = notify.received
        let readyIndex = order.firstIndex { $0.contains("READY=1") }!
        let stoppingIndex = order.firstIndex { $0.contains("STOPPING=1") }!
        #expect(readyIndex < stoppingIndex)
    }

    @Test func restartIsReportedInStatusLine() throws {
        let notify = try NotifyListener()
        let daemon = DaemonUnderTest()
        try daemon.start(environment: ["NOTIFY_SOCKET": notify.path])
        let status = try #require(daemon.waitUntilRunning())
        kill(pid_t(try #require(status["pid"] as? Int)), SIGKILL)
        #expect(eventually { notify.received.contains { $0.contains("STATUS=") && $0.contains("last exit: killed by signal 9") } }, "got \(notify.received)")
    }

    @Test func watchdogPingsAtHalfTheInterval() throws {
        let notify = try NotifyListener()
        let daemon = DaemonUnderTest()
        // WATCHDOG_PID must name the daemon itself; "WATCHDOG_USEC" alone applies to any pid.
        try daemon.start(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        _ = try #require(daemon.waitUntilRunning())
        #expect(eventually { notify.received.filter { $0.contains("WATCHDOG=1") }.count >= 3 }, "got \(notify.received)")
        #expect(daemon.terminate() == 0)
    }

    @Test func noNotifySocketMeansNoNotifications() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        _ = try #require(daemon.waitUntilRunning())
        #expect(daemon.terminate() == 0, "runs and stops fine without systemd")
    }

    /// The app is healthy, but nginx is not running yet, so pointing it at
    /// the app fails: the unit must not become active. The daemon retries
    /// with backoff, says why in status, and sends READY=1 once nginx runs.
    @Test func aFirstStartWhoseProxyUpdateFailsIsNotReadyUntilItWorks() throws {
        try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx is not installed: run scripts/test.sh, which installs it")
        let notify = try NotifyListener()
        let ports = FreePort.pick(2)
        // The upstream file names the other port, so the first start must rewrite and reload.
        let nginx = ProxyKindUnderTest.nginx.make(initialUpstreamPort: ports[1])
        var options = DaemonUnderTest.Options()
        options.ports = ports
        options.proxySection = nginx.proxySection(fault: nil)
        let daemon = DaemonUnderTest(options)
        try daemon.start(environment: nginx.environment.merging(["NOTIFY_SOCKET": notify.path]) { $1 })
        var blocked: CommandResult?
        #expect(eventually(timeout: 20) {
            blocked = try? daemon.ctl(["status", "--json"])
            return (OperatorCLITests.object(blocked?.stdout ?? "")?["problem"] as? String)?.contains("proxy: could not point") == true
        }, "\(daemon.log.suffix(2000))")
        #expect(blocked?.exitCode == 1, "not serving through the proxy yet: \(blocked?.stdout ?? "")")
        #expect(OperatorCLITests.object(blocked?.stdout ?? "")?["phase"] as? String == "starting")
        #expect(eventually(timeout: 10) { daemon.log.contains("first start, try 2:") }, "retried: \(daemon.log.suffix(2000))")
        #expect(!notify.received.contains { $0.contains("READY=1") }, "READY=1 before the proxy pointed at the app: \(notify.received)")
        #expect(notify.received.contains { $0.contains("EXTEND_TIMEOUT_USEC=") }, "systemd's start timeout is extended with each try: \(notify.received)")

        try nginx.start()
        #expect(eventually(timeout: 60) { notify.received.contains { $0.contains("READY=1") } }, "\(daemon.log.suffix(2000))")
        let running = try #require(daemon.waitUntilRunning())
        #expect(running["problem"] == nil)
        #expect(nginx.servedVersion() == "v1", "nginx routes to the app")
    }
}
