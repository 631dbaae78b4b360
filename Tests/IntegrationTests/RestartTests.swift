#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension UnderLoad {
    /// `supervisorctl restart`: the app started again through the swap's
    /// gates with `[app]` as the config file has it now, under wrk.
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct RestartTests {
        /// The config file with `[app] env` set to `env` (and `extra` appended).
        static func editConfig(_ stack: ProxyStack, env: String, extra: String = "") throws {
            let path = stack.daemon.configPath
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            let edited = lines.map { $0.trimmingCharacters(in: .whitespaces).hasPrefix("env = ") ? "env = \(env)" : String($0) }
            try (edited.joined(separator: "\n") + "\n" + extra).write(toFile: path, atomically: true, encoding: .utf8)
        }

        @Test func aRestartAfterAnEnvChangeServesTheNewEnvironmentAndKeepsTheBackup() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled && LoadGenerator.isInstalled, "nginx and wrk: run scripts/test.sh")
            let stack = try ProxyStack(.nginx)
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let (swapped, _) = try stack.swap(stack.version("v2"))
            #expect(swapped.exitCode == 0, "\(swapped.stderr)")
            let before = try #require(stack.daemon.status())
            let live = stack.bytes(stack.live), backup = stack.bytes(stack.live + ".bak")
            #expect(backup != nil && backup != live)
            let health = { httpGet(port: stack.proxy.listenPort, path: "/health")?.body ?? "" }
            #expect(!health().contains("greeting"))

            try Self.editConfig(stack, env: #"{ DEMO_HEALTH_FIELDS = "greeting=hello" }"#, extra: "\n[metrics]\n")
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let result = try stack.daemon.ctl(["restart", "--json"])
            let report = load.finish()
            report.expectNothingFailed("nginx restart after an env change")

            #expect(result.exitCode == 0, "\(result.stderr)")
            #expect(result.stderr.contains("applies the config file's app.env to the new instance"), "\(result.stderr)")
            #expect(result.stderr.contains("is left as it was"), "\(result.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            #expect(json["action"] as? String == "restart")
            #expect(json["ok"] as? Bool == true)
            #expect(health().contains(#""greeting":"hello""#), "\(health())")
            #expect(stack.proxy.servedVersion() == "v2")
            let after = try #require(stack.daemon.status())
            #expect(after["pid"] as? Int != before["pid"] as? Int)
            #expect(after["port"] as? Int != before["port"] as? Int)
            #expect(stack.bytes(stack.live) == live, "the live binary is the same")
            #expect(stack.bytes(stack.live + ".bak") == backup, ".bak still holds v1")
            #expect(!FileManager.default.fileExists(atPath: stack.live + ".new"))
            #expect(((after["backup"] as? [String: Any])?["version"] as? String) == "v1")
            let history = try stack.daemon.ctl(["history", "--limit", "1", "--json"])
            #expect(history.stdout.contains("\"action\":\"restart\""), "\(history.stdout)")
            stack.expectNothingStray()

            // A crash now restarts it the way the restart started it: with the new environment.
            let pid = try #require(after["pid"] as? Int)
            kill(Int32(pid), SIGKILL)
            #expect(eventually(timeout: 20) { (stack.daemon.status()?["pid"] as? Int).map { $0 != pid } == true && stack.daemon.status()?["phase"] as? String == "running" })
            #expect(health().contains(#""greeting":"hello""#), "\(health())")
        }

        @Test func otherChangesAreNamedAndABrokenFileRestartsNothing() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx: run scripts/test.sh")
            let stack = try ProxyStack(.nginx)
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")

            // [drain] timeout is read once, at start: the restart says so and still restarts.
            let text = try String(contentsOfFile: stack.daemon.configPath, encoding: .utf8)
            try text.replacingOccurrences(of: "\ntimeout = \"5s\"", with: "\ntimeout = \"7s\"").write(toFile: stack.daemon.configPath, atomically: true, encoding: .utf8)
            let named = try stack.daemon.ctl(["restart"])
            #expect(named.exitCode == 0, "\(named.stderr)")
            #expect(named.stderr.contains("not applied: [drain] changed in the config file"), "\(named.stderr)")
            let middle = try #require(stack.daemon.status())
            #expect(middle["pid"] as? Int != before["pid"] as? Int)

            // A file with a problem: refused with every problem, nothing restarted.
            try (text + "\n[app2]\n").write(toFile: stack.daemon.configPath, atomically: true, encoding: .utf8)
            let refused = try stack.daemon.ctl(["restart", "--json"])
            #expect(refused.exitCode == 1)
            #expect(refused.stdout.contains("\"code\":\"config_invalid\""), "\(refused.stdout)")
            #expect(refused.stderr.contains("app2: unknown key"), "\(refused.stderr)")
            #expect(refused.stderr.contains("Nothing was changed."), "\(refused.stderr)")
            #expect(stack.daemon.status()?["pid"] as? Int == middle["pid"] as? Int)
            #expect(stack.proxy.servedVersion() == "v1")

            // The live file replaced on disk: a restart would run it and keep no copy of what runs.
            try text.write(toFile: stack.daemon.configPath, atomically: true, encoding: .utf8)
            let v1 = stack.bytes(stack.live)
            try FileManager.default.removeItem(atPath: stack.live)
            try FileManager.default.copyItem(atPath: stack.version("v9"), toPath: stack.live)
            let replaced = try stack.daemon.ctl(["restart", "--json"])
            #expect(replaced.exitCode == 1, "\(replaced.stderr)")
            #expect(replaced.stdout.contains("\"code\":\"stage_failed\""), "\(replaced.stdout)")
            #expect(replaced.stderr.contains("is not known to be the binary that runs"), "\(replaced.stderr)")
            #expect(stack.daemon.status()?["pid"] as? Int == middle["pid"] as? Int)
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(!FileManager.default.fileExists(atPath: stack.live + ".new"))
            #expect(!FileManager.default.fileExists(atPath: stack.live + ".bak"))
            #expect(v1 != stack.bytes(stack.live))
        }

        /// A swap to the very bytes that run restarts them and leaves `.bak` alone.
        @Test func aSwapToTheSameBytesKeepsTheBackup() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx: run scripts/test.sh")
            let stack = try ProxyStack(.nginx)
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let v2 = stack.version("v2")
            #expect(try stack.swap(v2).0.exitCode == 0)
            let backup = try #require(stack.bytes(stack.live + ".bak"))
            let (again, _) = try stack.swap(v2)
            #expect(again.exitCode == 0, "\(again.stderr)")
            #expect(again.stderr.contains("is left as it was"), "\(again.stderr)")
            #expect(stack.bytes(stack.live + ".bak") == backup, ".bak still holds v1")
            #expect(((stack.daemon.status()?["backup"] as? [String: Any])?["version"] as? String) == "v1")
        }
    }
}
