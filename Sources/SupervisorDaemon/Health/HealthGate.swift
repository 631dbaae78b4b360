import SupervisorCore
import SupervisorShared
import Synchronization
import SystemBindings

/// Waits until a fresh instance is healthy: `healthy_after` consecutive good
/// answers within `start_timeout`. An instance that exits fails the gate at once.
///
/// The gate costs the app's own start plus a few milliseconds: while nothing
/// listens on the port (connection refused, which loopback answers at once)
/// it tries again every `acceptPoll`, so the first probe follows the app's
/// `listen()`; after a good answer the next probe follows after
/// `healthy_interval` (default: at once; the streak asks for consecutive
/// answers, and idle time between them only where the operator asks for a
/// stability window); after a bad answer (the app listens but is not ready)
/// it waits `interval`.
public struct HealthGate: Sendable {
    public enum Result: Sendable, Equatable {
        case healthy(probes: Int)
        case exited(ExitStatus)
        case timedOut(lastProblem: String)
    }

    public let config: HealthConfig
    public let probe: HealthProbe
    /// How soon to try again while nothing listens (never longer than `interval`).
    public static let acceptPoll: Duration = .milliseconds(5)

    public init(config: HealthConfig) {
        self.config = config
        self.probe = HealthProbe(config: config)
    }

    /// What to wait before the next probe, after `answer`.
    static func pause(after answer: HealthProbe.Answer, config: HealthConfig) -> Duration {
        switch answer.outcome {
        case .healthy: config.healthyInterval
        case .unhealthy: answer.nothingListens ? min(acceptPoll, config.interval) : config.interval
        }
    }

    public func wait(port: Int, process: ChildProcess) async -> Result {
        let last = LastProblem()
        return await withTaskGroup(of: Result?.self) { group in
            group.addTask { await self.probeUntilHealthy(port: port, last: last) }
            group.addTask {
                guard let status = await process.waitForExit() else { return nil }
                return .exited(status)
            }
            group.addTask {
                do {
                    try await Task.sleep(for: config.startTimeout)
                } catch {
                    return nil
                }
                return .timedOut(lastProblem: last.value)
            }
            var outcome: Result = .timedOut(lastProblem: "")
            while let next = await group.next() {
                if let next {
                    outcome = next
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }

    /// Probes until the streak is long enough; returns nil if cancelled.
    private func probeUntilHealthy(port: Int, last: LastProblem) async -> Result? {
        var streak = 0
        var total = 0
        while !Task.isCancelled {
            total += 1
            let answer = await probe.answer(port: port)
            switch answer.outcome {
            case .healthy:
                streak += 1
                if streak >= config.healthyAfter { return .healthy(probes: total) }
            case .unhealthy(let problem):
                streak = 0
                last.set(problem)
            }
            let pause = Self.pause(after: answer, config: config)
            guard pause > .zero else { continue }
            do {
                try await Task.sleep(for: pause)
            } catch {
                return nil
            }
        }
        return nil
    }
}

/// The most recent probe failure, to explain a timeout.
final class LastProblem: Sendable {
    private let storage = Mutex<String>("no probe answered yet")
    func set(_ text: String) { storage.withLock { $0 = text } }
    var value: String { storage.withLock { $0 } }
}
