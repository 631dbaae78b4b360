#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension UnderLoad {
    /// The daemon against the world: a second daemon, signals, requests while
    /// the app starts, a stop mid-swap, damaged state files. DESIGN: "One
    /// daemon per service", "Signals", §1 Lock (waits for a start), and
    /// "a supervisor killed at any point recovers to one consistent version".
    @Suite(.timeLimit(.minutes(5)))
    struct DaemonRobustnessTests {
        init() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx is not installed: run scripts/test.sh, which installs it")
            try #require(LoadGenerator.isInstalled, "wrk is not installed: run scripts/test.sh, which installs it")
        }

        /// Waits until `status` shows the swap in `phase` (e.g. "swap:health").
        static func waitForPhase(_ stack: ProxyStack, _ phase: String, timeout: TimeInterval = 15) -> Bool {
            eventually(timeout: timeout, interval: 0.02) { stack.daemon.statusAnyway()?["phase"] as? String == phase }
        }

        @Test func aSecondSupervisordStartedMidSwapRefusesBeforeTouchingAnything() throws {
            let stack = try ProxyStack(.nginx)
            _ = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let v1 = stack.bytes(stack.live)
            let v2Path = stack.version("v2", flags: ["--start-delay-ms", "2000"])
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            let swap = try BackgroundCommand.ctl(stack.daemon, ["swap", v2Path, "--json"])
            #expect(Self.waitForPhase(stack, "swap:health"), "status: \(stack.daemon.statusAnyway() ?? [:])")
            let second = try Command.run(
                Binaries.supervisord, ["--config", stack.daemon.configPath],
                environment: stack.daemon.daemonEnvironment(adding: stack.proxy.environment), timeout: 20)
            let said = second.stdout + second.stderr
            print("second supervisord: exit \(second.exitCode): \(said.suffix(1000))")
            #expect(second.exitCode == 2, "a second daemon for the same config exits 2: \(said.suffix(1000))")
            #expect(said.contains("\(stack.daemon.pid)"), "names the running daemon's pid \(stack.daemon.pid): \(said.suffix(1000))")
            #expect(said.lowercased().contains("already running"), "\(said.suffix(1000))")
            #expect(!said.lowercased().contains("recover"), "it refuses before it reads the state (no recovery of the running swap): \(said.suffix(1000))")

            let result = swap.wait()
            #expect(result.exitCode == 0, "the first swap completes: \(result.brief)")
            #expect(stack.serves("v2"))
            #expect(stack.bytes(stack.live) == stack.bytes(v2Path), "live is v2: it is \(versionOfFile(stack.live) ?? "?")")
            #expect(stack.bytes(stack.live + ".bak") == v1, ".bak is v1: it is \(versionOfFile(stack.live + ".bak") ?? "?")")
            #expect(stack.daemon.process?.isRunning == true)
            stack.expectNothingStray()
            load.finish().expectNothingFailed("nginx swap while a second supervisord is started")
        }

        @Test func aSwapAskedWhileTheAppIsStillStartingWaitsForIt() throws {
            let stack = try ProxyStack(.nginx, v1Flags: ["--start-delay-ms", "3000"])
            let v2Path = stack.version("v2")
            // As soon as the control socket answers, whatever the phase.
            var phase: String?
            #expect(eventually(timeout: 10, interval: 0.02) {
                phase = stack.daemon.statusAnyway()?["phase"] as? String
                return phase != nil
            }, "the control socket never answered: \(stack.daemon.log.suffix(2000))")
            let (result, json) = try stack.swap(v2Path)
            print("swap asked in phase \(phase ?? "?"): \(result.brief)")
            #expect(phase != "running", "the swap was asked before v1 was healthy (phase \(phase ?? "?"))")
            #expect(result.exitCode == 0, "the swap waits for the first start: \(result.brief)")
            #expect(errorCode(result) != "not_running" && !result.stderr.contains("not_running"), "\(result.brief)")
            if result.exitCode == 0 {
                #expect(json?["ok"] as? Bool == true)
                #expect(stack.serves("v2"))
                #expect(stack.daemon.waitUntilRunning()?["version"] as? String == "v2")
                #expect(stack.bytes(stack.live) == stack.bytes(v2Path))
            }
            _ = stack.daemon.waitUntilRunning()
            stack.expectNothingStray()
        }

        @Test func aSwapAskedDuringACrashRestartWaitsForIt() throws {
            let stack = try ProxyStack(.nginx, v1Flags: ["--start-delay-ms", "2000"])
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let v1PID = try #require(before["pid"] as? Int)
            let v2Path = stack.version("v2")
            kill(pid_t(v1PID), SIGKILL)
            #expect(eventually(timeout: 10, interval: 0.02) { (stack.daemon.statusAnyway()?["phase"] as? String).map { $0 != "running" } ?? false })
            let phase = stack.daemon.statusAnyway()?["phase"] as? String
            let (result, _) = try stack.swap(v2Path)
            print("swap asked during the crash restart (phase \(phase ?? "?")): \(result.brief)")
            #expect(result.exitCode == 0, "the swap waits for the restart: \(result.brief)")
            #expect(errorCode(result) != "not_running" && !result.stderr.contains("not_running"), "\(result.brief)")
            if result.exitCode == 0 {
                #expect(stack.serves("v2"))
                #expect(stack.bytes(stack.live) == stack.bytes(v2Path))
            }
            _ = stack.daemon.waitUntilRunning()
            stack.expectNothingStray()
        }

        @Test(arguments: [("SIGHUP", SIGHUP), ("SIGUSR1", SIGUSR1), ("SIGUSR2", SIGUSR2)])
        func otherSignalsAreLoggedAndDoNotStopTheDaemon(_ name: String, _ number: Int32) throws {
            let stack = try ProxyStack(.nginx)
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let appPID = try #require(before["pid"] as? Int)
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            let logBefore = stack.daemon.log.utf8.count
            kill(stack.daemon.pid, number)
            let newLog = { String(decoding: stack.daemon.log.utf8.dropFirst(logBefore), as: UTF8.self) }
            #expect(eventually(timeout: 10) { newLog().contains(name) }, "the log names \(name) after it arrived: \(newLog().suffix(1500))")
            usleep(500_000)
            let alive = stack.daemon.process?.isRunning == true
            #expect(alive, "\(name) killed the daemon (exit \(stack.daemon.process?.exitCode.map(String.init) ?? "-"))")
            guard alive else {
                load.finish().expectNothingFailed("nginx \(name) to the daemon (which died of it)")
                return
            }
            let after = stack.daemon.waitUntilRunning(timeout: 15)
            #expect(after?["pid"] as? Int == appPID, "the same app process serves after \(name)")
            #expect(after?["supervisor_pid"] as? Int == Int(stack.daemon.pid), "the same daemon pid answers")

            let (swap, _) = try stack.swap(stack.version("v2"))
            #expect(swap.exitCode == 0, "a swap still works after \(name): \(swap.brief)")
            #expect(stack.serves("v2"))
            if stack.daemon.process?.isRunning == true { stack.expectNothingStray() }
            load.finish().expectNothingFailed("nginx \(name) to the daemon, then a swap")
        }

        @Test func sigtermDuringASwapFinishesOrUndoesItThenStops() throws {
            let stack = try ProxyStack(.nginx)
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let v1PID = try #require(before["pid"] as? Int)
            let v1 = stack.bytes(stack.live)
            let v2Path = stack.version("v2", flags: ["--start-delay-ms", "2000"])

            let swap = try BackgroundCommand.ctl(stack.daemon, ["swap", v2Path, "--json"])
            #expect(Self.waitForPhase(stack, "swap:health"), "status: \(stack.daemon.statusAnyway() ?? [:])")
            var v2PID: pid_t?
            #expect(eventually(timeout: 5) {
                v2PID = childPIDs(of: stack.daemon.pid).first { $0 != pid_t(v1PID) }
                return v2PID != nil
            }, "the new instance is a child of the daemon")
            let daemonProcess = try #require(stack.daemon.process)
            daemonProcess.signal(SIGTERM)

            let result = swap.wait(timeout: 60)
            print("swap client after SIGTERM to the daemon: \(result.brief)")
            #expect(result.exitCode == 0 || result.exitCode == 1, "the swap ends with a result, not an unreachable daemon: \(result.brief)")
            #expect(jsonObject(result.stdout)?["ok"] is Bool, "a result line reached the client: \(result.stdout) \(result.stderr)")
            #expect(daemonProcess.waitForExit(timeout: 60), "the daemon exits after finishing or undoing the swap")
            #expect(daemonProcess.exitCode == 0, "daemon exit code \(daemonProcess.exitCode.map(String.init) ?? "-"): \(stack.daemon.log.suffix(2000))")
            #expect(eventually(timeout: 10) { !processExists(pid_t(v1PID)) }, "v1 (pid \(v1PID)) stopped with the daemon")
            if let v2PID { #expect(eventually(timeout: 10) { !processExists(v2PID) }, "v2 (pid \(v2PID)) stopped with the daemon") }
            #expect(!FileManager.default.fileExists(atPath: stack.live + ".new"), "no stray .new")

            let last = stack.daemon.historyFromFile().last
            let recorded = last?["result"] as? String
            #expect(recorded == "ok" || recorded == "failed", "the swap is recorded as done or undone: \(String(describing: last))")
            if recorded == "ok" {
                #expect(stack.bytes(stack.live) == stack.bytes(v2Path), "recorded ok, so live is v2: it is \(versionOfFile(stack.live) ?? "?")")
                #expect(stack.bytes(stack.live + ".bak") == v1)
                #expect(result.exitCode == 0)
            } else {
                #expect(stack.bytes(stack.live) == v1, "not recorded ok, so live is v1: it is \(versionOfFile(stack.live) ?? "?")")
                #expect(result.exitCode != 0)
            }
        }

        @Test func aTornHistoryLineDoesNotSwallowTheNextEntry() throws {
            let stack = try ProxyStack(.nginx)
            _ = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let (first, _) = try stack.swap(stack.version("v2"))
            try #require(first.exitCode == 0, "\(first.stderr)")
            let historyPath = stack.daemon.stateDirectory + "/history.jsonl"
            let handle = try #require(FileHandle(forWritingAtPath: historyPath), "no \(historyPath)")
            handle.seekToEndOfFile()
            handle.write(Data(#"{"id":"torn","ti"#.utf8))  // a crash mid-append: no newline
            handle.closeFile()

            let (second, _) = try stack.swap(stack.version("v3"))
            #expect(second.exitCode == 0, "\(second.stderr)")
            let history = try #require(stack.daemon.historyEntries())
            print("history after a torn line: \(history.map { "\($0["id"] ?? "?") \($0["action"] ?? "?") \(entryVersion($0, "to") ?? "?")" })")
            let last = history.last
            #expect(entryVersion(last ?? [:], "to") == "v3", "the new swap is the last whole entry: \(String(describing: last))")
            #expect(last?["action"] as? String == "swap")
            #expect(last?["result"] as? String == "ok")
            #expect(history.allSatisfy { $0["time"] is String && $0["action"] is String && $0["result"] is String }, "only whole entries are listed")
            #expect(history.filter { $0["result"] as? String == "ok" }.count == 2, "both swaps are listed")
            let lastSwap = stack.daemon.status()?["last_swap"] as? [String: Any]
            #expect(((lastSwap?["to"] as? [String: Any])?["version"] as? String) == "v3", "status last_swap: \(String(describing: lastSwap))")
        }

        @Test func anUnreadableStateFileIsSetAsideAndTheAppReadopted() throws {
            let stack = try ProxyStack(.nginx)
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let appPID = try #require(before["pid"] as? Int)
            let appPort = try #require(before["port"] as? Int)
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            #expect(stack.daemon.terminate(SIGKILL) != nil)
            #expect(processExists(pid_t(appPID)), "the app outlives its supervisor")
            let statePath = stack.daemon.stateDirectory + "/state.json"
            #expect(FileManager.default.createFile(atPath: statePath, contents: Data("{\"phase\": \u{00}\u{01} garbage ]]]".utf8)))
            try stack.daemon.start(environment: stack.proxy.environment)
            let after = stack.daemon.waitUntilRunning()
            let logTail = { stack.daemon.log.split(separator: "\n").suffix(12).joined(separator: "\n") }
            #expect(after != nil, "the daemon starts despite the unreadable state.json: \(logTail())")

            let files = (try? FileManager.default.contentsOfDirectory(atPath: stack.daemon.stateDirectory)) ?? []
            let setAside = files.filter { $0.hasPrefix("state.json.corrupt-") }
            #expect(setAside.count == 1, "the unreadable state.json is kept as state.json.corrupt-*: \(files)")
            let errorLines = stack.daemon.log.split(separator: "\n").filter { ($0.contains(" ERROR ") || $0.contains(" CRITICAL ")) && $0.contains("state.json") }
            #expect(!errorLines.isEmpty, "an error-level log line names state.json: \(logTail())")
            if let name = setAside.first {
                #expect(errorLines.contains { $0.contains(name) }, "the error line names \(name): \(errorLines)")
            }
            #expect(after?["pid"] as? Int == appPID, "the same app process is re-adopted (status pid \(after?["pid"] ?? "-"), was \(appPID))")
            let otherPort = stack.daemon.ports.first { $0 != appPort }!
            #expect(!isListening(port: otherPort), "no second instance on the other port")
            #expect(processExists(pid_t(appPID)))
            #expect(stack.proxy.servedVersion() == "v1")
            load.finish().expectNothingFailed("nginx restart over an unreadable state.json")
        }
    }
}
