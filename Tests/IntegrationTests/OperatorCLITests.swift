#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// What scripts and operators rely on from supervisorctl: one JSON object on
/// stdout for every exit code, `status` telling a serving app from one that
/// is not, `history --limit`.
@Suite(.timeLimit(.minutes(5)))
struct OperatorCLITests {
    static func object(_ text: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    @Test func jsonGivesOneObjectForEveryExitCode() throws {
        // Exit 3: no daemon.
        let nowhere = TemporaryDirectory().file("none.sock")
        for command in [["swap", "/bin/true", "--json"], ["rollback", "--json"], ["status", "--json"], ["history", "--json"]] {
            let result = try Command.run(Binaries.supervisorctl, ["--socket", nowhere] + command)
            #expect(result.exitCode == 3, "\(command): \(result.stderr)")
            let json = Self.object(result.stdout)
            #expect(json?["ok"] as? Bool == false, "\(command): \(result.stdout)")
            #expect((json?["error"] as? [String: Any])?["code"] as? String == "unreachable", "\(command): \(result.stdout)")
            #expect(json?["exit_code"] as? Int == 3)
            #expect(result.stderr.contains("systemctl status supervisor@none"), "the real service name, not NAME: \(result.stderr)")
        }

        // Exit 1 without a daemon: a path refused by supervisorctl itself.
        let badPath = try Command.run(Binaries.supervisorctl, ["--socket", nowhere, "swap", "/tmp/a\nb", "--json"])
        #expect(badPath.exitCode == 1)
        #expect((Self.object(badPath.stdout)?["error"] as? [String: Any])?["code"] as? String == "binary_path_invalid", "\(badPath.stdout)")
        // --emergency reports in words and exit codes only.
        #expect(try Command.run(Binaries.supervisorctl, ["rollback", "--emergency", "--config", "/x.toml", "--json"]).exitCode == 2)

        let stack = try LocalStack()
        _ = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
        // Exit 1, refused before anything started.
        let missing = try stack.daemon.ctl(["swap", stack.work.file("missing"), "--json"])
        #expect(missing.exitCode == 1)
        #expect((Self.object(missing.stdout)?["error"] as? [String: Any])?["code"] as? String == "binary_not_found", "\(missing.stdout)")

        // Exit 4: another swap holds the lock (its new version takes 3 s to start).
        let slow = AppVersions.make("v2", in: stack.work, flags: ["--start-delay-ms", "3000"])
        let scratch = TemporaryDirectory()
        let first = try TestProcess(Binaries.supervisorctl, ["--socket", stack.daemon.socket, "swap", slow, "--json"], stdout: scratch.file("out"), stderr: scratch.file("err"))
        #expect(eventually(timeout: 20, interval: 0.02) { (stack.daemon.status()?["phase"] as? String)?.contains("health") == true })
        // The old instance serves while the new one is gated: status says so (exit 0).
        let during = try stack.daemon.ctl(["status", "--json"])
        #expect(during.exitCode == 0 && Self.object(during.stdout)?["serving"] as? Bool == true, "\(during.stdout)")
        let busy = try stack.daemon.ctl(["swap", slow, "--json"])
        #expect(busy.exitCode == 4, "\(busy.stderr)")
        let busyJSON = Self.object(busy.stdout)
        let busyError = busyJSON?["error"] as? [String: Any]
        #expect(busyError?["code"] as? String == "busy", "\(busy.stdout)")
        #expect(busyError?["phase"] as? String == "health", "\(busy.stdout)")
        #expect(busyJSON?["exit_code"] as? Int == 4)
        #expect(busy.stderr.components(separatedBy: "phase").count == 2, "the phase is named once: \(busy.stderr)")
        #expect(!busy.stderr.contains("still serving"), "\(busy.stderr)")

        // Exit 0: the swap's own result.
        #expect(first.waitForExit(timeout: 60))
        #expect(first.exitCode == 0)
        let done = Self.object((try? String(contentsOfFile: scratch.file("out"), encoding: .utf8)) ?? "")
        #expect(done?["ok"] as? Bool == true)

        // history --limit: the newest entries only, in text and JSON.
        #expect(try stack.daemon.ctl(["rollback"]).exitCode == 0)
        let limited = try stack.daemon.ctl(["history", "--limit", "1"])
        let lines = limited.stdout.split(separator: "\n")
        #expect(lines.count == 2 && lines[1].contains("rollback"), "\(limited.stdout)")
        let limitedJSON = try stack.daemon.ctl(["history", "--json", "--limit", "1"])
        let entries = try? JSONSerialization.jsonObject(with: Data(limitedJSON.stdout.utf8)) as? [[String: Any]]
        #expect(entries?.count == 1 && entries?.first?["action"] as? String == "rollback", "\(limitedJSON.stdout)")
        #expect(try stack.daemon.ctl(["history", "--limit", "0"]).exitCode == 2)
    }

    @Test func statusExitsOneWhileTheAppDoesNotServe() throws {
        let stack = try LocalStack(start: false) { options in
            options.startTimeout = "2s"
        }
        // The live binary exits right after it starts: a crash loop.
        try FileManager.default.removeItem(atPath: stack.live)
        try FileManager.default.copyItem(atPath: AppVersions.make("crashing", in: stack.work, flags: ["--crash-after-ms", "1"]), toPath: stack.live)
        try stack.daemon.start()
        var last: CommandResult?
        #expect(eventually(timeout: 20) {
            last = try? stack.daemon.ctl(["status", "--json"])
            return (Self.object(last?.stdout ?? "")?["restarts"] as? Int ?? 0) > 0
        }, "\(stack.daemon.log.suffix(2000))")
        #expect(last?.exitCode == 1, "\(last?.stdout ?? "")")
        #expect(Self.object(last?.stdout ?? "")?["phase"] as? String != "running")
        let human = try stack.daemon.ctl(["status"])
        #expect(human.exitCode == 1)
        #expect(human.stdout.contains("phase"), "the status is printed all the same: \(human.stdout)")

