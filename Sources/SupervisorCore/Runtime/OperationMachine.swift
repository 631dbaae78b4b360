/// Decides who may act on the service now: one swap, rollback, warm-hold
/// flip or automatic rollback at a time, in every phase (DESIGN.md, "The
/// swap, step by step", 1. Lock). Pure: the runtime's owner feeds it every
/// request and every outcome, and performs the actions it returns.
///
/// - The lock is this machine's state: a request is claimed or refused in
///   the same step it is decided, so two overlapping requests can never both
///   pass (tableflip's one-slot semaphore, in value form).
/// - A request that arrives while the app is still starting (first start,
///   crash restart) claims the lock and waits for the start, up to
///   `[health] start_timeout`; a second one meanwhile is refused as busy.
/// - The warm hold is a state of the lock: free (a rollback flips back to the
///   warm old instance, a swap first ends the hold), but its end and its
///   flips, manual or automatic, hold the lock while they run.
/// - A shutdown lets what runs finish (a swap, a flip, the end of a hold)
///   and refuses whatever comes after; then the app is stopped.
/// - A re-exec (SIGHUP: the daemon replaces its own image, the app runs on)
///   waits the same way, ends a warm hold (its old instance is drained and
///   stopped: the new version is kept), holds the lock while it checks the
///   new binary, and gives it back if it does not happen. A stop wins over a
///   re-exec.
public struct OperationMachine: Sendable, Equatable {
    /// One caller's request, told apart from the others.
    public struct Ticket: Hashable, Sendable, CustomStringConvertible {
        public let id: Int
        public init(_ id: Int) { self.id = id }
        public var description: String { "#\(id)" }
    }

    /// A request the lock holds for later: after the app starts, or after the hold ends.
    public struct Pending: Sendable, Equatable {
        public var ticket: Ticket
        public var action: SwapAction
        public init(_ ticket: Ticket, _ action: SwapAction) {
            self.ticket = ticket
            self.action = action
        }
    }

    /// How the app stands when a request arrives.
    public enum AppAvailability: Sendable, Equatable {
        /// Healthy and serving: a swap can start at once.
        case running
        /// Starting (first start, crash restart, backoff): worth waiting for.
        case starting
        /// Stopping or stopped: nothing to swap.
        case down
    }

    public enum State: Sendable, Equatable {
        case idle
        /// A request claimed the lock while the app was starting.
        case waitingForApp(Pending)
        /// A swap or an ordinary rollback runs, in `phase`.
        case swapping(Pending, phase: SwapPhase)
        /// `[health] watch`: the old instance is kept warm; the lock is free.
        case holding
        /// The warm hold is ending (the old instance drained and stopped); `next` starts after.
        case endingHold(next: Pending?)
        /// Flipping the proxy back to the warm old instance; `ticket` is nil for an automatic rollback.
        case flipping(Ticket?, SwapAction)
        /// SIGHUP: checking the installed `supervisord`, then exec; the lock is held.
        case reexecuting
        /// Stopping: what ran has finished; the app is being stopped.
        case stopping
        case stopped
    }

    public enum Event: Sendable, Equatable {
        /// A caller asks for a swap or a rollback.
        case requested(Ticket, SwapAction, app: AppAvailability)
        /// The app passed its health gate (first start or a restart).
        case appReady
        /// A waiting request's `start_timeout` ran out.
        case waitTimedOut(Ticket)
        /// The running swap entered `phase`.
        case swapPhase(Ticket, SwapPhase)
        /// The running swap ended; `warmHold`: it committed and keeps the old instance warm.
        case swapFinished(Ticket, warmHold: Bool)
        /// The warm hold saw the new instance fail: roll back on our own.
        case holdFailed(reason: String)
        /// The watch window passed with the new instance healthy.
        case holdWindowElapsed
        /// The held old instance is drained and stopped.
        case holdEnded
        /// A flip ended; `ok`: the old instance serves again (else the hold goes on).
        case flipFinished(ok: Bool)
        /// SIGTERM or SIGINT.
        case shutdownRequested
        /// SIGHUP: re-execute the installed `supervisord` in place.
        case reexecRequested
        /// The re-exec did not happen (the new binary failed its check, or the app
        /// was not steady); this image goes on.
        case reexecAbandoned
        /// The app has stopped (after `stopApp`).
        case appStopped
    }

