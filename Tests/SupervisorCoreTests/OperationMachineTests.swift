import Testing
@testable import SupervisorCore

/// The lock, the warm hold, flips and shutdown, every state against every
/// event: the machine is a value, so each case builds its state from events
/// and compares what one more event does.
@Suite struct OperationMachineTests {
    typealias Machine = OperationMachine
    typealias Event = OperationMachine.Event
    typealias Action = OperationMachine.Action
    typealias Ticket = OperationMachine.Ticket

    static let a = Ticket(1), b = Ticket(2), c = Ticket(3)

    /// Every state the machine can be in, reached by events, with the ticket that holds the lock (if any).
    static let states: [(name: String, events: [Event])] = [
        ("idle", []),
        ("waitingForApp", [.requested(a, .swap, app: .starting)]),
        ("swapping", [.requested(a, .swap, app: .running)]),
        ("swapping in health", [.requested(a, .swap, app: .running), .swapPhase(a, .health)]),
        ("holding", [.requested(a, .swap, app: .running), .swapFinished(a, warmHold: true)]),
        ("endingHold with a swap next", [.requested(a, .swap, app: .running), .swapFinished(a, warmHold: true), .requested(b, .swap, app: .running)]),
        ("endingHold after the window", [.requested(a, .swap, app: .running), .swapFinished(a, warmHold: true), .holdWindowElapsed]),
        ("flipping (manual)", [.requested(a, .swap, app: .running), .swapFinished(a, warmHold: true), .requested(b, .rollback, app: .running)]),
        ("flipping (automatic)", [.requested(a, .swap, app: .running), .swapFinished(a, warmHold: true), .holdFailed(reason: "probes")]),
        ("stopping", [.shutdownRequested]),
        ("stopped", [.shutdownRequested, .appStopped]),
        ("reexecuting", [.reexecRequested]),
        ("swapping with a re-exec behind it", [.requested(a, .swap, app: .running), .reexecRequested]),
    ]

    func machine(_ events: [Event]) -> Machine {
        var machine = Machine()
        for event in events { _ = machine.handle(event) }
        return machine
    }

    // MARK: - The lock: one at a time, in every state

    /// Whatever holds the lock, a new request is refused at once as busy, naming the phase, and nothing changes.
    @Test(arguments: [
        "waitingForApp", "swapping", "swapping in health", "endingHold with a swap next", "endingHold after the window", "flipping (manual)",
        "flipping (automatic)", "reexecuting", "swapping with a re-exec behind it",
    ])
    func aRequestWhileTheLockIsHeldIsRefusedAsBusy(state name: String) throws {
        let events = try #require(Self.states.first { $0.name == name }).events
        for action in [SwapAction.swap, .rollback] {
            for app in [Machine.AppAvailability.running, .starting, .down] {
                var machine = machine(events)
                let before = machine.state
                let phase = try #require(machine.busyPhase)
                let actions = machine.handle(.requested(Self.c, action, app: app))
                #expect(actions == [.refuse(Self.c, .busy(phase: phase))], "\(name) \(action) \(app)")
                #expect(machine.state == before)
            }
        }
    }

    @Test func busyNamesThePhase() {
        #expect(machine([.requested(Self.a, .swap, app: .running), .swapPhase(Self.a, .health)]).busyPhase == "health")
        #expect(machine([.requested(Self.a, .swap, app: .starting)]).busyPhase == "waiting for the app to start")
        #expect(machine([.requested(Self.a, .swap, app: .running), .swapFinished(Self.a, warmHold: true), .requested(Self.b, .rollback, app: .running)]).busyPhase == "switch")
        #expect(machine([.requested(Self.a, .swap, app: .running), .swapFinished(Self.a, warmHold: true)]).busyPhase == nil)
        #expect(machine([]).busyPhase == nil)
    }

    /// Any number of overlapping requests: exactly one is granted.
    @Test(arguments: [Machine.AppAvailability.running, .starting])
    func ofManyOverlappingRequestsExactlyOneProceeds(app: Machine.AppAvailability) {
        var machine = Machine()
        var granted = 0, refused = 0
        for id in 1...20 {
            let actions = machine.handle(.requested(Ticket(id), id % 3 == 0 ? .rollback : .swap, app: app))
            for action in actions {
                switch action {
                case .startSwap, .waitForApp: granted += 1
                case .refuse(_, .busy): refused += 1
                default: Issue.record("unexpected \(action)")
                }
            }
        }
        #expect(granted == 1 && refused == 19)
    }

