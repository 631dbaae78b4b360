import Foundation
import Testing
@testable import SupervisorCore

/// `[app] strategy = "stop-start"`: the old instance stops before the new
/// one starts; a failure after that starts the old binary again.
@Suite struct StopStartMachineTests {
    typealias Event = SwapMachine.Event
    typealias Action = SwapMachine.Action

    func walk(_ events: [Event], warmHold: Bool = false) -> (SwapMachine, [[Action]]) {
        var machine = SwapMachine(warmHold: warmHold, strategy: .stopStart)
        let steps = events.map { machine.handle($0) }
        return (machine, steps)
    }

    static let failure = SwapError(.healthTimeout, "not healthy")
    static let throughStop: [Event] = [.begin, .staged, .preflightPassed, .oldStopped]

    @Test func theOldStopsBeforeTheNewStartsAndNothingDrainsAfter() {
        let (machine, steps) = walk(Self.throughStop + [.beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .committed])
        #expect(steps == [
            [.journal(.stage), .stage],
            [.journal(.preflight), .runPreflight],
            [.journal(.stop), .stopOld],
            [.journal(.start), .runBeforeStartHooks],
            [.startNew],
            [.journal(.health), .awaitNewHealthy],
            [.journal(.switch), .switchProxy],
            [.journal(.commit), .commitBinaries],
            [.journal(.done), .finish(.succeeded)],
        ])
        #expect(machine.phase == .done)
    }

    @Test func aWarmHoldIsNotKeptWithNothingWarm() {
        let (machine, steps) = walk(Self.throughStop + [.beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .committed], warmHold: true)
        #expect(!machine.warmHold)
        #expect(!steps.joined().contains(.startWarmHold))
    }

    /// After the old instance stopped, any failure stops the new one (if any),
    /// starts the old binary again, then removes the staged copy.
    @Test(arguments: [
        (Self.throughStop, SwapPhase.start),
        (Self.throughStop + [.beforeStartHooksPassed], .start),
        (Self.throughStop + [.beforeStartHooksPassed, .newStarted], .health),
        (Self.throughStop + [.beforeStartHooksPassed, .newStarted, .newHealthy], .switch),
    ])
    func aFailureAfterTheStopStartsTheOldBinaryAgain(prefix: [Event], phase: SwapPhase) {
        let (machine, steps) = walk(prefix + [.failed(Self.failure), .newStopped, .oldRestarted, .stagedRemoved])
        #expect(steps[prefix.count] == [.journal(.revert), .stopNew])
        #expect(steps[prefix.count + 1] == [.restartOld])
        #expect(steps[prefix.count + 2] == [.removeStaged])
        #expect(steps[prefix.count + 3] == [.journal(.done), .finish(.failed(Self.failure, phase: phase))])
        #expect(!steps.joined().contains(.commitBinaries))
        #expect(machine.phase == .done)
    }

    @Test func anOldBinaryThatFailsToStartAgainIsSaidInTheFailure() {
        let again = SwapError(.appExited, "the old binary exited with code 1")
        let prefix = Self.throughStop + [.beforeStartHooksPassed, .newStarted]
        let (_, steps) = walk(prefix + [.failed(Self.failure), .newStopped, .oldRestartFailed(again), .stagedRemoved])
        guard case .finish(.failed(let error, let phase))? = steps.last?.last else {
            Issue.record("no failed finish: \(steps)")
            return
        }
        #expect(error.code == .healthTimeout)
        #expect(error.message.contains("not healthy") && error.message.contains("starting the old binary again failed too: the old binary exited"))
        #expect(phase == .health)
    }

    /// An old instance that would not stop (it survived SIGKILL) still serves: supervision goes back to it.
    @Test func anOldInstanceThatWouldNotStopIsHandedBack() {
        let unkillable = SwapError(.commitFailed, "survived SIGKILL")
        let prefix: [Event] = [.begin, .staged, .preflightPassed]
        let (_, steps) = walk(prefix + [.failed(unkillable), .stagedRemoved])
        #expect(steps[prefix.count] == [.journal(.revert), .handBackToOld, .removeStaged])
        #expect(steps.last == [.journal(.done), .finish(.failed(unkillable, phase: .stop))])
    }

    /// A journal that cannot be written before the new instance starts undoes the swap, as before the switch in overlap.
    @Test func aJournalFailureAfterTheStopStartsTheOldAgain() {
        let journal = SwapError(.journalFailed, "disk full")
        let (_, steps) = walk(Self.throughStop + [.journalFailed(journal)])
        #expect(steps.last == [.journal(.revert), .stopNew])
    }
}

