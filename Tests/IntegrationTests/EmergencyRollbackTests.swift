#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension UnderLoad {
    /// `supervisorctl rollback --emergency` (and its sh twin) with the daemon
    /// dead or hung, under wrk through the real proxies, with demo-app ELF
    /// versions as the app, and a restart command that really starts the daemon
    /// again: the restored binary must end up serving with no failed request,
    /// and the CLI must say ok only once it saw that.
    @Suite(.timeLimit(.minutes(10)))
    struct EmergencyRollbackTests {
        enum DaemonFault: String, CustomStringConvertible, CaseIterable {
            case dead
            case hung
            var description: String { rawValue }
        }

        /// v1 live, swapped to v2 (so `.bak` is v1); the daemon's emergency restart starts it again.
        func swappedToV2(_ kind: ProxyKindUnderTest) throws -> (stack: ProxyStack, v2PID: Int32, v1: Data, v2: Data) {
            let stack = try ProxyStack(kind) { $0.emergencyRestartStartsDaemon = true }
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let (swap, _) = try stack.swap(stack.version("v2"))
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            let running = try #require(stack.daemon.waitUntilRunning())
            let v1 = try #require(stack.bytes(stack.live + ".bak"))
            let v2 = try #require(stack.bytes(stack.live))
            return (stack, Int32(try #require(running["pid"] as? Int)), v1, v2)
        }

        func emergencyRollback(_ stack: ProxyStack) throws -> CommandResult {
            try Command.run(
                Binaries.supervisorctl, ["rollback", "--emergency", "--config", stack.daemon.configPath],
                environment: stack.daemon.daemonEnvironment(adding: stack.proxy.environment), timeout: 120)
        }

        @Test(arguments: [ProxyKindUnderTest.caddy, .nginx], DaemonFault.allCases)
        func theRestoredBinaryServesWithZeroFailedRequests(_ kind: ProxyKindUnderTest, _ fault: DaemonFault) throws {
            let (stack, v2PID, v1, v2) = try swappedToV2(kind)
            let oldDaemon = stack.daemon.pid
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            switch fault {
            case .dead: #expect(stack.daemon.terminate(SIGKILL) != nil)
            case .hung: stack.daemon.process?.signal(SIGSTOP)
            }

            let result = try emergencyRollback(stack)
            #expect(result.exitCode == 0, "\(result.stderr)\n\(stack.daemon.log)")
            #expect(result.stderr.contains("confirmed: pid"), "the CLI saw the restored binary serving before it said ok: \(result.stderr)")
            if fault == .hung {
                #expect(result.stderr.contains("stopped supervisord (pid \(oldDaemon)) with SIGKILL"), "\(result.stderr)")
            }
            // What the CLI confirmed is what serves, and stays so.
            let status = try #require(stack.daemon.status(), "the started daemon answers")
            #expect(status["phase"] as? String == "running")
            #expect(status["version"] as? String == "v1")
            #expect(status["restarts"] as? Int == 0)
            let v1PID = try #require(status["pid"] as? Int)
            #expect(Int32(v1PID) != v2PID)
            #expect((status["emergency_rollback"] as? [String: Any])?["state"] as? String == "ok")
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(eventually(timeout: 10) { !processExists(v2PID) }, "the rolled-away instance (pid \(v2PID)) was stopped")
            #expect(!processExists(oldDaemon), "the \(fault) daemon is gone")
            // One reload: the move's switch (the first start finds the upstream already right).
            load.finish().expectNothingFailed("\(kind): emergency rollback with the daemon \(fault)", through: kind, caddyReloads: 1)

            #expect(stack.bytes(stack.live) == v1, "<binary> is the restored version")
            #expect(stack.bytes(stack.live + ".bak") == v2, "<binary>.bak is the rolled-away version (a rollback re-applies it)")
            #expect(!FileManager.default.fileExists(atPath: stack.daemon.directory.file("state/emergency-rollback.json")), "the record is consumed")
            #expect(try FileManager.default.contentsOfDirectory(atPath: stack.work.file("bin")).sorted() == ["app", "app.bak"], "no .new or temp file left")
            let history = stack.daemon.historyEntries() ?? []
            #expect(history.filter { $0["action"] as? String == "emergency-rollback" }.count == 1, "one line for one emergency rollback: \(history)")
        }

        /// The sh fallback does the same steps (no confirmation: it says how to check).
        @Test func shellTwinRollsBackWithZeroFailedRequests() throws {
            let (stack, v2PID, v1, v2) = try swappedToV2(.caddy)
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            #expect(stack.daemon.terminate(SIGKILL) != nil)
            let result = try Command.run(
                "/bin/sh", [Repository.path("scripts/emergency-rollback.sh"), stack.daemon.configPath],
                environment: stack.daemon.daemonEnvironment(adding: stack.proxy.environment), timeout: 60)
            #expect(result.exitCode == 0, "\(result.stderr)")
            #expect(eventually(timeout: 60) {
                (stack.daemon.status()?["emergency_rollback"] as? [String: Any])?["state"] as? String == "ok"
            }, "\(result.stderr)\n\(stack.daemon.log)")
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(eventually(timeout: 10) { !processExists(v2PID) })
            load.finish().expectNothingFailed("caddy: emergency-rollback.sh with the daemon dead", through: .caddy, caddyReloads: 1)
            #expect(stack.bytes(stack.live) == v1)
            #expect(stack.bytes(stack.live + ".bak") == v2)
            #expect(try FileManager.default.contentsOfDirectory(atPath: stack.work.file("bin")).sorted() == ["app", "app.bak"], "no temp file left")
            #expect((stack.daemon.historyEntries() ?? []).contains { $0["action"] as? String == "emergency-rollback" && $0["result"] as? String == "ok" })
        }

        /// A `.bak` that cannot run is refused before anything changes: the files stay, the
        /// daemon is neither killed nor restarted, the same app keeps serving.
        @Test func aBackupThatCannotRunIsRefusedAndNothingChanges() throws {
            let stack = try LocalStack { $0.emergencyRestartStartsDaemon = true }
            let before = try #require(stack.daemon.waitUntilRunning())
            let live = try #require(FileManager.default.contents(atPath: stack.live))
            let backup = stack.live + ".bak"
            let cases: [(String, () throws -> Void, String, String)] = [
                ("missing", {}, "[no_backup]", "does not exist"),
                ("not executable", { _ = stack.work.write("bin/app.bak", "#!/bin/sh\nexit 0\n", mode: 0o644) }, "[binary_not_executable]", "is not executable"),
                ("a directory", { try FileManager.default.createDirectory(atPath: backup, withIntermediateDirectories: false) }, "[binary_not_regular]", "is not a regular file"),
                ("empty", { _ = stack.work.write("bin/app.bak", "", mode: 0o755) }, "[binary_empty]", "is empty"),
            ]
            for (label, make, code, words) in cases {
                try? FileManager.default.removeItem(atPath: backup)
                try make()
                let result = try Command.run(
                    Binaries.supervisorctl, ["rollback", "--emergency", "--config", stack.daemon.configPath],
                    environment: stack.daemon.daemonEnvironment(), timeout: 30)
                #expect(result.exitCode == 1, "\(label): \(result.stderr)")
                #expect(result.stderr.contains(code) && result.stderr.contains(words), "\(label): \(result.stderr)")
                #expect(result.stderr.contains("nothing was exchanged or restarted"), "\(label): \(result.stderr)")
                let shell = try Command.run("/bin/sh", [Repository.path("scripts/emergency-rollback.sh"), stack.daemon.configPath], timeout: 30)
                #expect(shell.exitCode == 1, "\(label): \(shell.stderr)")
                #expect(shell.stderr.contains(words), "\(label): \(shell.stderr)")
                #expect(FileManager.default.contents(atPath: stack.live) == live, "\(label): <binary> untouched")
                #expect(stack.daemon.process?.isRunning == true, "\(label): the daemon was not killed")
                #expect(stack.daemon.status()?["pid"] as? Int == before["pid"] as? Int, "\(label): the same app serves")
            }
            #expect(!stack.daemon.log.contains("started supervisord again"), "nothing was restarted")
            let noConfig = try Command.run(Binaries.supervisorctl, ["rollback", "--emergency"])
            #expect(noConfig.exitCode == 2)
            #expect(noConfig.stderr.contains("--emergency needs --config FILE"))
        }
    }
}
