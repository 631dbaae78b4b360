import Testing
@testable import SupervisorCore

@Suite struct SwapMachineTests {
    typealias Event = SwapMachine.Event
    typealias Action = SwapMachine.Action

    /// Feeds events in order and returns the actions of each step.
    func walk(_ events: [Event]) -> (SwapMachine, [[Action]]) {
        var machine = SwapMachine()
        let steps = events.map { machine.handle($0) }
        return (machine, steps)
    }

    @Test func happyPathJournalsEachPhaseBeforeActing() {
        let (machine, steps) = walk([.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .drained, .oldStopped, .committed])
        #expect(steps == [
            [.journal(.stage), .stage],
            [.journal(.preflight), .runPreflight],
            [.journal(.start), .runBeforeStartHooks],
            [.startNew],
            [.journal(.health), .awaitNewHealthy],
            [.journal(.switch), .switchProxy],
            [.journal(.drain), .drainOld],
            [.journal(.stop), .stopOld],
            [.journal(.commit), .commitBinaries],
            [.journal(.done), .finish(.succeeded)],
        ])
        #expect(machine.phase == .done)
    }

    static let failure = SwapError(.healthTimeout, "not healthy")

    /// A failure before a new instance exists removes the staged copy only.
    @Test(arguments: [
        ([Event.begin], SwapPhase.stage),
        ([.begin, .staged], .preflight),
    ])
    func failureBeforeStartRemovesStagedCopy(prefix: [Event], phase: SwapPhase) {
        let (machine, steps) = walk(prefix + [.failed(Self.failure), .stagedRemoved])
        #expect(steps[prefix.count] == [.journal(.revert), .removeStaged])
        #expect(steps[prefix.count + 1] == [.journal(.done), .finish(.failed(Self.failure, phase: phase))])
        #expect(machine.phase == .done)
    }

    /// From start through switch: stop the new instance, then remove the staged copy.
    @Test(arguments: [
        ([Event.begin, .staged, .preflightPassed], SwapPhase.start),
        ([.begin, .staged, .preflightPassed, .beforeStartHooksPassed], .start),
        ([.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted], .health),
        ([.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy], .switch),
    ])
    func failureAfterStartStopsTheNewInstance(prefix: [Event], phase: SwapPhase) {
        let (_, steps) = walk(prefix + [.failed(Self.failure), .newStopped, .stagedRemoved])
        #expect(steps[prefix.count] == [.journal(.revert), .stopNew])
        #expect(steps[prefix.count + 1] == [.removeStaged])
        #expect(steps[prefix.count + 2] == [.journal(.done), .finish(.failed(Self.failure, phase: phase))])
    }

    @Test func drainThatFailsStillStopsTheOldOne() {
        let (_, steps) = walk([.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .failed(Self.failure)])
        #expect(steps.last == [.journal(.stop), .stopOld])
    }

    static let throughSwitch: [Event] = [.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched]

    /// The new instance dies while the old one drains: the old one, still
    /// alive, is supervised and served again; the swap fails in drain.
    @Test func newExitWhileDrainingSwitchesBackToTheOld() {
        let exited = SwapError(.appExited, "the new binary exited")
        let (machine, steps) = walk(Self.throughSwitch + [.newExitedWhileDraining(exited), .switchedBack, .newStopped, .stagedRemoved])
        let revert = Self.throughSwitch.count
        #expect(steps[revert] == [.handBackToOld, .journal(.revert), .switchProxyBack], "supervision back before the journal, the proxy after it")
        #expect(steps[revert + 1] == [.stopNew])
        #expect(steps[revert + 2] == [.removeStaged])
        #expect(steps[revert + 3] == [.journal(.done), .finish(.failed(exited, phase: .drain))])
        #expect(!steps.joined().contains(.stopOld))
        #expect(!steps.joined().contains(.commitBinaries))
        #expect(machine.phase == .done)
    }

    /// Even when the proxy cannot be pointed back, nothing is committed and
    /// the old instance is never stopped; the failure names the switch back.
    @Test func failedSwitchBackStillRevertsTheRest() {
        let exited = SwapError(.appExited, "the new binary exited")
        let reload = SwapError(.proxyReloadFailed, "reload failed")
        let (_, steps) = walk(Self.throughSwitch + [.newExitedWhileDraining(exited), .switchBackFailed(reload), .newStopped, .stagedRemoved])
        #expect(steps.last == [.journal(.done), .finish(.failed(reload, phase: .drain))])
        #expect(!steps.joined().contains(.stopOld))
        #expect(!steps.joined().contains(.commitBinaries))
    }

    /// Only the drain reverts on the new instance's exit: once the old one has
    /// been signalled there is nothing to go back to.
    @Test func newExitOutsideDrainIsIgnored() {
        let exited = SwapError(.appExited, "the new binary exited")
        var machine = SwapMachine()
        for event in Self.throughSwitch + [.drained] { _ = machine.handle(event) }
        #expect(machine.handle(.newExitedWhileDraining(exited)) == [])
        #expect(machine.phase == .stop)
    }

    @Test func oldThatWillNotDieStillCommits() {
        let (_, steps) = walk([.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .drained, .failed(Self.failure)])
        #expect(steps.last == [.journal(.commit), .commitBinaries])
    }

    @Test func commitFailureIsReportedWithoutRevertingTheServingInstance() {
        let error = SwapError(.commitFailed, "rename failed")
        let (machine, steps) = walk([.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .drained, .oldStopped, .failed(error)])
        #expect(steps.last == [.journal(.done), .finish(.failed(error, phase: .commit))])
        #expect(!steps.joined().contains(.stopNew))
        #expect(machine.phase == .done)
    }

    @Test func eventsOutOfOrderAreIgnored() {
        var machine = SwapMachine()
        #expect(machine.handle(.staged) == [])
        _ = machine.handle(.begin)
        #expect(machine.handle(.switched) == [])
        #expect(machine.handle(.committed) == [])
        #expect(machine.phase == .stage)
    }

    @Test func nothingHappensAfterDone() {
        var machine = SwapMachine()
        for event in [Event.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .drained, .oldStopped, .committed] {
            _ = machine.handle(event)
        }
        #expect(machine.handle(.failed(Self.failure)) == [])
        #expect(machine.handle(.begin) == [])
    }
}

