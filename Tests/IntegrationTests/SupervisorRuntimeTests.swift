#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization
import SupervisorCore
@testable import SupervisorDaemon
import SupervisorShared
import SystemBindings
import Testing

/// The runtime's owner (`Supervisor`) driven in-process, event by event:
/// real child processes (copies of /bin/sleep) and real files, but the
/// health gate, the proxy, the drain and the state journal are fakes the
/// test holds closed or makes fail, so every phase can be paused and hit
/// with overlapping requests, a shutdown or a journal failure. No proxy, no
/// load: these run in well under a second each (the end-to-end suites prove
/// the same against real proxies under wrk).
@Suite(.timeLimit(.minutes(1)))
struct SupervisorRuntimeTests {
    // MARK: - Fakes

    /// Closed until opened; `arrived` counts who waited.
    final class Gate: Sendable {
        private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>], arrived: Int)>((false, [], 0))
        init(open: Bool = false) { state.withLock { $0.open = open } }
        func wait() async {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Bool in
                    state.arrived += 1
                    if state.open { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
        }
        func open() {
            let waiters = state.withLock { state in
                state.open = true
                defer { state.waiters = [] }
                return state.waiters
            }
            waiters.forEach { $0.resume() }
        }
        func close() { state.withLock { $0.open = false } }
        var arrived: Int { state.withLock { $0.arrived } }
    }

    /// A proxy that takes a port when its gate opens, and remembers it.
    final class FakeProxy: ProxyDriver, Sendable {
        let gate = Gate(open: true)
        let port = Mutex<Int?>(nil)
        let switches = Mutex(0)
        var summary: String { "fake" }
        func switchUpstream(to port: Int, fallback: Int?, log: @Sendable (String) -> Void) async throws(SwapError) {
            await gate.wait()
            self.port.withLock { $0 = port }
            switches.withLock { $0 += 1 }
        }
        func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
            self.port.withLock { $0 = port }
        }
    }

    /// Everything a test controls.
    final class Fakes: Sendable {
        let health = Gate(open: true)
        let drain = Gate(open: true)
        let healthy = Mutex(true)
        let probeHealthy = Mutex(true)
        /// The journal write to fail: the swap phase it records (nil: none fail).
        let failJournalAt = Mutex<SwapPhase?>(nil)
        let journalFailures = Mutex(0)
        /// Every `state.json` written, in order.
        let written = Mutex<[JournalState]>([])

        func effects(journal: StateJournal) -> SupervisorEffects {
            SupervisorEffects(
                waitReady: { _, _, process, _ in
                    await self.health.wait()
                    if let status = process.exitStatus { return .exited(status) }
                    return self.healthy.withLock { $0 } ? .healthy(probes: 1) : .timedOut(lastProblem: "fake: unhealthy")
                },
                probe: { _ in self.probeHealthy.withLock { $0 } ? .healthy : .unhealthy("fake: failing") },
                drain: { _, _ in
                    await self.drain.wait()
                    return .quiet(connectionsLeft: 0)
                },
                writeState: { state in
                    if let phase = self.failJournalAt.withLock({ $0 }), state.swap?.phase == phase {
                        self.journalFailures.withLock { $0 += 1 }
                        throw JournalWriteFailure()
                    }
                    self.written.withLock { $0.append(state) }
                    try journal.write(state)
                },
                appendHistory: { entry in try journal.append(entry) },
                sleep: { duration in try? await Task.sleep(for: duration) })
        }
    }

    struct JournalWriteFailure: Error, CustomStringConvertible {
        var description: String { "No space left on device (fake)" }
    }

    /// A supervisor over copies of /bin/sleep in a temp dir, its effects running.
    final class Harness: @unchecked Sendable {
        let directory = TemporaryDirectory("runtime")
        let fakes = Fakes()
        let proxy = FakeProxy()
        let config: SupervisorConfig
        let journal: StateJournal
        let supervisor: Supervisor
        private let effectsTask: Task<Void, Never>
        /// The app's argument: sleep's seconds, unique to this harness, so its instances are told apart.
        let token = "600.\(UInt32.random(in: 100_000...999_999))"

        var binary: String { directory.file("bin/app") }

        init(watch: String = "0s", startTimeout: String = "10s", extraApp: String = "", hooks: String = "") throws {
            try FileManager.default.createDirectory(atPath: directory.file("bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: directory.file("bin/app"))
            let ports = FreePort.pick(2)
            let path = directory.write("service.toml", """
                name = "runtime"
                state_dir = "\(directory.file("state"))"

                [app]
                binary = "\(directory.file("bin/app"))"
                args = ["\(token)"]
                ports = [\(ports[0]), \(ports[1])]
                stop_timeout = "2s"
                \(extraApp)

                [health]
                start_timeout = "\(startTimeout)"
                watch = "\(watch)"
                interval = "10ms"

                [control]
                socket = "\(directory.file("control.sock"))"

                [hooks]
                \(hooks)
                """)
            config = try ConfigLoader.load(path: path, environment: [:]).get()
            journal = StateJournal(directory: config.stateDirectory)
            try journal.prepare()
            supervisor = Supervisor(
                config: config, logger: Self.logger(token),
                journal: journal, initialState: nil, driver: proxy, effects: fakes.effects(journal: journal))
            let supervisor = self.supervisor
            effectsTask = Task { await supervisor.runEffects() }
        }

        /// Silent, unless RUNTIME_TEST_LOG is set (then on stdout, one label per harness).
        static func logger(_ token: String) -> Logger {
            guard ProcessInfo.processInfo.environment["RUNTIME_TEST_LOG"] != nil else {
                return Logger(label: "runtime-test") { _ in SwiftLogNoOpLogHandler() }
            }
            var logger = Logger(label: "runtime-\(token)") { StreamLogHandler.standardOutput(label: $0) }
            logger.logLevel = .debug
            return logger
        }

        deinit {
            // Whatever this harness started and a test left running is killed by pid.
            for pid in liveChildren { kill(pid, SIGKILL) }
            effectsTask.cancel()
        }

        func isOurs(_ pid: Int32) -> Bool {
            (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.contains(token) == true
        }

        /// A new "release": a copy of /bin/sleep with a tag appended (different bytes, same program).
        func release(_ tag: String) throws -> String {
            let path = directory.file("releases/\(tag)")
            try FileManager.default.createDirectory(atPath: directory.file("releases"), withIntermediateDirectories: true)
            var bytes = try Data(contentsOf: URL(fileURLWithPath: "/bin/sleep"))
            bytes.append(contentsOf: Array(tag.utf8))
            _ = FileManager.default.createFile(atPath: path, contents: bytes, attributes: [.posixPermissions: 0o755])
            return path
        }

        func status() async -> StatusReport { await supervisor.status(proxy: "fake") }

        func startAndWaitRunning() async throws {
            await supervisor.start(history: [])
            try await waitUntil { await self.status().phase == "running" }
        }

        func waitUntil(_ what: String = "condition", _ condition: () async -> Bool) async throws {
            // A generous bound that only stops a hang (tests of this suite run side by side).
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if await condition() { return }
                try await Task.sleep(for: .milliseconds(5))
            }
            Issue.record("timed out waiting for \(what): \(await status())")
        }

        /// Sends a request; nil result line when refused at once (with the refusal).
        func request(_ action: SwapAction, _ source: String? = nil) async -> Outcome {
            switch await supervisor.request(action, source: source, callerUID: 0) {
            case .failure(let error): return .refused(error)
            case .success(let stream): return .granted(stream)
            }
        }

        func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

        var liveChildren: [Int32] { ProcessTable.children(of: getpid()).filter(isOurs).sorted() }
    }

    enum Outcome {
        case refused(ControlError)
        case granted(AsyncStream<[UInt8]>)

        var refusal: ControlError? { if case .refused(let error) = self { error } else { nil } }

        /// The stream's result line.
        func result() async -> SwapResult? {
            guard case .granted(let stream) = self else { return nil }
            var last: [UInt8] = []
            for await line in stream { last = line }
            return try? JSONDecoder().decode(SwapResult.self, from: Data(last))
        }
    }

    // MARK: - The lock in every phase

    /// Where a swap can be held open, and how.
    enum Pause: String, CaseIterable, CustomStringConvertible {
        case preflight, start, health, `switch`, drain
        var description: String { rawValue }
    }

    /// A swap held in `pause`; five overlapping requests (swaps and rollbacks) are refused
    /// as busy naming that phase; once released the swap succeeds and exactly one instance runs.
    @Test(arguments: Pause.allCases)
    func overlappingRequestsInEveryPhaseAreRefusedAsBusy(_ pause: Pause) async throws {
        let gates = TemporaryDirectory("gate")
        let gateFile = gates.file("open")
        let wait = #"["/bin/sh", "-c", "while [ ! -e \#(gateFile) ]; do sleep 0.01; done"]"#
        let h = try Harness(
            extraApp: pause == .preflight ? "preflight = [\(wait)]" : "",
            hooks: pause == .start ? "before_start = [\(wait)]" : "")
        try await h.startAndWaitRunning()
        let oldPID = try #require(await h.status().pid)
        switch pause {
        case .health: h.fakes.health.close()
        case .switch: h.proxy.gate.close()
        case .drain: h.fakes.drain.close()
        case .preflight, .start: break
        }
        let v2 = try h.release("v2")
        let swap = await h.request(.swap, v2)
        let phase = pause.rawValue
        try await h.waitUntil("phase \(phase)") { await h.status().phase == "swap:\(phase)" }

        let others = await withTaskGroup(of: Outcome.self) { group in
            for index in 0..<5 {
                group.addTask { await h.request(index % 2 == 0 ? .swap : .rollback, try? h.release("x\(index)")) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        for other in others {
            let refusal = try #require(other.refusal, "granted during \(phase)")
            #expect(refusal.code == .busy && refusal.phase == phase, "\(refusal)")
        }
        _ = FileManager.default.createFile(atPath: gateFile, contents: nil)
        h.fakes.health.open()
        h.proxy.gate.open()
        h.fakes.drain.open()
        let result = try #require(await swap.result())
        #expect(result.ok, "\(String(describing: result.error))")
        #expect(h.bytes(h.binary) == h.bytes(v2))
        #expect(!FileManager.default.fileExists(atPath: h.binary + ".new"))
        let status = await h.status()
        #expect(status.phase == "running" && status.pid != oldPID)
        #expect(h.liveChildren == [status.pid].compactMap { $0 }, "exactly one instance runs")
    }

    // MARK: - The warm hold: flips and its end hold the lock too

    @Test func ofOverlappingRollbacksInTheHoldExactlyOneFlips() async throws {
        let h = try Harness(watch: "60s")
        try await h.startAndWaitRunning()
        let v1 = h.bytes(h.binary)
        let v1PID = await h.status().pid
        let v2 = try h.release("v2")
        #expect(await h.request(.swap, v2).result()?.ok == true)
        h.fakes.drain.close()  // the flip stops the new instance after a drain: hold it there
        let outcomes = await withTaskGroup(of: Outcome.self) { group in
            for _ in 0..<6 { group.addTask { await h.request(.rollback) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0.refusal == nil }.count == 1)
        for refusal in outcomes.compactMap(\.refusal) { #expect(refusal.code == .busy && refusal.phase == "switch") }
        h.fakes.drain.open()
        for outcome in outcomes where outcome.refusal == nil { #expect(await outcome.result()?.ok == true) }
        #expect(h.bytes(h.binary) == v1, "one exchange: the old binary is live again")
        #expect(h.bytes(h.binary + ".bak") == h.bytes(v2))
        #expect(await h.status().pid == v1PID, "the very old process serves again")
        #expect(h.proxy.switches.withLock { $0 } == 2, "the swap's switch and one flip")
        try await h.waitUntil("one instance") { h.liveChildren.count == 1 }
    }

    @Test func ofOverlappingSwapsInTheHoldExactlyOneProceedsAfterEndingIt() async throws {
        let h = try Harness(watch: "60s")
        try await h.startAndWaitRunning()
        #expect(await h.request(.swap, try h.release("v2")).result()?.ok == true)
        h.fakes.drain.close()  // ending the hold drains the old instance: hold it there
        let releases = try (0..<5).map { try h.release("v3-\($0)") }
        let outcomes = await withTaskGroup(of: (String, Outcome).self) { group in
            for release in releases { group.addTask { (release, await h.request(.swap, release)) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let granted = outcomes.filter { $0.1.refusal == nil }
        #expect(granted.count == 1)
        for refusal in outcomes.compactMap({ $0.1.refusal }) { #expect(refusal.code == .busy && refusal.phase == "watch") }
        h.fakes.drain.open()
        let winner = try #require(granted.first)
        #expect(await winner.1.result()?.ok == true)
        #expect(h.bytes(h.binary) == h.bytes(winner.0))
        #expect(!FileManager.default.fileExists(atPath: h.binary + ".new"))
    }

    @Test func aRollbackRacingAnAutomaticRollbackFlipsOnce() async throws {
        let h = try Harness(watch: "60s")
        try await h.startAndWaitRunning()
        let v1 = h.bytes(h.binary)
        let v2 = try h.release("v2")
        #expect(await h.request(.swap, v2).result()?.ok == true)
        h.fakes.drain.close()
        h.fakes.probeHealthy.withLock { $0 = false }  // the watch asks for an automatic rollback
        let manual = await h.request(.rollback)
        try await h.waitUntil("a flip") { await h.status().phase.hasSuffix(":switch") }
        let another = await h.request(.rollback)
        #expect(another.refusal?.code == .busy)
        h.fakes.drain.open()
        _ = await manual.result()
        try await h.waitUntil("the flip's end") { await h.status().phase == "running" }
        #expect(h.bytes(h.binary) == v1 && h.bytes(h.binary + ".bak") == h.bytes(v2), "exchanged exactly once")
        #expect(h.proxy.switches.withLock { $0 } == 2)
        let flips = h.journal.history().filter { $0.action == .rollback || $0.action == .autoRollback }
        #expect(flips.count == 1 && flips[0].result == .ok, "\(flips)")
    }

    // MARK: - Waiting for the app

    @Test func aRequestDuringTheFirstStartWaitsAndThenSwaps() async throws {
        let h = try Harness()
        h.fakes.health.close()
        await h.supervisor.start(history: [])
        try await h.waitUntil("starting") { await h.status().pid != nil }
        let v2 = try h.release("v2")
        let swap = await h.request(.swap, v2)
        #expect(swap.refusal == nil, "claimed, waiting")
        let second = await h.request(.rollback)
        #expect(second.refusal?.code == .busy && second.refusal?.phase == "waiting for the app to start")
        h.fakes.health.open()
        #expect(await swap.result()?.ok == true)
        #expect(h.bytes(h.binary) == h.bytes(v2))
    }

    @Test func aWaitThatOutlastsTheStartTimeoutIsNotRunning() async throws {
        let h = try Harness(startTimeout: "300ms")
        h.fakes.health.close()
        await h.supervisor.start(history: [])
        let swap = await h.request(.swap, try h.release("v2"))
        let result = try #require(await swap.result())
        #expect(!result.ok && result.error?.code == .notRunning)
        #expect(!FileManager.default.fileExists(atPath: h.binary + ".new"))
        // The lock is free again.
        h.fakes.health.open()
        try await h.waitUntil("running") { await h.status().phase == "running" }
        #expect(await h.request(.swap, try h.release("v3")).result()?.ok == true)
    }

    // MARK: - Journal failures

    /// Before the switch: the swap is undone; nothing changed, the old instance still serves.
    @Test(arguments: [SwapPhase.stage, .preflight, .start, .health, .switch])
    func aJournalFailureBeforeTheSwitchUndoesTheSwap(_ phase: SwapPhase) async throws {
        let h = try Harness()
        try await h.startAndWaitRunning()
        let before = await h.status()
        let v1 = h.bytes(h.binary)
        h.fakes.failJournalAt.withLock { $0 = phase }
        let result = try #require(await h.request(.swap, try h.release("v2")).result())
        #expect(!result.ok && result.error?.code == .journalFailed && result.failedPhase == phase, "\(result)")
        #expect(h.bytes(h.binary) == v1)
        #expect(!FileManager.default.fileExists(atPath: h.binary + ".new"))
        let after = await h.status()
        #expect(after.pid == before.pid && after.phase == "running")
        #expect(h.liveChildren == [before.pid].compactMap { $0 }, "no stray new instance")
    }

    /// After the switch: the swap goes on; the old instance is stopped, never orphaned; the binary is committed.
    @Test(arguments: [SwapPhase.drain, .stop, .commit, .done])
    func aJournalFailureAfterTheSwitchStillFinishesTheSwap(_ phase: SwapPhase) async throws {
        let h = try Harness()
        try await h.startAndWaitRunning()
        let oldPID = try #require(await h.status().pid)
        h.fakes.failJournalAt.withLock { $0 = phase }
        let v2 = try h.release("v2")
        let result = try #require(await h.request(.swap, v2).result())
        #expect(result.ok, "\(String(describing: result.error))")
        #expect(h.fakes.journalFailures.withLock { $0 } >= 1 || phase == .done)
        #expect(h.bytes(h.binary) == h.bytes(v2))
        try await h.waitUntil("old stopped") { !processExists(oldPID) }
        #expect(h.liveChildren == [await h.status().pid].compactMap { $0 })
    }

    @Test func aJournalFailureEnteringTheHoldStillHolds() async throws {
        let h = try Harness(watch: "60s")
        try await h.startAndWaitRunning()
        let oldPID = try #require(await h.status().pid)
        h.fakes.failJournalAt.withLock { $0 = .watch }
        let result = try #require(await h.request(.swap, try h.release("v2")).result())
        #expect(result.ok, "\(String(describing: result.error))")
        #expect(processExists(oldPID), "kept warm")
        #expect(await h.request(.rollback).result()?.ok == true, "and the flip back works")
        #expect(await h.status().pid == oldPID)
    }

    /// Recovery undoes phases up to the switch: no write of those phases may name the new instance as serving.
    @Test func theJournalNeverPairsAnUndoPhaseWithTheNewInstanceServing() async throws {
        let h = try Harness()
        try await h.startAndWaitRunning()
        let oldPID = try #require(await h.status().pid)
        #expect(await h.request(.swap, try h.release("v2")).result()?.ok == true)
        let undoPhases: Set<SwapPhase> = [.stage, .preflight, .start, .health, .switch]
        let writes = h.fakes.written.withLock { $0 }
        #expect(writes.contains { $0.swap?.phase == .drain && $0.serving?.pid != oldPID }, "the drain's write names the new instance")
        for state in writes where undoPhases.contains(state.swap?.phase ?? .done) {
            #expect(state.serving?.pid == oldPID, "phase \(state.swap!.phase) written with serving pid \(state.serving?.pid ?? 0)")
        }
    }

    /// The warm old instance died in the hold: a rollback cannot flip to it; nothing points at a dead instance.
    @Test func aRollbackAfterTheWarmOldInstanceDiedDoesNotFlipToIt() async throws {
        let h = try Harness(watch: "60s")
        try await h.startAndWaitRunning()
        let oldPID = try #require(await h.status().pid)
        let v1 = h.bytes(h.binary)
        #expect(await h.request(.swap, try h.release("v2")).result()?.ok == true)
        let newPort = h.proxy.port.withLock { $0 }
        kill(oldPID, SIGKILL)
        try await h.waitUntil("old gone") { !processExists(oldPID) }
        // The hold may be ending right now (the watch saw the death): busy, as a pipeline would, ask again.
        var outcome = await h.request(.rollback)
        while let refusal = outcome.refusal {
            #expect(refusal.code == .busy && refusal.phase == "watch", "\(refusal)")
            try await Task.sleep(for: .milliseconds(10))
            outcome = await h.request(.rollback)
        }
        let result = try #require(await outcome.result())
        try await h.waitUntil("settled") { await h.status().phase == "running" }
        let status = await h.status()
        #expect(status.pid != oldPID)
        if result.ok {
            // The watch saw it first and ended the hold: an ordinary rollback to .bak.
            #expect(h.bytes(h.binary) == v1)
            #expect(h.proxy.port.withLock { $0 } != newPort)
        } else {
            #expect(result.error?.code == .notRunning && result.error?.message.contains("nothing warm to flip back to") == true, "\(result)")
            #expect(h.proxy.port.withLock { $0 } == newPort, "the proxy still points at the serving new instance")
        }
        // The ordinary rollback opened a hold of its own (watch is on): the instance it replaced stays warm.
        let expected = result.ok ? 2 : 1
        try await h.waitUntil("\(expected) instance(s)") { h.liveChildren.count == expected && h.liveChildren.contains(status.pid ?? 0) }
        #expect(h.proxy.port.withLock { $0 } == status.port, "the proxy points at the serving instance")
        // Either way the lock is free and a later rollback works.
        #expect(await h.request(.rollback).result()?.ok == true)
    }

    // MARK: - Shutdown

    @Test func aShutdownDuringASwapFinishesItThenStops() async throws {
        let h = try Harness()
        try await h.startAndWaitRunning()
        h.fakes.health.close()
        let v2 = try h.release("v2")
        let swap = await h.request(.swap, v2)
        try await h.waitUntil("health") { await h.status().phase == "swap:health" }
        let stopped = Gate()
        let supervisor = h.supervisor
        Task {
            await supervisor.shutdown()
            stopped.open()
        }
        try await h.waitUntil("stop asked") { await h.request(.rollback).refusal?.code == .shuttingDown }
        #expect(h.liveChildren.count == 2, "nothing stopped under the swap")
        h.fakes.health.open()
        #expect(await swap.result()?.ok == true)
        await stopped.wait()
        #expect(h.bytes(h.binary) == h.bytes(v2))
        try await h.waitUntil("all stopped") { h.liveChildren.isEmpty }
    }

    @Test func aShutdownInTheHoldStopsBothInstances() async throws {
        let h = try Harness(watch: "60s")
        try await h.startAndWaitRunning()
        #expect(await h.request(.swap, try h.release("v2")).result()?.ok == true)
        #expect(h.liveChildren.count == 2)
        await h.supervisor.shutdown()
        try await h.waitUntil("all stopped") { h.liveChildren.isEmpty }
    }
}