        // A swap waiting for the app to start does not make it serve.
        let scratch = TemporaryDirectory()
        let waiting = try TestProcess(
            Binaries.supervisorctl, ["--socket", stack.daemon.socket, "swap", AppVersions.make("v2", in: stack.work, flags: [])],
            stdout: scratch.file("out"), stderr: scratch.file("err"))
        var seen: CommandResult?
        #expect(eventually(timeout: 10, interval: 0.02) {
            seen = try? stack.daemon.ctl(["status", "--json"])
            return (Self.object(seen?.stdout ?? "")?["phase"] as? String)?.hasSuffix(":waiting") == true
        }, "\(seen?.stdout ?? "")")
        #expect(seen?.exitCode == 1, "\(seen?.stdout ?? "")")
        #expect(waiting.waitForExit(timeout: 30))
    }

    @Test func ctrlCDuringASwapSaysTheSwapGoesOn() throws {
        let stack = try LocalStack()
        _ = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
        let slow = AppVersions.make("v2", in: stack.work, flags: ["--start-delay-ms", "2000"])
        let scratch = TemporaryDirectory()
        let cli = try TestProcess(Binaries.supervisorctl, ["--socket", stack.daemon.socket, "swap", slow], stdout: scratch.file("out"), stderr: scratch.file("err"))
        #expect(eventually(timeout: 20, interval: 0.02) { (stack.daemon.status()?["phase"] as? String)?.contains("health") == true })
        cli.signal(SIGINT)
        #expect(cli.waitForExit(timeout: 10))
        #expect(cli.exitCode == 130)
        let said = (try? String(contentsOfFile: scratch.file("err"), encoding: .utf8)) ?? ""
        #expect(said.contains("interrupted; the swap goes on in supervisord"), "\(said)")
        #expect(said.contains("status") && said.contains("history --limit 1"), "\(said)")
        // It did go on.
        #expect(eventually(timeout: 30) { stack.daemon.status()?["version"] as? String == "v2" }, "\(stack.daemon.log.suffix(2000))")
    }

    @Test func uptimeCountsFromTheAppsOwnStartAcrossARestartOfTheSupervisor() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let before = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
        let startedAt = try #require(before["started_at"] as? String)
        Thread.sleep(forTimeInterval: 2.5)
        #expect(daemon.terminate(SIGKILL) != nil)
        try daemon.start()
        let after = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
        #expect(after["pid"] as? Int == before["pid"] as? Int, "re-adopted")
        // The same start (to the second it is shown in; /proc counts in clock ticks).
        let parse = ISO8601DateFormatter()
        let first = try #require(parse.date(from: startedAt)), second = try #require(parse.date(from: after["started_at"] as? String ?? ""))
        #expect(abs(first.timeIntervalSince(second)) <= 1, "\(startedAt) then \(after)")
        #expect((after["uptime_seconds"] as? Double ?? 0) >= 2.5, "\(after)")
    }

    /// Past the exchange, exit 1 ("the previous version is still serving")
    /// would be a lie: a restart that fails then is exit 5.
    @Test func anEmergencyRollbackThatFailsAfterTheExchangeExitsFive() throws {
        let stack = try LocalStack { $0.extraControl += "\nemergency_restart = [\"/bin/false\"]" }
        _ = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
        let v1 = try #require(FileManager.default.contents(atPath: stack.live))
        #expect(try stack.daemon.ctl(["swap", AppVersions.make("v2", in: stack.work, flags: []), "--json"]).exitCode == 0)
        #expect(stack.daemon.terminate(SIGKILL) != nil)
        let result = try Command.run(
            Binaries.supervisorctl, ["rollback", "--emergency", "--config", stack.daemon.configPath],
            environment: stack.daemon.daemonEnvironment(), timeout: 60)
        #expect(result.exitCode == 5, "\(result.stderr)")
        #expect(result.stderr.contains("[emergency_incomplete]") && result.stderr.contains("the binaries are exchanged"), "\(result.stderr)")
        #expect(FileManager.default.contents(atPath: stack.live) == v1, "the files stay exchanged: <binary> is the restored v1")

        // The sh twin says the same, with the same exit code (exchanging back to v2).
        let shell = try Command.run("/bin/sh", [Repository.path("scripts/emergency-rollback.sh"), stack.daemon.configPath], timeout: 60)
        #expect(shell.exitCode == 5, "\(shell.stderr)")
        #expect(shell.stderr.contains("[emergency_incomplete]"), "\(shell.stderr)")
    }
}