    @Test func aRequestWhenIdleStartsAtOnceWaitsOrIsRefused() {
        var running = Machine()
        #expect(running.handle(.requested(Self.a, .swap, app: .running)) == [.startSwap(.init(Self.a, .swap))])
        #expect(running.state == .swapping(.init(Self.a, .swap), phase: .stage))
        var starting = Machine()
        #expect(starting.handle(.requested(Self.a, .rollback, app: .starting)) == [.waitForApp(Self.a)])
        var down = Machine()
        #expect(down.handle(.requested(Self.a, .swap, app: .down)) == [.refuse(Self.a, .notRunning)])
        #expect(down.state == .idle)
    }

    // MARK: - Waiting for the app

    @Test func aWaitingRequestStartsWhenTheAppIsReady() {
        var machine = machine([.requested(Self.a, .swap, app: .starting)])
        #expect(machine.handle(.appReady) == [.startSwap(.init(Self.a, .swap))])
        #expect(machine.state == .swapping(.init(Self.a, .swap), phase: .stage))
    }

    @Test func aWaitThatRunsOutIsNotRunningAndFreesTheLock() {
        var machine = machine([.requested(Self.a, .swap, app: .starting)])
        #expect(machine.handle(.waitTimedOut(Self.b)) == [], "another ticket's timer changes nothing")
        #expect(machine.handle(.waitTimedOut(Self.a)) == [.refuse(Self.a, .notRunning)])
        #expect(machine.state == .idle)
        #expect(machine.handle(.appReady) == [], "a late ready starts nothing")
    }

    @Test func aTimerOfARequestThatAlreadyStartedChangesNothing() {
        var machine = machine([.requested(Self.a, .swap, app: .starting), .appReady])
        #expect(machine.handle(.waitTimedOut(Self.a)) == [])
        #expect(machine.state == .swapping(.init(Self.a, .swap), phase: .stage))
    }

    // MARK: - The running swap

    @Test func phasesAndTheEndBelongToTheTicketThatHoldsTheLock() {
        var machine = machine([.requested(Self.a, .swap, app: .running)])
        #expect(machine.handle(.swapPhase(Self.b, .commit)) == [])
        #expect(machine.handle(.swapFinished(Self.b, warmHold: false)) == [])
        #expect(machine.state == .swapping(.init(Self.a, .swap), phase: .stage))
        _ = machine.handle(.swapPhase(Self.a, .switch))
        #expect(machine.current?.phase == "switch")
        _ = machine.handle(.swapFinished(Self.a, warmHold: false))
        #expect(machine.state == .idle)
    }

    // MARK: - The warm hold

    static let holding: [Event] = [.requested(a, .swap, app: .running), .swapFinished(a, warmHold: true)]

    @Test func inTheHoldARollbackFlipsAndASwapEndsTheHoldFirst() {
        var rollback = machine(Self.holding)
        #expect(rollback.handle(.requested(Self.b, .rollback, app: .running)) == [.flip(Self.b, .rollback, reason: nil)])
        var swap = machine(Self.holding)
        #expect(swap.handle(.requested(Self.b, .swap, app: .running)) == [.endHold])
        #expect(swap.handle(.holdEnded) == [.startSwap(.init(Self.b, .swap))])
    }

    @Test func aFailingNewInstanceFlipsOnItsOwnOnlyInTheHold() {
        var machine = machine(Self.holding)
        #expect(machine.handle(.holdFailed(reason: "exited")) == [.flip(nil, .autoRollback, reason: "exited")])
        // A second report while the flip runs does not flip twice.
        #expect(machine.handle(.holdFailed(reason: "exited")) == [.ignoreHoldFailure(reason: "exited", because: "another operation is in phase switch")])
        #expect(machine.handle(.requested(Self.b, .rollback, app: .running)) == [.refuse(Self.b, .busy(phase: "switch"))])
        #expect(machine.handle(.flipFinished(ok: true)) == [])
        #expect(machine.state == .idle)
        #expect(machine.handle(.holdFailed(reason: "late")) == [.ignoreHoldFailure(reason: "late", because: "the warm hold is over")])
    }