@Suite struct SwapMachineWarmHoldTests {
    @Test func aFailedCommitInWarmModeStopsTheOldInstanceInsteadOfHolding() {
        var machine = SwapMachine(warmHold: true)
        for event in [SwapMachine.Event.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched] { _ = machine.handle(event) }
        let error = SwapError(.commitFailed, "read-only")
        #expect(machine.handle(.failed(error)) == [.journal(.done), .retireOld, .finish(.failed(error, phase: .commit))])
    }

    @Test func warmHoldCommitsWithoutStoppingTheOldInstance() {
        var machine = SwapMachine(warmHold: true)
        let steps = [SwapMachine.Event.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .committed]
            .map { machine.handle($0) }
        #expect(steps[6] == [.journal(.commit), .commitBinaries], "no drain or stop after the switch")
        #expect(steps[7] == [.journal(.watch), .startWarmHold, .finish(.succeeded)])
        #expect(!steps.joined().contains(.stopOld))
        #expect(machine.phase == .watch)
    }
}

@Suite struct RecoveryPlannerTests {
    static let old = JournalState.Instance(pid: 10, port: 8081, sha256: "aaa", version: "v1", startTime: 100)
    static let new = JournalState.Instance(pid: 20, port: 8082, sha256: "bbb", version: "v2", startTime: 200)

    func state(_ phase: SwapPhase?, servingNew: Bool = false) -> JournalState {
        JournalState(
            serving: servingNew ? Self.new : Self.old,
            swap: phase.map { .init(id: "s1", action: .swap, phase: $0, newPort: 8082, newPID: 20, stagedSHA256: "bbb", newStartTime: 200, old: Self.old) })
    }

    @Test func nothingRecordedStartsOnTheFirstPort() {
        let plan = RecoveryPlanner.plan(state: nil, facts: .init(servingAlive: false), firstPort: 8081, stagedExistsWithoutSwap: true)
        #expect(plan.instance == .start(port: 8081))
        #expect(plan.removeStaged)
        #expect(plan.interrupted == nil)
    }

    @Test func steadyStateAdoptsOrRestartsOnTheRecordedPort() {
        let serving = JournalState(serving: Self.new, swap: nil)
        #expect(RecoveryPlanner.plan(state: serving, facts: .init(servingAlive: true), firstPort: 8081).instance == .adopt(pid: 20, port: 8082))
        #expect(RecoveryPlanner.plan(state: serving, facts: .init(servingAlive: false), firstPort: 8081).instance == .start(port: 8082))
    }

    @Test(arguments: [SwapPhase.stage, .preflight, .start, .health, .switch, .revert])
    func beforeTheSwitchIsUndone(_ phase: SwapPhase) {
        let plan = RecoveryPlanner.plan(
            state: state(phase), facts: .init(servingAlive: true, newAlive: true, oldAlive: true, stagedExists: true), firstPort: 8081)
        #expect(plan.instance == .adopt(pid: 10, port: 8081))
        #expect(plan.stop == [.init(pid: 20, port: 8082)])
        #expect(plan.removeStaged)
        #expect(!plan.commitStaged)
        #expect(plan.interrupted?.outcome == .undone)
    }

    @Test(arguments: [SwapPhase.drain, .stop, .commit, .watch])
    func afterTheSwitchIsCompleted(_ phase: SwapPhase) {
        let plan = RecoveryPlanner.plan(
            state: state(phase, servingNew: true), facts: .init(servingAlive: true, newAlive: true, oldAlive: true, stagedExists: phase != .watch),
            firstPort: 8081)
        #expect(plan.instance == .adopt(pid: 20, port: 8082))
        #expect(plan.stop == [.init(pid: 10, port: 8081)])
        #expect(plan.commitStaged == (phase != .watch))
        #expect(!plan.removeStaged)
        #expect(plan.interrupted?.outcome == .completed)
    }

