/// Decides what happens to the one app instance in steady state: first start,
/// health gate, restarts with backoff, and stop. Pure: events in, actions out.
///
/// The runtime feeds it events (`spawned`, `healthy`, `exited` …), performs
/// the actions it returns, and never decides anything itself.
public struct AppMachine: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case idle
        /// `spawn` was asked for; waiting for the process.
        case starting(port: Int)
        /// The process runs; waiting for its health gate.
        case awaitingHealth(pid: Int32, port: Int)
        case running(pid: Int32, port: Int)
        /// Waiting out the backoff before the next start.
        case restartPending(port: Int, delay: Duration)
        /// A stop-start swap stopped the instance on purpose: nothing is
        /// restarted; the swap hands over the next instance (or resumes).
        case paused(port: Int)
        /// Stop signal sent; waiting for the exit.
        case stopping(pid: Int32)
        case stopped
    }

    public enum Event: Sendable, Equatable {
        case start(port: Int)
        /// A live instance a previous supervisor left running: check its health, don't restart it.
        case adopt(pid: Int32, port: Int)
        case spawned(pid: Int32)
        case spawnFailed(reason: String)
        case healthy
        /// The health gate gave up (start timeout); the process still runs.
        case healthGateFailed(reason: String)
        case exited(pid: Int32, status: String, uptime: Duration)
        case restartTimerFired
        /// Supervision changed hands: at a swap's switch (the new instance), a
        /// switch back or a warm-hold flip (the old one). This healthy instance is
        /// now the one supervised.
        case handedOver(pid: Int32, port: Int)
        /// A stop-start swap is about to stop the supervised instance itself
        /// (whichever runs: a restart may have replaced the one it started with).
        case pause
        /// The swap that paused supervision could not start an instance: start one (with backoff).
        case resume
        case stopRequested
        case stopTimerFired
    }

    public enum Action: Sendable, Equatable {
        case spawn(port: Int)
        case awaitHealth(pid: Int32, port: Int)
        case announceReady(pid: Int32, port: Int)
        case announceRecovered(pid: Int32, port: Int, restarts: Int)
        case scheduleRestart(after: Duration, reason: String)
        case sendStopSignal(pid: Int32)
        case scheduleStopTimer
        case kill(pid: Int32)
        /// A spawn that finished after supervision moved on (handed over
        /// meanwhile): not in rotation, killed at once.
        case discard(pid: Int32)
        case finishStop
    }

    public private(set) var state: State = .idle
    public private(set) var restarts: Int = 0
    public private(set) var lastExit: String?
    /// Whether the app has passed its health gate at least once (READY was sent).
    public private(set) var hasBeenReady = false
    public private(set) var backoff: RestartBackoff

    public init(backoff: RestartBackoff = RestartBackoff()) {
        self.backoff = backoff
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.idle, .start(let port)):
            state = .starting(port: port)
            return [.spawn(port: port)]

        case (.idle, .adopt(let pid, let port)):
            state = .awaitingHealth(pid: pid, port: port)
            return [.awaitHealth(pid: pid, port: port)]

        case (.starting(let port), .spawned(let pid)):
            state = .awaitingHealth(pid: pid, port: port)
            return [.awaitHealth(pid: pid, port: port)]

        case (.starting(let port), .spawnFailed(let reason)):
            return scheduleRestart(port: port, reason: reason, uptime: .zero)

        case (.awaitingHealth(let pid, let port), .healthy):
            state = .running(pid: pid, port: port)
            if hasBeenReady {
                return [.announceRecovered(pid: pid, port: port, restarts: restarts)]
            }
            hasBeenReady = true
            return [.announceReady(pid: pid, port: port)]

        case (.awaitingHealth(let pid, _), .healthGateFailed):
            // Kill it; its exit event schedules the restart.
            return [.kill(pid: pid)]

        case (.awaitingHealth(let pid, let port), .exited(let exitedPID, let status, let uptime))
        where pid == exitedPID,
            (.running(let pid, let port), .exited(let exitedPID, let status, let uptime))
        where pid == exitedPID:
            lastExit = status
            return scheduleRestart(port: port, reason: status, uptime: uptime)

        case (.running, .handedOver(let pid, let port)),
            (.awaitingHealth, .handedOver(let pid, let port)),
            (.restartPending, .handedOver(let pid, let port)),
            (.starting, .handedOver(let pid, let port)):
            state = .running(pid: pid, port: port)
            backoff.reset()
            return []

        case (.running(_, let port), .pause), (.awaitingHealth(_, let port), .pause),
            (.restartPending(let port, _), .pause), (.starting(let port), .pause):
            // A restart timer that fires from here is stale; a spawn under way is discarded.
            state = .paused(port: port)
            return []

        case (.paused, .handedOver(let pid, let port)):
            state = .running(pid: pid, port: port)
            backoff.reset()
            return []

        case (.paused(let port), .resume):
            state = .starting(port: port)
            return [.spawn(port: port)]

        case (.paused, .stopRequested):
            state = .stopped
            return [.finishStop]

        case (.restartPending(let port, _), .restartTimerFired):
            state = .starting(port: port)
            return [.spawn(port: port)]

        case (.awaitingHealth(let pid, _), .stopRequested), (.running(let pid, _), .stopRequested):
            state = .stopping(pid: pid)
            return [.sendStopSignal(pid: pid), .scheduleStopTimer]

        case (.restartPending, .stopRequested), (.idle, .stopRequested):
            state = .stopped
            return [.finishStop]

        case (.starting, .stopRequested):
            // The spawn is under way; stop what it produces.
            state = .stopping(pid: 0)
            return []

        case (.stopping(0), .spawned(let pid)):
            state = .stopping(pid: pid)
            return [.sendStopSignal(pid: pid), .scheduleStopTimer]

        case (.stopping(0), .spawnFailed):
            state = .stopped
            return [.finishStop]

        case (.stopping(let pid), .stopTimerFired) where pid != 0:
            return [.kill(pid: pid)]

        case (.stopping(let pid), .exited(let exitedPID, let status, _)) where pid == exitedPID:
            lastExit = status
            state = .stopped
            return [.finishStop]

        case (_, .spawned(let pid)):
            return [.discard(pid: pid)]

        default:
            // Stale timers, events for an old pid, repeated stops: nothing to do.
            return []
        }
    }

    private mutating func scheduleRestart(port: Int, reason: String, uptime: Duration) -> [Action] {
        restarts += 1
        let delay = backoff.nextDelay(afterUptime: uptime)
        state = .restartPending(port: port, delay: delay)
        return [.scheduleRestart(after: delay, reason: reason)]
    }

    /// A short word for status output.
    public var phase: String {
        switch state {
        case .idle: "idle"
        case .starting: "starting"
        case .awaitingHealth: hasBeenReady ? "restarting" : "starting"
        case .running: "running"
        case .restartPending: "backoff"
        case .paused: "paused"
        case .stopping: "stopping"
        case .stopped: "stopped"
        }
    }
}