    @Test func anAutomaticRollbackDuringAManualFlipIsIgnored() {
        var machine = machine(Self.holding + [.requested(Self.b, .rollback, app: .running)])
        #expect(machine.handle(.holdFailed(reason: "probes")).count == 1)
        #expect(machine.state == .flipping(Self.b, .rollback))
    }

    @Test func aFailedFlipKeepsTheHold() {
        var machine = machine(Self.holding + [.requested(Self.b, .rollback, app: .running)])
        _ = machine.handle(.flipFinished(ok: false))
        #expect(machine.state == .holding)
    }

    @Test func theWindowsEndStopsTheOldInstanceUnderTheLock() {
        var machine = machine(Self.holding)
        #expect(machine.handle(.holdWindowElapsed) == [.endHold])
        #expect(machine.handle(.requested(Self.b, .rollback, app: .running)) == [.refuse(Self.b, .busy(phase: "watch"))])
        #expect(machine.handle(.holdEnded) == [])
        #expect(machine.state == .idle)
        #expect(machine.handle(.holdWindowElapsed) == [], "a second end changes nothing")
    }

    // MARK: - Shutdown

    @Test func shutdownWhenIdleStopsTheApp() {
        var machine = Machine()
        #expect(machine.handle(.shutdownRequested) == [.stopApp])
        #expect(machine.handle(.requested(Self.a, .swap, app: .running)) == [.refuse(Self.a, .shuttingDown)])
        #expect(machine.handle(.appStopped) == [.finishStop])
        #expect(machine.state == .stopped)
    }

    @Test func shutdownDuringASwapWaitsForItThenStops() {
        var machine = machine([.requested(Self.a, .swap, app: .running)])
        #expect(machine.handle(.shutdownRequested) == [])
        #expect(machine.handle(.requested(Self.b, .swap, app: .running)) == [.refuse(Self.b, .shuttingDown)])
        #expect(machine.handle(.swapFinished(Self.a, warmHold: false)) == [.stopApp])
        #expect(machine.handle(.appStopped) == [.finishStop])
    }

    @Test func shutdownDuringASwapThatEndsInAHoldEndsTheHoldThenStops() {
        var machine = machine([.requested(Self.a, .swap, app: .running), .shutdownRequested])
        #expect(machine.handle(.swapFinished(Self.a, warmHold: true)) == [.endHold])
        #expect(machine.handle(.holdEnded) == [.stopApp])
    }

    @Test func shutdownInTheHoldEndsItFirst() {
        var machine = machine(Self.holding)
        #expect(machine.handle(.shutdownRequested) == [.endHold])
        #expect(machine.handle(.requested(Self.b, .rollback, app: .running)) == [.refuse(Self.b, .shuttingDown)])
        #expect(machine.handle(.holdEnded) == [.stopApp])
    }

    @Test func shutdownRefusesAWaitingRequestAndTheSwapQueuedBehindAHold() {
        var waiting = machine([.requested(Self.a, .swap, app: .starting)])
        #expect(waiting.handle(.shutdownRequested) == [.refuse(Self.a, .shuttingDown), .stopApp])
        var queued = machine(Self.holding + [.requested(Self.b, .swap, app: .running)])
        #expect(queued.handle(.shutdownRequested) == [.refuse(Self.b, .shuttingDown)])
        #expect(queued.handle(.holdEnded) == [.stopApp])
    }

    @Test func shutdownDuringAFlipWaitsForIt() {
        var machine = machine(Self.holding + [.holdFailed(reason: "x")])
        #expect(machine.handle(.shutdownRequested) == [])
        #expect(machine.handle(.flipFinished(ok: true)) == [.stopApp])
        var failed = self.machine(Self.holding + [.holdFailed(reason: "x"), .shutdownRequested])
        #expect(failed.handle(.flipFinished(ok: false)) == [.endHold], "a failed flip leaves a hold: it ends before the stop")
    }

    // MARK: - Re-exec in place (SIGHUP)