@Suite struct StopStartSupervisionTests {
    @Test func aPausedInstanceThatExitsIsNotRestarted() {
        var machine = AppMachine()
        _ = [AppMachine.Event.start(port: 8081), .spawned(pid: 10), .healthy].flatMap { machine.handle($0) }
        #expect(machine.handle(.pause) == [])
        #expect(machine.state == .paused(port: 8081))
        #expect(machine.handle(.exited(pid: 10, status: "exited with code 0", uptime: .seconds(5))) == [])
        #expect(machine.restarts == 0)
        #expect(machine.handle(.handedOver(pid: 11, port: 8081)) == [])
        #expect(machine.state == .running(pid: 11, port: 8081))
    }

    @Test func aPauseDuringABackoffCancelsTheRestartAndResumeStartsWithSupervision() {
        var machine = AppMachine()
        _ = [AppMachine.Event.start(port: 8081), .spawned(pid: 10), .healthy, .exited(pid: 10, status: "killed", uptime: .seconds(1))]
            .flatMap { machine.handle($0) }
        #expect(machine.handle(.pause) == [])
        #expect(machine.state == .paused(port: 8081))
        #expect(machine.handle(.restartTimerFired) == [], "the backoff's timer is stale")
        #expect(machine.handle(.resume) == [.spawn(port: 8081)])
        #expect(machine.state == .starting(port: 8081))
    }

    @Test func aStopWhilePausedStopsAtOnce() {
        var machine = AppMachine()
        _ = [AppMachine.Event.start(port: 8081), .spawned(pid: 10), .healthy, .pause].flatMap { machine.handle($0) }
        #expect(machine.handle(.stopRequested) == [.finishStop])
    }
}

@Suite struct StopStartRecoveryTests {
    static let old = JournalState.Instance(pid: 10, port: 8081, sha256: "aaa", version: "v1", startTime: 100)

    func state(_ phase: SwapPhase) -> JournalState {
        JournalState(
            serving: Self.old,
            swap: .init(
                id: "s1", action: .swap, phase: phase, newPort: 8081, newPID: 20, stagedSHA256: "bbb", newStartTime: 200, old: Self.old,
                strategy: .stopStart))
    }

    /// Until the commit, a stop-start is undone: the new instance (on the old one's port, maybe
    /// holding its lock) is stopped before the old binary starts again.
    @Test(arguments: [SwapPhase.stop, .start, .health, .switch, .revert])
    func beforeTheCommitTheNewStopsFirst(_ phase: SwapPhase) {
        let plan = RecoveryPlanner.plan(state: state(phase), facts: .init(servingAlive: false, newAlive: true, stagedExists: true), firstPort: 8081)
        #expect(plan.instance == .start(port: 8081))
        #expect(plan.stop == [.init(pid: 20, port: 8081)])
        #expect(plan.stopBeforeStart)
        #expect(plan.removeStaged && !plan.commitStaged)
        #expect(plan.interrupted?.outcome == .undone)
    }

    @Test func anOldInstanceStillAliveInTheStopPhaseIsAdopted() {
        let plan = RecoveryPlanner.plan(state: state(.stop), facts: .init(servingAlive: true, stagedExists: true), firstPort: 8081)
        #expect(plan.instance == .adopt(pid: 10, port: 8081))
        #expect(plan.stop.isEmpty && !plan.stopBeforeStart)
    }

    @Test func fromTheCommitOnItIsCompleted() {
        let plan = RecoveryPlanner.plan(state: state(.commit), facts: .init(servingAlive: false, newAlive: true, stagedExists: true), firstPort: 8081)
        #expect(plan.commitStaged)
        #expect(plan.interrupted?.outcome == .completed)
    }

    @Test func theJournalRecordsTheStrategy() throws {
        let encoded = try JSONEncoder().encode(state(.health))
        let decoded = try JSONDecoder().decode(JournalState.self, from: encoded)
        #expect(decoded.swap?.strategy == .stopStart)
        #expect(String(decoding: encoded, as: UTF8.self).contains("\"strategy\":\"stop-start\""))
    }
}

@Suite struct StrategyConfigTests {
    @Test func overlapIsTheDefaultAndStopStartIsRead() throws {
        #expect(try ConfigDecoder.decode(validDocument()).get().app.strategy == .overlap)
        #expect(try ConfigDecoder.decode(with("app", "strategy", .string("stop-start"))).get().app.strategy == .stopStart)
    }

    @Test func anUnknownStrategyIsNamed() {
        #expect(problems(with("app", "strategy", .string("blue-green"))) == ["app.strategy: must be \"overlap\" or \"stop-start\", got \"blue-green\""])
    }

    /// nginx answers 502 at once while no instance runs: refused, pointing to socket handoff.
    @Test func stopStartBehindNginxIsRefused() {
        let document = with("app", "strategy", .string("stop-start"), in: with("proxy", "kind", .string("nginx")))
        let found = problems(document)
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("app.strategy: \"stop-start\" cannot run behind proxy.kind = \"nginx\"") == true)
        #expect(found.first?.contains("[app] listen") == true)
    }
}
