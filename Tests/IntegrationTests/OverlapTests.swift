#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension UnderLoad {
    /// DESIGN "The swap, step by step" §1 Lock and "Watch (warm hold)": one
    /// swap or rollback at a time in every phase, the warm hold and its flips
    /// included; a second request is refused at once with exit 4 (`busy`).
    /// Requests here really overlap: several supervisorctl processes are
    /// started together against the daemon's control socket, behind nginx,
    /// under wrk.
    @Suite(.timeLimit(.minutes(10)))
    struct OverlapTests {
        init() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx is not installed: run scripts/test.sh, which installs it")
            try #require(LoadGenerator.isInstalled, "wrk is not installed: run scripts/test.sh, which installs it")
        }

        /// Exit 4 with the phase named; with `--json`, `error.code == "busy"` when an object is printed.
        static func expectBusy(_ result: CommandResult, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(result.exitCode == 4, "\(label): \(result.brief)", sourceLocation: sourceLocation)
            guard result.exitCode == 4 else { return }
            #expect(result.stderr.contains("phase"), "\(label): a refusal names the phase the first request is in: \(result.stderr)", sourceLocation: sourceLocation)
            if let object = jsonObject(result.stdout) {
                #expect(errorCode(result) == "busy", "\(label): \(object)", sourceLocation: sourceLocation)
            }
        }

        @Test func threeSwapsAtOnceDuringAWarmHoldOneWinsTheOthersAreBusy() throws {
            // Ending the hold is slow: v1 ignores SIGTERM and is killed after stop_timeout.
            let stack = try ProxyStack(.nginx, v1Flags: ["--ignore-sigterm"]) {
                $0.extraHealth += "\nwatch = \"20s\""
                $0.stopTimeout = "3s"
            }
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let v1PID = try #require(before["pid"] as? Int)
            let tags = ["v3a", "v3b", "v3c"]
            let sources = tags.map { stack.version($0) }
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            let v2Path = stack.version("v2")
            let (swap, json) = try stack.swap(v2Path)
            try #require(swap.exitCode == 0, "\(swap.stderr)")
            let v2PID = try #require(json?["pid"] as? Int)
            #expect(processExists(pid_t(v1PID)), "v1 is kept warm")

            let results = try ctlTogether(stack.daemon, sources.map { ["swap", $0, "--json"] })
            let summary = zip(tags, results).map { "\($0.0): \($0.1.brief)" }.joined(separator: "\n")
            print("overlapping swaps during the warm hold:\n\(summary)")
            let winners = results.indices.filter { results[$0].exitCode == 0 }
            #expect(winners.count == 1, "exactly one of the overlapping swaps succeeds:\n\(summary)")
            for (index, result) in results.enumerated() where result.exitCode != 0 {
                #expect(!["port_in_use", "app_exited", "health_timeout", "stage_failed"].contains(errorCode(result) ?? ""), "\(tags[index]) failed instead of being refused:\n\(summary)")
                Self.expectBusy(result, tags[index])
            }

            // The winner's bytes are live and it is what the proxy serves.
            let servedTag = stack.proxy.servedVersion()
            #expect(versionOfFile(stack.live) == servedTag, "the file `live` holds is the version served")
            if winners.count == 1, let winner = winners.first {
                #expect(stack.bytes(stack.live) == stack.bytes(sources[winner]), "live is byte-identical to the winner \(tags[winner])")
                #expect(servedTag == tags[winner], "served \(servedTag ?? "nothing"), winner \(tags[winner])")
                #expect(stack.bytes(stack.live + ".bak") == stack.bytes(v2Path), ".bak holds v2, the version the winner replaced: it is \(versionOfFile(stack.live + ".bak") ?? "?")")
            }
            #expect(!FileManager.default.fileExists(atPath: stack.live + ".new"), "no stray .new")
            #expect(!processExists(pid_t(v1PID)), "v1's hold ended before the winner swapped")

            // During the winner's own hold: the serving instance and the one kept warm, nothing else.
            let serving = stack.daemon.status()?["pid"] as? Int
            let children = childPIDs(of: stack.daemon.pid).map(Int.init)
            #expect(children.count <= 2 && children.contains(serving ?? -1), "daemon children \(children), serving \(String(describing: serving)), v2 \(v2PID)")
            // After it: one instance.
            #expect(eventually(timeout: 45) { childPIDs(of: stack.daemon.pid).count == 1 }, "daemon children \(childPIDs(of: stack.daemon.pid))")
            stack.expectNothingStray()
            #expect(stack.proxy.servedVersion() == servedTag)

            load.finish().expectNothingFailed("nginx 3 overlapping swaps during a warm hold")
        }

        /// `supervisorctl`: three CLI processes started together (exit codes);
        /// `raw`: three POST /rollback written back to back on connections
        /// opened beforehand (the tightest overlap a client can produce).
        @Test(arguments: ["supervisorctl", "raw"])
        func threeRollbacksAtOnceDuringAWarmHoldFlipOnce(_ client: String) throws {
            let stack = try ProxyStack(.nginx) { $0.extraHealth += "\nwatch = \"60s\"" }
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let v1PID = try #require(before["pid"] as? Int)
            let v1 = stack.bytes(stack.live)
            let v2Path = stack.version("v2")
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            let (swap, _) = try stack.swap(v2Path)
            try #require(swap.exitCode == 0, "\(swap.stderr)")
            let historyBefore = stack.daemon.historyEntries()?.count ?? 0

            if client == "raw" {
                let answers = rawBurst(socket: stack.daemon.socket, "POST /rollback HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", count: 3)
                let outcomes = answers.map(rawOutcome)
                print("overlapping raw rollbacks during the warm hold: \(outcomes)")
                #expect(outcomes.filter { $0 == "ok" }.count == 1 && outcomes.filter { $0 == "busy" }.count == 2, "one flips, two are refused as busy: \(outcomes)")
            } else {
                let results = try ctlTogether(stack.daemon, Array(repeating: ["rollback", "--json"], count: 3))
                let summary = results.enumerated().map { "rollback \($0.offset): \($0.element.brief)" }.joined(separator: "\n")
                print("overlapping rollbacks during the warm hold:\n\(summary)")
                #expect(results.filter { $0.exitCode == 0 }.count == 1, "exactly one rollback flips:\n\(summary)")
                for (index, result) in results.enumerated() where result.exitCode != 0 {
                    Self.expectBusy(result, "rollback \(index)")
                }
            }

            #expect(stack.proxy.servedVersion() == "v1")
            #expect(stack.bytes(stack.live) == v1, "live holds v1 (a double flip would put v2 back): live is \(versionOfFile(stack.live) ?? "?")")
            #expect(stack.bytes(stack.live + ".bak") == stack.bytes(v2Path), ".bak holds v2: it is \(versionOfFile(stack.live + ".bak") ?? "?")")
            #expect(eventually(timeout: 20) { stack.daemon.status()?["pid"] as? Int == v1PID }, "the warm v1 process serves again")
            #expect(eventually(timeout: 20) { childPIDs(of: stack.daemon.pid) == [pid_t(v1PID)] }, "daemon children \(childPIDs(of: stack.daemon.pid))")
            stack.expectNothingStray()
            let history = stack.daemon.historyEntries() ?? []
            let newEntries = history.dropFirst(historyBefore)
            #expect(newEntries.filter { $0["result"] as? String == "ok" }.count == 1, "one rollback recorded: \(newEntries.map { "\($0["action"] ?? "?") \($0["result"] ?? "?")" })")
            expectConsistentChain(history, after: historyBefore, from: "v2", "rollbacks during the warm hold")

            load.finish().expectNothingFailed("nginx 3 overlapping rollbacks (\(client)) during a warm hold")
        }

        @Test func rollbacksRacingAnAutomaticRollbackLeaveOneConsistentVersion() throws {
            let stack = try ProxyStack(.nginx) { $0.extraHealth += "\nwatch = \"60s\"" }
            _ = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            let (swap, json) = try stack.swap(stack.version("v2", flags: ["--fail-health-after-ms", "1500"]))
            try #require(swap.exitCode == 0, "\(swap.stderr)")
            let v2Port = try #require(json?["port"] as? Int)
            let historyBefore = (stack.daemon.historyEntries()?.count ?? 1) - 1  // the swap's own entry is the chain's start

            // Fire rollbacks the moment v2's health starts failing: the watch
            // sees the same failures and starts its automatic rollback then.
            #expect(eventually(timeout: 10, interval: 0.02) { httpGet(port: v2Port, path: "/health")?.status == 503 }, "v2's health never failed")
            var requests = try (0..<3).map { _ in try BackgroundCommand.ctl(stack.daemon, ["rollback", "--json"]) }
            usleep(150_000)
            requests += try (0..<2).map { _ in try BackgroundCommand.ctl(stack.daemon, ["rollback", "--json"]) }
            let results = requests.map { $0.wait() }
            let summary = results.enumerated().map { "rollback \($0.offset): \($0.element.brief)" }.joined(separator: "\n")
            print("rollbacks racing the automatic rollback:\n\(summary)")
            for (index, result) in results.enumerated() {
                #expect(result.exitCode == 0 || result.exitCode == 4, "rollback \(index) is either done or refused as busy:\n\(summary)")
            }

            // Settle: one instance, no swap running, for 2 s in a row.
            var quietSince: Date?
            let settled = eventually(timeout: 60, interval: 0.1) {
                let quiet = childPIDs(of: stack.daemon.pid).count == 1 && stack.daemon.status()?["phase"] as? String == "running"
                if !quiet { quietSince = nil; return false }
                if quietSince == nil { quietSince = Date() }
                return Date().timeIntervalSince(quietSince!) >= 2
            }
            #expect(settled, "never settled: children \(childPIDs(of: stack.daemon.pid)), status \(stack.daemon.statusAnyway() ?? [:])")

            let served = stack.proxy.servedVersion()
            let onDisk = versionOfFile(stack.live)
            #expect(served == onDisk, "served \(served ?? "nothing"), live holds \(onDisk ?? "?")")
            #expect(stack.daemon.status()?["version"] as? String == onDisk)
            #expect(stack.bytes(stack.live) != stack.bytes(stack.live + ".bak"), "live and .bak hold different binaries (both are \(onDisk ?? "?"))")
            stack.expectNothingStray()

            let history = stack.daemon.historyEntries() ?? []
            let after = Array(history.dropFirst(historyBefore + 1))
            print("history after the swap: \(after.map { "\($0["action"] ?? "?") \($0["result"] ?? "?") \(entryVersion($0, "from") ?? "?")->\(entryVersion($0, "to") ?? "?")" })")
            // The window's flip happens once: the first ok entry after the
            // swap is the flip v2 -> v1; a second flip from v2 would break the
            // chain. A rollback that arrives after the flip is over is an
            // ordinary one (v1 -> v2, a new hold, maybe a new auto-rollback):
            // allowed, as long as the chain holds.
            let end = expectConsistentChain(history, after: historyBefore + 1, from: "v2", "rollbacks racing the automatic rollback")
            #expect(end == onDisk, "history ends on \(end ?? "?"), live holds \(onDisk ?? "?")")
            let okRollbacks = after.filter { $0["result"] as? String == "ok" && $0["action"] as? String == "rollback" }.count
            #expect(okRollbacks == results.filter { $0.exitCode == 0 }.count, "one ok rollback entry per rollback that exited 0")

            load.finish().expectNothingFailed("nginx rollbacks racing an automatic rollback")
        }

        /// Rounds of 3 overlapping requests (a random mix of swaps to fresh
        /// versions and rollbacks), with and without a warm hold.
        @Test(.timeLimit(.minutes(15))) func stressOverlappingRequestsUnderLoad() throws {
            var generator = SystemRandomNumberGenerator()
            var reports: [LoadReport] = []
            var roundSummaries: [String] = []
            for (stackIndex, watch) in ["0s", "3s"].enumerated() {
                let stack = try ProxyStack(.nginx) { $0.extraHealth += "\nwatch = \"\(watch)\"" }
                _ = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
                let load = try LoadGenerator(port: stack.proxy.listenPort, maxSeconds: 900)
                var historyCount = stack.daemon.historyEntries()?.count ?? 0
                var serving: String? = "v1"
                for round in 0..<6 {
                    let label = "watch \(watch) round \(round)"
                    // With a watch, the round's requests arrive inside a warm
                    // hold: a swap (alone, it must succeed) opens one first.
                    var opened = 0
                    if watch != "0s" {
                        let (opener, _) = try stack.swap(stack.version("s\(stackIndex)r\(round)open", flags: ["--start-delay-ms", "200"]))
                        #expect(opener.exitCode == 0, "\(label): the swap that opens the hold: \(opener.brief)")
                        if opener.exitCode == 0 { opened = 1 }
                    }
                    let kinds = (0..<3).map { _ in Bool.random(using: &generator) ? "swap" : "rollback" }
                    let commands = kinds.enumerated().map { index, kind in
                        kind == "swap"
                            ? ["swap", stack.version("s\(stackIndex)r\(round)x\(index)", flags: ["--start-delay-ms", "200"]), "--json"]
                            : ["rollback", "--json"]
                    }
                    let results = try ctlTogether(stack.daemon, commands)
                    let codes = zip(kinds, results).map { "\($0.0)=\($0.1.exitCode)" }.joined(separator: " ")
                    roundSummaries.append("\(label)\(opened == 1 ? " (in a hold)" : ""): \(codes)")
                    for (kind, result) in zip(kinds, results) {
                        #expect([0, 1, 4].contains(result.exitCode), "\(label) \(kind): \(result.brief)")
                        if result.exitCode == 1 {
                            #expect(result.stderr.split(separator: "\n").count >= 2, "\(label) \(kind): exit 1 says why: \(result.stderr)")
                        }
                    }

                    // Any hold over (watch 3s): one instance, serving what `live` holds.
                    let one = eventually(timeout: 30) { childPIDs(of: stack.daemon.pid).count == 1 && stack.daemon.status()?["phase"] as? String == "running" }
                    #expect(one, "\(label): daemon children \(childPIDs(of: stack.daemon.pid)), status \(stack.daemon.statusAnyway() ?? [:])")
                    let onDisk = versionOfFile(stack.live)
                    let served = stack.proxy.servedVersion()
                    #expect(served == onDisk, "\(label): served \(served ?? "nothing"), live holds \(onDisk ?? "?")")
                    let status = stack.daemon.status()
                    #expect(status?["version"] as? String == onDisk, "\(label): status version \(status?["version"] ?? "?")")
                    #expect(childPIDs(of: stack.daemon.pid).map(Int.init) == [status?["pid"] as? Int].compactMap { $0 }, "\(label): the one child is the serving app")
                    #expect(!FileManager.default.fileExists(atPath: stack.live + ".new"), "\(label): stray .new")

                    let history = stack.daemon.historyEntries() ?? []
                    let newOK = history.dropFirst(historyCount).filter { $0["result"] as? String == "ok" }.count
                    #expect(newOK == opened + results.filter { $0.exitCode == 0 }.count, "\(label): \(newOK) new ok history entries for \(opened) opening swap + \(codes)")
                    serving = expectConsistentChain(history, after: historyCount, from: serving, label)
                    #expect(serving == onDisk, "\(label): history ends on \(serving ?? "?"), live holds \(onDisk ?? "?")")
                    serving = onDisk
                    historyCount = history.count
                }
                reports.append(load.finish())
                stack.expectNothingStray()
            }
            var total = LoadReport()
            for report in reports {
                total.requests += report.requests
                total.non2xx += report.non2xx
                total.connectErrors += report.connectErrors
                total.readErrors += report.readErrors
                total.writeErrors += report.writeErrors
                total.timeouts += report.timeouts
            }
            print("stress rounds (exit codes):\n" + roundSummaries.joined(separator: "\n"))
            print("LOAD stress: \(total); 12 rounds of 3 overlapping swap/rollback requests, exit codes per round: \(roundSummaries.joined(separator: "; "))")
            #expect(total.non2xx == 0 && total.socketErrors == 0, "stress: \(total)")
        }
    }
}
