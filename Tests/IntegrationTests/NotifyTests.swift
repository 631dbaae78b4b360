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
}
