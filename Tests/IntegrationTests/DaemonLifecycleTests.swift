#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@Suite(.timeLimit(.minutes(2)))
struct DaemonLifecycleTests {
    @Test func daemonStartsTheAppAndStatusDescribesIt() throws {
        let daemon = DaemonUnderTest(.init(appArgs: ["--version-tag", "v1"]))
        try daemon.start()
        let status = try #require(daemon.waitUntilRunning(), "daemon never reported running; log:\n\(daemon.log)")
        let pid = try #require(status["pid"] as? Int)
        #expect(status["port"] as? Int == daemon.ports[0])
        #expect(status["name"] as? String == "itest")
        #expect(status["restarts"] as? Int == 0)
        #expect(status["binary"] as? String == Binaries.demoApp)
        #expect((status["sha256"] as? String)?.count == 64)
        #expect(status["started_at"] is String)
        #expect(processExists(Int32(pid)))
        // The app really serves on the port status names.
        let answer = try #require(httpGet(port: daemon.ports[0]))
        #expect(answer.status == 200)
        #expect(answer.body.contains("demo-app v1"))

        // The human view names the same pid and port.
        let human = try daemon.ctl(["status"])
        #expect(human.exitCode == 0)
        #expect(human.stdout.contains("\(pid)"))
        #expect(human.stdout.contains("\(daemon.ports[0])"))
        #expect(human.stdout.contains("running"))
    }

    @Test func appRunsInItsOwnSession() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let status = try #require(daemon.waitUntilRunning())
        let pid = try #require(status["pid"] as? Int)
        // getsid(pid) == pid: it leads its own session (setsid), so a terminal's signals do not reach it.
        #expect(getsid(pid_t(pid)) == pid_t(pid))
    }

    @Test func killedAppIsRestartedAndStatusSaysSo() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let first = try #require(daemon.waitUntilRunning())
        let oldPID = try #require(first["pid"] as? Int)
        kill(pid_t(oldPID), SIGKILL)

        var restarted: [String: Any]?
        let ok = eventually {
            restarted = daemon.status()
            guard let pid = restarted?["pid"] as? Int else { return false }
            return pid != oldPID && restarted?["phase"] as? String == "running"
        }
        #expect(ok, "app was not restarted; log:\n\(daemon.log)")
        #expect(restarted?["restarts"] as? Int == 1)
        #expect((restarted?["last_exit"] as? String)?.contains("SIGKILL") == true)
        #expect(httpGet(port: daemon.ports[0])?.status == 200)
        #expect(daemon.log.contains("restarting in"))
    }

    @Test func sigtermStopsTheAppAndLeavesNothingBehind() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let status = try #require(daemon.waitUntilRunning())
        let pid = pid_t(try #require(status["pid"] as? Int))

        let code = daemon.terminate(SIGTERM)
        #expect(code == 0, "daemon exit code; log:\n\(daemon.log)")
        #expect(!processExists(pid), "app \(pid) outlived the daemon's stop")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "control socket left behind")
        #expect(daemon.log.contains("stopping app with SIGTERM"))
        #expect(daemon.log.contains("drained, exiting"), "the app drained on SIGTERM")
    }

    @Test func appIgnoringSIGTERMIsKilledAfterStopTimeout() throws {
        let daemon = DaemonUnderTest(.init(appArgs: ["--ignore-sigterm"], stopTimeout: "500ms"))
        try daemon.start()
        let status = try #require(daemon.waitUntilRunning())
        let pid = pid_t(try #require(status["pid"] as? Int))

        #expect(daemon.terminate(SIGTERM) == 0)
        #expect(!processExists(pid))
        #expect(daemon.log.contains("sending SIGKILL"))
    }

    @Test func sigintStopsLikeSigterm() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let status = try #require(daemon.waitUntilRunning())
        let pid = pid_t(try #require(status["pid"] as? Int))
        #expect(daemon.terminate(SIGINT) == 0)
        #expect(!processExists(pid))
    }

    @Test func appThatCrashesAtStartIsRetriedWithBackoffAndNeverReady() throws {
        let notify = try NotifyListener()
        let daemon = DaemonUnderTest(.init(appArgs: ["--crash-at-start"]))
        try daemon.start(environment: ["NOTIFY_SOCKET": notify.path])
        var status: [String: Any]?
        #expect(eventually {
            status = daemon.status()
            return (status?["restarts"] as? Int ?? 0) >= 3
        }, "log:\n\(daemon.log)")
        #expect(status?["phase"] as? String != "running")
        #expect((status?["last_exit"] as? String)?.contains("code 3") == true)
        #expect(!notify.received.contains { $0.contains("READY=1") }, "READY=1 sent for an app that never became healthy")
        #expect(daemon.terminate() == 0)
    }

    @Test func appNeverHealthyIsKilledAtStartTimeoutAndRetried() throws {
        let daemon = DaemonUnderTest(.init(appArgs: ["--fail-health"], startTimeout: "500ms"))
        try daemon.start()
        var firstPID: Int?
        #expect(eventually {
            let status = daemon.status()
            if firstPID == nil { firstPID = status?["pid"] as? Int }
            return (status?["restarts"] as? Int ?? 0) >= 1
        }, "log:\n\(daemon.log)")
        #expect(daemon.log.contains("did not become healthy within 500ms (last probe: HTTP 503)"))
        if let firstPID { #expect(!processExists(pid_t(firstPID))) }
        #expect(daemon.terminate() == 0)
    }

    @Test func journalStreamGetsPriorityPrefixes() throws {
        let daemon = DaemonUnderTest()
        try daemon.start(environment: ["JOURNAL_STREAM": "8:12345"])
        let status = try #require(daemon.waitUntilRunning())
        kill(pid_t(try #require(status["pid"] as? Int)), SIGKILL)
        #expect(eventually { daemon.log.contains("<4>app stopped unexpectedly") }, "log:\n\(daemon.log)")
        let lines = daemon.log.split(separator: "\n").filter { !$0.hasPrefix("demo-app") }
        #expect(lines.contains { $0.hasPrefix("<6>control socket ready") })
        #expect(lines.allSatisfy { $0.first == "<" }, "every daemon line carries a priority: \(lines)")
    }

    @Test func secondDaemonOnTheSameSocketIsRefused() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        _ = try #require(daemon.waitUntilRunning())
        // Another service (its own state directory and ports) configured with
        // the same control socket. (The same config is refused earlier, by the
        // lock in the state directory: OneDaemonTests.)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let ports = FreePort.pick(2)
        let other = daemon.directory.write(
            "other.toml",
            config.replacingOccurrences(of: daemon.directory.file("state"), with: daemon.directory.file("other-state"))
                .replacingOccurrences(of: "ports = [\(daemon.ports[0]), \(daemon.ports[1])]", with: "ports = [\(ports[0]), \(ports[1])]"))
        let second = try Command.run(Binaries.supervisord, ["--config", other], timeout: 20)
        #expect(second.exitCode == 1)
        #expect(second.stderr.contains("already serving"), "stderr: \(second.stderr)")
        // The first one is untouched.
        #expect(daemon.status()?["phase"] as? String == "running")
    }
}
