/// Decides every step of one swap in proxy mode. Pure: the runner feeds it
/// the outcome of each action it performed and performs what comes back.
///
/// The happy path: stage → preflight → start (before_start hooks, then the
/// new instance) → health → switch → drain → stop (old) → commit → done. A failure before the switch stops the new
/// instance and removes the staged copy; a failure of the switch itself is
/// reverted by the proxy driver (old file back, reloaded) before the same
/// clean-up. Once the proxy serves the new instance, the swap goes forward,
/// with one exception: a new instance that exits while the old one drains
/// (still alive, still listening) is a failed swap. The old instance takes
/// the supervision back, the proxy is pointed at it again, `.new` removed.
/// Should that switch back fail, the failure says so: the old instance is
/// alive and supervised, and a restart of the supervisor re-points the proxy.
///
/// `stop-start` (apps that cannot run twice): stage → preflight → stop (the
/// old instance) → start (before_start hooks, then the new instance, on the
/// old one's port or sockets) → health → switch (nothing moves: the proxy or
/// socket already leads there) → commit → done. A failure after the old
/// instance stopped stops the new one, starts the old binary again and
/// removes the staged copy: the swap fails with nothing lost but time.
public struct SwapMachine: Sendable, Equatable {
    public enum Event: Sendable, Equatable {
        case begin
        case staged
        case preflightPassed
        /// The `before_start` hooks all exited 0 (or there are none).
        case beforeStartHooksPassed
        case newStarted
        case newHealthy
        case switched
        case drained
        /// The new instance exited after the switch, while the old one drained.
        case newExitedWhileDraining(SwapError)
        /// The proxy serves the old instance again.
        case switchedBack
        /// Pointing the proxy back at the old instance failed.
        case switchBackFailed(SwapError)
        case oldStopped
        /// stop-start: the old binary runs and is healthy again after a failure.
        case oldRestarted
        /// stop-start: starting the old binary again failed too (supervision keeps trying).
        case oldRestartFailed(SwapError)
        case committed
        /// The action in progress failed.
        case failed(SwapError)
        /// Writing the state journal failed. Before the switch the swap is
        /// undone (nothing it did can be recovered without the journal);
        /// after it, the swap goes on: a restart recovers the phases from
        /// drain to watch alike (forward), so the last phase written still
        /// leads recovery to the right version.
        case journalFailed(SwapError)
        /// Clean-up after a failure finished.
        case newStopped
        case stagedRemoved
    }

    public enum Action: Sendable, Equatable {
        /// Write the state journal: this phase is about to act.
        case journal(SwapPhase)
        case stage
        case runPreflight
        /// `[hooks] before_start` (backups, migrations): a failure aborts the swap.
        case runBeforeStartHooks
        case startNew
        case awaitNewHealthy
        case switchProxy
        case drainOld
        /// The old instance is the supervised one again (in memory: before the
        /// journal, so the new binary is not restarted meanwhile).
        case handBackToOld
        /// Point the proxy at the old instance again.
        case switchProxyBack
        case stopOld
        /// stop-start, after a failure: start the old binary again on its port
        /// or sockets, gate it, and make it the supervised instance.
        case restartOld
        case commitBinaries
        /// Warm hold: keep the old instance alive out of rotation and watch the new one.
        case startWarmHold
        /// Drain and stop the old instance, whatever comes of it (a warm-hold
        /// swap whose commit failed: no hold starts, and the old instance,
        /// out of rotation, must not be left running).
        case retireOld
        case stopNew
        case removeStaged
        case finish(Outcome)
    }

    public enum Outcome: Sendable, Equatable {
        case succeeded
        case failed(SwapError, phase: SwapPhase)
    }

    public private(set) var phase: SwapPhase?
    public private(set) var failure: (error: SwapError, phase: SwapPhase)?
    private var newStarted = false
    /// stop-start: the old instance was stopped (a failure must start it again).
    private var oldStopped = false
    /// What follows the journal write in progress (done anyway if it fails past the switch).
    private var afterJournal: [Action] = []
    /// With `[health] watch`: the old instance is not drained and stopped
    /// after the switch; it stays warm for the watch window.
    public let warmHold: Bool
    public let strategy: SwapStrategy

    /// stop-start keeps nothing warm: the old instance is gone before the new one starts.
    public init(warmHold: Bool = false, strategy: SwapStrategy = .overlap) {
        self.strategy = strategy
        self.warmHold = warmHold && strategy == .overlap
    }

    public static func == (lhs: SwapMachine, rhs: SwapMachine) -> Bool {
        lhs.phase == rhs.phase && lhs.failure?.error == rhs.failure?.error && lhs.failure?.phase == rhs.failure?.phase
            && lhs.newStarted == rhs.newStarted && lhs.oldStopped == rhs.oldStopped && lhs.warmHold == rhs.warmHold
            && lhs.strategy == rhs.strategy && lhs.afterJournal == rhs.afterJournal
    }