    @Test func aReexecWhenIdleHoldsTheLockAndGivesItBackIfItDoesNotHappen() {
        var machine = Machine()
        #expect(machine.handle(.reexecRequested) == [.reexec])
        #expect(machine.busyPhase == "reexec")
        #expect(machine.handle(.requested(Self.a, .swap, app: .running)) == [.refuse(Self.a, .busy(phase: "reexec"))])
        #expect(machine.handle(.reexecRequested) == [], "a second SIGHUP meanwhile is the same re-exec")
        #expect(machine.handle(.reexecAbandoned) == [])
        #expect(machine.state == .idle)
        #expect(machine.handle(.requested(Self.a, .swap, app: .running)) == [.startSwap(.init(Self.a, .swap))])
    }

    @Test func aReexecDuringASwapWaitsForItsEnd() {
        var machine = machine([.requested(Self.a, .swap, app: .running), .swapPhase(Self.a, .health)])
        let deferred = machine.handle(.reexecRequested)
        #expect(deferred == [.deferReexec(behind: "swap (phase health)")])
        #expect(machine.handle(.reexecRequested) == [], "said once")
        #expect(machine.handle(.requested(Self.b, .swap, app: .running)) == [.refuse(Self.b, .busy(phase: "health"))])
        #expect(machine.handle(.swapFinished(Self.a, warmHold: false)) == [.reexec])
        #expect(machine.state == .reexecuting)
    }

    @Test func aReexecEndsAWarmHoldFirstKeepingTheNewVersion() {
        var machine = machine(Self.holding)
        #expect(machine.handle(.reexecRequested) == [.deferReexec(behind: "the warm hold ends (the new version is kept)"), .endHold])
        #expect(machine.handle(.requested(Self.c, .rollback, app: .running)) == [.refuse(Self.c, .busy(phase: "watch"))], "no flip back once the hold is ending")
        #expect(machine.handle(.holdEnded) == [.reexec])
        var afterSwap = self.machine([.requested(Self.a, .swap, app: .running), .reexecRequested])
        #expect(afterSwap.handle(.swapFinished(Self.a, warmHold: true)) == [.deferReexec(behind: "the warm hold ends (the new version is kept)"), .endHold], "a swap that ends in a hold: the hold ends (said), then the re-exec")
        #expect(afterSwap.handle(.holdEnded) == [.reexec])
    }

    @Test func aStopWinsOverAReexec() {
        var pending = machine([.requested(Self.a, .swap, app: .running), .reexecRequested, .shutdownRequested])
        #expect(pending.handle(.swapFinished(Self.a, warmHold: false)) == [.stopApp])
        var checking = machine([.reexecRequested])
        #expect(checking.handle(.shutdownRequested) == [], "the re-exec job sees the stop and gives up")
        #expect(checking.shutdownPending)
        #expect(checking.handle(.reexecAbandoned) == [.stopApp])
        var stopping = machine([.shutdownRequested])
        #expect(stopping.handle(.reexecRequested) == [.ignoreReexec(because: "the daemon is stopping")])
        var stopFirst = machine([.requested(Self.a, .swap, app: .running), .shutdownRequested])
        #expect(stopFirst.handle(.reexecRequested) == [.ignoreReexec(because: "a stop is pending")])
    }

    // MARK: - Every state × every event: nothing crashes, nothing is granted twice

    static let allEvents: [Event] = [
        .requested(c, .swap, app: .running), .requested(c, .rollback, app: .starting), .requested(c, .swap, app: .down),
        .appReady, .waitTimedOut(a), .swapPhase(a, .drain), .swapFinished(a, warmHold: false), .swapFinished(a, warmHold: true),
        .holdFailed(reason: "r"), .holdWindowElapsed, .holdEnded, .flipFinished(ok: true), .flipFinished(ok: false),
        .shutdownRequested, .appStopped, .reexecRequested, .reexecAbandoned,
    ]

    @Test func everyEventInEveryStateLeavesAtMostOneOperationGranted() {
        for (name, events) in Self.states {
            for event in Self.allEvents {
                var machine = machine(events)
                let wasBusy = machine.busyPhase != nil
                let actions = machine.handle(event)
                let grants = actions.filter {
                    switch $0 {
                    case .startSwap, .flip, .waitForApp, .reexec: true
                    default: false
                    }
                }
                #expect(grants.count <= 1, "\(name) + \(event): \(actions)")
                if case .requested = event, wasBusy {
                    #expect(grants.isEmpty, "\(name) + \(event) granted while busy: \(actions)")
                }
            }
        }
    }
}
