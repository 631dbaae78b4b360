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
