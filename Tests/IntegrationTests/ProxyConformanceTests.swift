#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension UnderLoad {
    /// One suite, run against every proxy driver with the real proxy: swaps
    /// under load, rollback, and each way the proxy's part can fail.
    @Suite(.timeLimit(.minutes(10)))
    struct ProxyConformanceTests {
        @Test(arguments: ProxyKindUnderTest.allCases)
        func tenSwapsUnderLoadFailNoRequest(_ kind: ProxyKindUnderTest) throws {
            try #require(kind.isInstalled, "\(kind.rawValue) is not installed: run scripts/test.sh, which installs it")
            try #require(LoadGenerator.isInstalled, "wrk is not installed: run scripts/test.sh, which installs it")
            let stack = try ProxyStack(kind)
            #expect(stack.daemon.waitUntilRunning() != nil, "log:\n\(stack.daemon.log)")
            #expect(stack.serves("v1"), "\(kind.rawValue) log:\n\(stack.proxy.log)")

            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let started = Date()
            var switchMS: [Int] = []
            for index in 2...11 {
                let tag = "v\(index)"
                let next = stack.version(tag)
                let previousBytes = stack.bytes(stack.live)
                let oldPID = stack.daemon.status()?["pid"] as? Int
                let (result, json) = try stack.swap(next)
                #expect(result.exitCode == 0, "swap to \(tag): \(result.stderr)\nlog:\n\(stack.daemon.log.suffix(3000))")
                #expect(json?["ok"] as? Bool == true)
                #expect((json?["to"] as? [String: Any])?["version"] as? String == tag)
                if let phases = json?["phases_ms"] as? [String: Int], let ms = phases["switch"] { switchMS.append(ms) }
                #expect(stack.proxy.servedVersion() == tag, "\(kind.rawValue) serves the new version right after swap returns")
                #expect(stack.bytes(stack.live + ".bak") == previousBytes, ".bak is the previous binary, byte for byte")
                #expect(stack.bytes(stack.live) == stack.bytes(next))
                if let oldPID { #expect(!processExists(pid_t(oldPID)), "old pid \(oldPID) is gone") }
                stack.expectNothingStray()
            }
            let swapSeconds = Date().timeIntervalSince(started)
            let swaps = load.finish()
            let byHand = try stack.switchByHandUnderLoad(times: 10, spacing: swapSeconds / 10)
            let sortedSwitch = switchMS.sorted()
            print("LOAD \(kind.rawValue) 10 swaps (Connection: close): \(swaps) in \(String(format: "%.1f", swapSeconds))s; switch phase ms median \(sortedSwitch.isEmpty ? 0 : sortedSwitch[sortedSwitch.count / 2]), max \(sortedSwitch.last ?? 0)")
            print("LOAD \(kind.rawValue) 10 upstream switches by hand (Connection: close): \(byHand)")

            #expect(swaps.non2xx == 0, "\(swaps)")
            #expect(swaps.requests > 1000)
            // A proxy may reset a few queued client connections whenever its
            // config changes (Caddy 2.6 does: 0–13 measured per reload), whoever
            // changes it. A swap must add nothing of its own: compare with the
            // same number of switches by hand, allowing the spread such runs show.
            // Bare reloads themselves spread widely from one run of ten to the next (seen: 0 to 39
            // under the same load): past the bound, a second sample of ten bare switches is taken,
            // and the swaps are compared with the larger of the two.
            func bound(_ reloads: LoadReport) -> Int { max(2 * reloads.socketErrors, reloads.socketErrors + 30) }
            var reference = byHand
            if swaps.socketErrors > bound(byHand) {
                let again = try stack.switchByHandUnderLoad(times: 10, spacing: swapSeconds / 10)
                print("LOAD \(kind.rawValue) 10 more upstream switches by hand (Connection: close): \(again)")
                if again.socketErrors > reference.socketErrors { reference = again }
            }
            #expect(swaps.socketErrors <= bound(reference), "swaps \(swaps) vs by hand \(reference)")
            let history = try stack.daemon.ctl(["history", "--json"])
            let entries = (try? JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [[String: Any]]) ?? []
            #expect(entries.count == 10)
            #expect(entries.allSatisfy { $0["result"] as? String == "ok" && $0["caller_uid"] as? Int == Int(getuid()) })
        }

        @Test(arguments: ProxyKindUnderTest.allCases)
        func rollbackAfterASwapServesV1AndKeepsV2AsBak(_ kind: ProxyKindUnderTest) throws {
            try #require(kind.isInstalled, "\(kind.rawValue) is not installed: run scripts/test.sh, which installs it")
            let stack = try ProxyStack(kind)
            #expect(stack.daemon.waitUntilRunning() != nil)
            #expect(stack.serves("v1"))
            let v1Bytes = stack.bytes(stack.live)

            let noBackup = try stack.daemon.ctl(["rollback"])
            #expect(noBackup.exitCode == 1)
            #expect(noBackup.stderr.contains("[no_backup]"), "\(noBackup.stderr)")
            #expect(noBackup.stderr.contains("Next: nothing was swapped yet"), "\(noBackup.stderr)")

            let v2 = stack.version("v2")
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (swap, _) = try stack.swap(v2)
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            #expect(stack.proxy.servedVersion() == "v2")

            let rollback = try stack.daemon.ctl(["rollback", "--json"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            #expect(rollback.stdout.contains("\"action\":\"rollback\""))
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(stack.bytes(stack.live) == v1Bytes)
            #expect(stack.bytes(stack.live + ".bak") == stack.bytes(v2), ".bak now holds v2")
            let report = load.finish()
            print("LOAD \(kind.rawValue) swap + rollback: \(report)")
            #expect(report.non2xx == 0, "\(report)")

            // A second rollback re-applies v2.
            let again = try stack.daemon.ctl(["rollback"])
            #expect(again.exitCode == 0)
            #expect(stack.proxy.servedVersion() == "v2")
            stack.expectNothingStray()
        }

        @Test(arguments: ProxyKindUnderTest.faultCases)
        func proxyFaultLeavesTheOldVersionServing(_ kind: ProxyKindUnderTest, _ fault: ProxyFault) throws {
            try #require(kind.isInstalled, "\(kind.rawValue) is not installed: run scripts/test.sh, which installs it")
            let expectedCode = try #require(kind.faults[fault])
            let stack = try ProxyStack(kind, fault: fault)
            if kind.faultBlocksFirstStart(fault) {
                // The fault is in the daemon's own proxy settings, so already its first
                // start cannot point (or confirm) the proxy: it never claims to be ready,
                // says why, and the app keeps serving through the proxy as it was.
                var status: [String: Any]?
                #expect(eventually(timeout: 30) {
                    status = stack.daemon.status()
                    return (status?["problem"] as? String)?.contains("[\(expectedCode)]") == true
                }, "log:\n\(stack.daemon.log.suffix(3000))")
                #expect(status?["phase"] as? String == "starting", "\(status ?? [:])")
                #expect(eventually(timeout: 10) { stack.daemon.log.contains("first start, try 2:") }, "retried")
                #expect(stack.serves("v1"))
                return
            }
            let before = try #require(stack.daemon.waitUntilRunning(), "log:\n\(stack.daemon.log)")
            #expect(stack.serves("v1"))
            let v1Bytes = stack.bytes(stack.live)
            try stack.proxy.inject(fault)

            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (result, json) = try stack.swap(stack.version("v2"))
            let report = load.finish()
            print("LOAD \(kind.rawValue) fault \(fault.rawValue): \(report)")

            #expect(result.exitCode == 1, "\(result.stderr)")
            #expect((json?["error"] as? [String: Any])?["code"] as? String == expectedCode, "stdout: \(result.stdout)\nstderr: \(result.stderr)")
            #expect(result.stderr.contains("previous version is still serving"))
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(report.non2xx == 0, "\(report)")
            #expect(stack.bytes(stack.live) == v1Bytes, "live binary untouched")
            #expect(!FileManager.default.fileExists(atPath: stack.live + ".bak"))
            stack.expectNothingStray()
            #expect(stack.daemon.status()?["pid"] as? Int == before["pid"] as? Int, "the serving instance never changed")
            #expect(!isListening(port: stack.daemon.ports[1]), "nothing left on the side port")
        }
    }
}
