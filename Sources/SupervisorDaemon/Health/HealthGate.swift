import SupervisorCore
import SupervisorShared
import Synchronization
import SystemBindings

/// Waits until a fresh instance is healthy: `healthy_after` consecutive good
/// probes every `interval`, within `start_timeout`. An instance that exits
/// fails the gate at once.
public struct HealthGate: Sendable {
    public enum Result: Sendable, Equatable {
        case healthy(probes: Int)
        case exited(ExitStatus)
        case timedOut(lastProblem: String)
    }

    public let config: HealthConfig
    public let probe: HealthProbe

    public init(config: HealthConfig) {
        self.config = config
        self.probe = HealthProbe(config: config)
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
            switch await probe.probe(port: port) {
            case .healthy:
                streak += 1
                if streak >= config.healthyAfter { return .healthy(probes: total) }
            case .unhealthy(let problem):
                streak = 0
                last.set(problem)
            }
            do {
                try await Task.sleep(for: config.interval)
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
