import SupervisorCore
import SupervisorShared
import SystemBindings

/// Step 7: waits until the old instance is quiet, read from the kernel:
/// no established connection on its port has carried data (either way)
/// for `quietPeriod`, and none is new. Idle keep-alive connections a proxy
/// keeps open do not hold it. At most `timeout`; a cancelled drain ends at once.
public struct ConnectionDrainer: Sendable {
    public enum Result: Sendable, Equatable {
        case quiet(connectionsLeft: Int)
        case timedOut(connections: Int)
        /// sock_diag unavailable (no netlink): waited one quiet period instead.
        case unobservable
    }

    public var quietPeriod: Duration = .milliseconds(250)
    public var pollInterval: Duration = .milliseconds(25)
    public let timeout: Duration

    public init(timeout: Duration) {
        self.timeout = timeout
    }

    public func drain(port: Int) async -> Result {
        let deadline = ContinuousClock.now + timeout
        var last = 0
        while true {
            guard let activity = TCPActivity.onLocalPort(port) else {
                try? await Task.sleep(for: quietPeriod)
                return .unobservable
            }
            last = activity.connections
            if activity.connections == 0 { return .quiet(connectionsLeft: 0) }
            if let age = activity.mostRecentDataAge, age >= quietPeriod {
                return .quiet(connectionsLeft: activity.connections)
            }
            if ContinuousClock.now >= deadline || Task.isCancelled { return .timedOut(connections: last) }
            try? await Task.sleep(for: pollInterval)
        }
    }
}