    private var stopsFirst: Bool { strategy == .stopStart }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (phase, event) {
        case (nil, .begin):
            return enter(.stage, .stage)
        case (.stage?, .staged):
            return enter(.preflight, .runPreflight)
        case (.preflight?, .preflightPassed):
            return stopsFirst ? enter(.stop, .stopOld) : enter(.start, .runBeforeStartHooks)
        case (.start?, .beforeStartHooksPassed):
            return [.startNew]
        case (.start?, .newStarted):
            newStarted = true
            return enter(.health, .awaitNewHealthy)
        case (.health?, .newHealthy):
            return enter(.switch, .switchProxy)
        case (.switch?, .switched):
            return warmHold || stopsFirst ? enter(.commit, .commitBinaries) : enter(.drain, .drainOld)
        case (.drain?, .drained):
            return enter(.stop, .stopOld)
        case (.drain?, .newExitedWhileDraining(let error)):
            failure = (error, .drain)
            phase = .revert
            return [.handBackToOld] + journaled(.revert, then: [.switchProxyBack])
        case (.revert?, .switchedBack):
            return [.stopNew]
        case (.revert?, .switchBackFailed(let error)):
            failure = (error, .drain)
            return [.stopNew]
        case (.stop?, .oldStopped):
            if stopsFirst {
                oldStopped = true
                return enter(.start, .runBeforeStartHooks)
            }
            return enter(.commit, .commitBinaries)
        case (.commit?, .committed):
            if warmHold {
                phase = .watch
                return journaled(.watch, then: [.startWarmHold, .finish(.succeeded)])
            }
            phase = .done
            return journaled(.done, then: [.finish(.succeeded)])

        case (let current?, .failed(let error)):
            return fail(error, in: current)

        case (let current?, .journalFailed(let error)):
            switch current {
            case .stage, .preflight, .start, .health, .switch:
                return fail(error, in: current)
            case .stop where stopsFirst:
                return fail(error, in: current)
            case .drain, .stop, .commit, .watch, .revert, .done, .flip:
                let next = afterJournal
                afterJournal = []
                return next
            }

        case (.revert?, .newStopped):
            return oldStopped ? [.restartOld] : [.removeStaged]
        case (.revert?, .oldRestarted):
            return [.removeStaged]
        case (.revert?, .oldRestartFailed(let error)):
            if let failure {
                self.failure = (SwapError(failure.error.code, "\(failure.error.message); starting the old binary again failed too: \(error.message)"), failure.phase)
            }
            return [.removeStaged]
        case (.revert?, .stagedRemoved):
            guard let failure else { return [] }
            phase = .done
            return journaled(.done, then: [.finish(.failed(failure.error, phase: failure.phase))])

        default:
            return []
        }
    }

    private mutating func enter(_ next: SwapPhase, _ action: Action) -> [Action] {
        phase = next
        return journaled(next, then: [action])
    }

    /// Journal `phase` before `actions` act.
    private mutating func journaled(_ phase: SwapPhase, then actions: [Action]) -> [Action] {
        afterJournal = actions
        return [.journal(phase)] + actions
    }

    private mutating func fail(_ error: SwapError, in current: SwapPhase) -> [Action] {
        if stopsFirst, [.stop, .start, .health, .switch].contains(current) {
            // Nothing serves until the old binary runs again.
            failure = (error, current)
            phase = .revert
            if newStarted || current == .start { return journaled(.revert, then: [.stopNew]) }
            // The old instance would not stop (or the journal could not say it would): it still serves.
            return journaled(.revert, then: oldStopped ? [.restartOld] : [.handBackToOld, .removeStaged])
        }
        switch current {
        case .stage, .preflight, .start, .health, .switch:
            // The old instance still serves (a failed switch was reverted by the driver).
            failure = (error, current)
            phase = .revert
            if newStarted || current == .start {
                return journaled(.revert, then: [.stopNew])
            }
            return journaled(.revert, then: [.removeStaged])
        case .drain:
            // Draining is best effort: a drain that times out still stops the old one.
            return enter(.stop, .stopOld)
        case .stop:
            // The old instance would not die even with SIGKILL: the new one serves; go on.
            return enter(.commit, .commitBinaries)
        case .commit:
            // The new instance serves but files are not where they should be: say so loudly.
            // In warm mode the old instance was not stopped yet: no hold starts, so it goes.
            failure = (error, current)
            phase = .done
            return journaled(.done, then: (warmHold ? [.retireOld] : []) + [.finish(.failed(error, phase: current))])
        case .revert, .done, .watch, .flip:
            return []
        }
    }
}
