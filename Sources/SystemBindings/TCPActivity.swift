#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// What the kernel knows of the established TCP connections on a local port
/// (sock_diag with `tcp_info`), as `ss -ti 'sport = :PORT'` shows.
public struct TCPActivity: Sendable, Equatable {
    public let connections: Int
    /// Time since the most recently active connection last carried data
    /// either way; nil with no connections.
    public let mostRecentDataAge: Duration?

    public init(connections: Int, mostRecentDataAge: Duration?) {
        self.connections = connections
        self.mostRecentDataAge = mostRecentDataAge
    }

    public static func onLocalPort(_ port: Int) -> TCPActivity? {
        var connections: Int32 = 0
        var idle: UInt32 = 0
        guard csup_tcp_port_activity(UInt16(port), &connections, &idle) == 0 else { return nil }
        return TCPActivity(
            connections: Int(connections),
            mostRecentDataAge: connections == 0 || idle == UInt32.max ? nil : .milliseconds(Int64(idle)))
    }
}