    public enum Refusal: Sendable, Equatable {
        /// Exit 4: another operation holds the lock, in this phase.
        case busy(phase: String)
        /// The app is not running (and not starting), or did not start in time.
        case notRunning
        /// The daemon is stopping.
        case shuttingDown
    }

    public enum Action: Sendable, Equatable {
        case refuse(Ticket, Refusal)
        /// Wait for the app, and send `waitTimedOut` after `[health] start_timeout`.
        case waitForApp(Ticket)
        case startSwap(Pending)
        /// Flip the proxy back to the warm old instance.
        case flip(Ticket?, SwapAction, reason: String?)
        /// Drain and stop the held old instance.
        case endHold
        /// An automatic rollback that cannot happen now (another operation runs); log it.
        case ignoreHoldFailure(reason: String, because: String)
        /// Check the installed `supervisord` and exec it; `reexecAbandoned` if not.
        case reexec
        /// A SIGHUP that cannot be honoured now (the daemon is stopping); log it.
        case ignoreReexec(because: String)
        /// A SIGHUP that waits for what runs to finish; log it.
        case deferReexec(behind: String)
        /// Stop the app (stop signal, then SIGKILL after `stop_timeout`).
        case stopApp
        case finishStop
    }

    public private(set) var state: State = .idle

    public init() {}

    /// The phase a busy refusal names, or nil when the lock is free.
    public var busyPhase: String? {
        switch state {
        case .idle, .holding: nil
        case .waitingForApp: "waiting for the app to start"
        case .swapping(_, let phase): phase.rawValue
        case .endingHold: "watch"
        case .flipping: "switch"
        case .reexecuting: "reexec"
        case .stopping, .stopped: "stopping"
        }
    }

    /// What runs now, for status: the action and its phase.
    public var current: (action: SwapAction, phase: String)? {
        switch state {
        case .idle, .holding, .stopping, .stopped, .reexecuting: nil
        case .waitingForApp(let pending): (pending.action, "waiting")
        case .swapping(let pending, let phase): (pending.action, phase.rawValue)
        case .endingHold(let next): (next?.action ?? .swap, "watch")
        case .flipping(_, let action): (action, "switch")
        }
    }

    public mutating func handle(_ event: Event) -> [Action] {
        let actions = transition(event)
        return actions + resumeWhatWaits()
    }

