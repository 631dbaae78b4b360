/// Capped exponential backoff between restarts of a crashing app.
///
/// 100ms, 200ms, 400ms … up to `maximum`; an instance that ran at least
/// `stableAfter` before it exited starts the sequence again.
public struct RestartBackoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var stableAfter: Duration
    public private(set) var consecutiveFailures: Int = 0

    public init(
        initial: Duration = .milliseconds(100), maximum: Duration = .seconds(30),
        stableAfter: Duration = .seconds(30)
    ) {
        self.initial = initial
        self.maximum = maximum
        self.stableAfter = stableAfter
    }

    /// Records an exit after `uptime` and returns how long to wait before the next start.
    public mutating func nextDelay(afterUptime uptime: Duration) -> Duration {
        if uptime >= stableAfter { consecutiveFailures = 0 }
        let exponent = min(consecutiveFailures, 30)
        consecutiveFailures += 1
        let delay = initial * (1 << exponent)
        return min(delay, maximum)
    }

    public mutating func reset() { consecutiveFailures = 0 }
}