    @Test func deadInstancesAreNotStoppedAndADeadServingOneIsStartedOnItsPort() {
        let plan = RecoveryPlanner.plan(
            state: state(.drain, servingNew: true), facts: .init(servingAlive: false, newAlive: false, oldAlive: false, stagedExists: true),
            firstPort: 8081)
        #expect(plan.instance == .start(port: 8082))
        #expect(plan.commitStaged, "commit first, so the fresh start runs the new binary")
        #expect(plan.stop.isEmpty)
    }
}

/// A state journal that cannot be written is its own event: before the
/// switch the swap is undone; after it the swap goes on (recovery treats
/// drain, stop, commit and watch alike), never read as a failed action.
@Suite struct SwapMachineJournalFailureTests {
    typealias Event = SwapMachine.Event
    static let error = SwapError(.journalFailed, "disk full")
    static let path: [Event] = [.begin, .staged, .preflightPassed, .beforeStartHooksPassed, .newStarted, .newHealthy, .switched, .drained, .oldStopped, .committed]

    /// The events that lead into each phase's journal write.
    static let prefixes: [(SwapPhase, [Event])] = [
        (.stage, [.begin]), (.preflight, [.begin, .staged]), (.start, [.begin, .staged, .preflightPassed]),
        (.health, Array(path.prefix(5))), (.switch, Array(path.prefix(6))),
    ]

    @Test func beforeTheSwitchTheSwapIsUndone() {
        for (phase, prefix) in Self.prefixes {
            var machine = SwapMachine()
            for event in prefix { _ = machine.handle(event) }
            let actions = machine.handle(.journalFailed(Self.error))
            let started = phase != .stage && phase != .preflight
            #expect(actions == [.journal(.revert), started ? .stopNew : .removeStaged], "\(phase)")
            #expect(machine.failure?.error == Self.error && machine.failure?.phase == phase)
        }
    }

    @Test(arguments: [(SwapPhase.drain, SwapMachine.Action.drainOld), (.stop, .stopOld), (.commit, .commitBinaries)])
    func afterTheSwitchTheStepStillActs(phase: SwapPhase, action: SwapMachine.Action) {
        var machine = SwapMachine()
        let count = [SwapPhase.drain: 7, .stop: 8, .commit: 9][phase]!
        for event in Self.path.prefix(count) { _ = machine.handle(event) }
        #expect(machine.phase == phase)
        #expect(machine.handle(.journalFailed(Self.error)) == [action], "the old instance is still stopped, the binary still committed")
        #expect(machine.failure == nil)
    }

    @Test func theWarmHoldStillStartsAndTheSwapSucceeds() {
        var machine = SwapMachine(warmHold: true)
        for event in Self.path.prefix(7) { _ = machine.handle(event) }
        #expect(machine.handle(.committed) == [.journal(.watch), .startWarmHold, .finish(.succeeded)])
        #expect(machine.handle(.journalFailed(Self.error)) == [.startWarmHold, .finish(.succeeded)])
    }

    @Test func theEndIsStillReported() {
        var machine = SwapMachine()
        for event in Self.path { _ = machine.handle(event) }
        #expect(machine.handle(.journalFailed(Self.error)) == [.finish(.succeeded)])
        var failed = SwapMachine()
        for event in [Event.begin, .failed(SwapMachineTests.failure)] { _ = failed.handle(event) }
        #expect(failed.handle(.journalFailed(Self.error)) == [.removeStaged], "the revert goes on")
    }

    @Test func aSwitchBackGoesOnWithoutItsJournal() {
        var machine = SwapMachine()
        for event in Self.path.prefix(7) { _ = machine.handle(event) }
        let exit = SwapError(.appExited, "crashed")
        #expect(machine.handle(.newExitedWhileDraining(exit)) == [.handBackToOld, .journal(.revert), .switchProxyBack])
        #expect(machine.handle(.journalFailed(Self.error)) == [.switchProxyBack])
    }
}

@Suite struct RecoveryPlannerFlipTests {
    static let old = JournalState.Instance(pid: 10, port: 8081, sha256: "old", version: "v1")

    func state() -> JournalState {
        JournalState(
            serving: Self.old,
            swap: .init(id: "s", action: .rollback, phase: .flip, newPort: 8082, newPID: 20, stagedSHA256: "new", old: Self.old))
    }

    @Test func anInterruptedFlipIsFinished() {
        let plan = RecoveryPlanner.plan(state: state(), facts: .init(servingAlive: true, newAlive: true, oldAlive: true, liveIsNew: true), firstPort: 8081)
        #expect(plan.instance == .adopt(pid: 10, port: 8081))
        #expect(plan.stop == [.init(pid: 20, port: 8082)])
        #expect(plan.exchangeBinaries)
        #expect(!plan.commitStaged)
        #expect(plan.interrupted?.outcome == .undone)
    }

    @Test func aFlipWhoseFilesAlreadyTradedPlacesIsNotExchangedAgain() {
        let plan = RecoveryPlanner.plan(state: state(), facts: .init(servingAlive: true, newAlive: false, liveIsNew: false), firstPort: 8081)
        #expect(!plan.exchangeBinaries)
        #expect(plan.stop.isEmpty)
    }
}