    private mutating func transition(_ event: Event) -> [Action] {
        switch (state, event) {
        // Requests: claimed or refused in this one step.
        case (.stopping, .requested(let ticket, _, _)), (.stopped, .requested(let ticket, _, _)):
            return [.refuse(ticket, .shuttingDown)]
        case (.idle, .requested(let ticket, let action, let app)):
            let pending = Pending(ticket, action)
            switch app {
            case .running:
                state = .swapping(pending, phase: .stage)
                return [.startSwap(pending)]
            case .starting:
                state = .waitingForApp(pending)
                return [.waitForApp(ticket)]
            case .down:
                return [.refuse(ticket, .notRunning)]
            }
        case (.holding, .requested(let ticket, let action, _)):
            if action == .rollback {
                state = .flipping(ticket, .rollback)
                return [.flip(ticket, .rollback, reason: nil)]
            }
            state = .endingHold(next: Pending(ticket, action))
            return [.endHold]
        case (_, .requested(let ticket, _, _)) where shutdownPending:
            return [.refuse(ticket, .shuttingDown)]
        case (_, .requested(let ticket, _, _)):
            return [.refuse(ticket, .busy(phase: busyPhase ?? "unknown"))]

        // Waiting for the app.
        case (.waitingForApp(let pending), .appReady):
            state = .swapping(pending, phase: .stage)
            return [.startSwap(pending)]
        case (.waitingForApp(let pending), .waitTimedOut(let ticket)) where pending.ticket == ticket:
            state = .idle
            return [.refuse(ticket, .notRunning)]

        // The running swap.
        case (.swapping(let pending, _), .swapPhase(let ticket, let phase)) where pending.ticket == ticket:
            state = .swapping(pending, phase: phase)
            return []
        case (.swapping(let pending, _), .swapFinished(let ticket, let warmHold)) where pending.ticket == ticket:
            state = warmHold ? .holding : .idle
            return []

        // The warm hold.
        case (.holding, .holdFailed(let reason)):
            state = .flipping(nil, .autoRollback)
            return [.flip(nil, .autoRollback, reason: reason)]
        case (_, .holdFailed(let reason)):
            return [.ignoreHoldFailure(reason: reason, because: busyPhase.map { "another operation is in phase \($0)" } ?? "the warm hold is over")]
        case (.holding, .holdWindowElapsed):
            state = .endingHold(next: nil)
            return [.endHold]
        case (.endingHold(let next), .holdEnded):
            guard let next else {
                state = .idle
                return []
            }
            state = .swapping(next, phase: .stage)
            return [.startSwap(next)]
        case (.flipping, .flipFinished(let ok)):
            state = ok ? .idle : .holding
            return []

        // Shutdown: finish what runs, then stop the app.
        case (.idle, .shutdownRequested):
            state = .stopping
            return [.stopApp]
        case (.waitingForApp(let pending), .shutdownRequested):
            state = .stopping
            return [.refuse(pending.ticket, .shuttingDown), .stopApp]
        case (.holding, .shutdownRequested):
            state = .endingHold(next: nil)
            shutdownPending = true
            return [.endHold]
        case (.endingHold(let next?), .shutdownRequested):
            state = .endingHold(next: nil)
            return [.refuse(next.ticket, .shuttingDown)] + deferShutdown()
        case (.swapping, .shutdownRequested), (.flipping, .shutdownRequested), (.endingHold(nil), .shutdownRequested):
            return deferShutdown()
        case (.stopping, .appStopped):
            state = .stopped
            return [.finishStop]
        case (.reexecuting, .shutdownRequested):
            // The re-exec job sees `shutdownPending` before it execs and gives up.
            return deferShutdown()

        // Re-exec in place.
        case (.stopping, .reexecRequested), (.stopped, .reexecRequested):
            return [.ignoreReexec(because: "the daemon is stopping")]
        case (_, .reexecRequested) where shutdownPending:
            return [.ignoreReexec(because: "a stop is pending")]
        case (.reexecuting, .reexecRequested):
            return []
        case (.idle, .reexecRequested):
            state = .reexecuting
            return [.reexec]
        case (.holding, .reexecRequested):
            state = .endingHold(next: nil)
            reexecPending = true
            return [.deferReexec(behind: "the warm hold ends (the new version is kept)"), .endHold]
        case (_, .reexecRequested):
            let behind = reexecPending ? [] : [Action.deferReexec(behind: current.map { "\($0.action.rawValue) (phase \($0.phase))" } ?? "what runs")]
            reexecPending = true
            return behind
        case (.reexecuting, .reexecAbandoned):
            state = .idle
            return []

        default:
            return []
        }
    }

    /// Shutdown asked while something runs: remembered, acted on when it ends.
    public private(set) var shutdownPending = false

    private mutating func deferShutdown() -> [Action] {
        shutdownPending = true
        return []
    }

    /// A SIGHUP that waits for the lock.
    public private(set) var reexecPending = false

    /// After an event that may have freed the lock: a pending shutdown goes
    /// on, else a pending re-exec. Either ends a warm hold first.
    private mutating func resumeWhatWaits() -> [Action] {
        let stop = shutdownPending
        guard stop || reexecPending else { return [] }
        switch state {
        case .idle:
            shutdownPending = false
            reexecPending = false
            state = stop ? .stopping : .reexecuting
            return [stop ? .stopApp : .reexec]
        case .holding:
            state = .endingHold(next: nil)
            return stop ? [.endHold] : [.deferReexec(behind: "the warm hold ends (the new version is kept)"), .endHold]
        default:
            return []
        }
    }
}
