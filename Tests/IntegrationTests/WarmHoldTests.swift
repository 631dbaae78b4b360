#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import Testing

extension UnderLoad {
    /// `[health] watch`: the old instance kept warm out of rotation, behind nginx.
    @Suite(.timeLimit(.minutes(5)))
    struct WarmHoldTests {
        init() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx is not installed: run scripts/test.sh, which installs it")
            try #require(LoadGenerator.isInstalled, "wrk is not installed: run scripts/test.sh, which installs it")
        }

        @Test func rollbackInsideTheWindowFlipsBackToTheSameOldProcess() throws {
            let stack = try ProxyStack(.nginx) { $0.extraHealth += "\nwatch = \"60s\"" }
            let before = try #require(stack.daemon.waitUntilRunning())
            let oldPID = try #require(before["pid"] as? Int)
            let v1 = stack.bytes(stack.live)
            let v2Path = stack.version("v2")
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            let (swap, json) = try stack.swap(v2Path)
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            #expect(swap.stderr.contains("warm hold: the old instance (pid \(oldPID)) stays alive out of rotation for 1m"), "\(swap.stderr)")
            let newPID = try #require(json?["pid"] as? Int)
            #expect(stack.proxy.servedVersion() == "v2")
            #expect(processExists(pid_t(oldPID)), "the old instance is kept warm")
            #expect(stack.bytes(stack.live) == stack.bytes(v2Path))

            let rollback = try stack.daemon.ctl(["rollback", "--json"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            let flip = try? JSONSerialization.jsonObject(with: Data(rollback.stdout.utf8)) as? [String: Any]
            print("LOAD nginx rollback inside the warm hold took \(flip?["total_ms"] ?? "?") ms, phases \(flip?["phases_ms"] ?? "?")")
            #expect(rollback.stderr.contains("requested inside the warm hold: no new instance is started"))
            #expect(stack.proxy.servedVersion() == "v1")
            let after = try #require(stack.daemon.status())
            #expect(after["pid"] as? Int == oldPID, "the very process that served before the swap serves again")
            #expect(!processExists(pid_t(newPID)))
            #expect(stack.bytes(stack.live) == v1)
            #expect(stack.bytes(stack.live + ".bak") == stack.bytes(v2Path))
            let report = load.finish()
            print("LOAD nginx swap + rollback inside the warm hold: \(report)")
            #expect(report.non2xx == 0 && report.socketErrors == 0, "\(report)")
            let history = try stack.daemon.ctl(["history", "--json"])
            #expect(history.stdout.contains("\"action\":\"rollback\""))
        }

        @Test func failingHealthInsideTheWindowRollsBackAutomatically() throws {
            let stack = try ProxyStack(.nginx) { $0.extraHealth += "\nwatch = \"60s\"" }
            let before = try #require(stack.daemon.waitUntilRunning())
            let oldPID = try #require(before["pid"] as? Int)
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (swap, _) = try stack.swap(stack.version("v2", flags: ["--fail-health-after-ms", "1500"]))
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            #expect(stack.proxy.servedVersion() == "v2")

            #expect(eventually(timeout: 20) { stack.proxy.servedVersion() == "v1" }, "\(stack.daemon.log.suffix(2000))")
            #expect(eventually(timeout: 10) { stack.daemon.status()?["pid"] as? Int == oldPID })
            let report = load.finish()
            print("LOAD nginx automatic rollback inside the warm hold: \(report)")
            #expect(report.non2xx == 0 && report.socketErrors == 0, "\(report)")
            #expect(eventually(timeout: 10) { ((try? stack.daemon.ctl(["history", "--json"]))?.stdout ?? "").contains("\"action\":\"auto-rollback\"") })
            let metrics = try PrometheusText.parse(try stack.daemon.metrics())
            #expect(metrics.value("supervisor_rollbacks_total", ["kind": "auto", "result": "ok"]) == 1)
        }

        @Test func aCrashInsideTheWindowRollsBackAutomatically() throws {
            let stack = try ProxyStack(.nginx) { $0.extraHealth += "\nwatch = \"60s\"" }
            let before = try #require(stack.daemon.waitUntilRunning())
            let oldPID = try #require(before["pid"] as? Int)
            let (swap, _) = try stack.swap(stack.version("v2", flags: ["--crash-after-ms", "1500"]))
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            #expect(eventually(timeout: 20) { stack.daemon.status()?["pid"] as? Int == oldPID && stack.proxy.servedVersion() == "v1" }, "\(stack.daemon.log.suffix(2000))")
            #expect(stack.daemon.log.contains("during the watch window"))
        }

        @Test func afterTheWindowTheOldInstanceIsStopped() throws {
            let stack = try ProxyStack(.nginx) { $0.extraHealth += "\nwatch = \"1s\"" }
            let before = try #require(stack.daemon.waitUntilRunning())
            let oldPID = try #require(before["pid"] as? Int)
            let (swap, _) = try stack.swap(stack.version("v2"))
            #expect(swap.exitCode == 0)
            #expect(eventually(timeout: 15) { !processExists(pid_t(oldPID)) })
            #expect(stack.proxy.servedVersion() == "v2")
            // A rollback after the window is an ordinary one (starts .bak).
            let rollback = try stack.daemon.ctl(["rollback"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            #expect(rollback.stderr.contains("staged \(stack.live).bak"))
        }
    }
}
