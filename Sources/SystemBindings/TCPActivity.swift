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

/// The connections on a local port, any state but LISTEN (TIME_WAIT
/// included), each named by its remote end: what `ss -tan 'sport = :PORT'`
/// lists. Nil when sock_diag cannot be read.
public enum TCPPeers {
    public struct Peer: Hashable, Sendable, CustomStringConvertible {
        public let address: String
        public let port: Int
        public var description: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
    }

    public static func onLocalPort(_ port: Int) -> Set<Peer>? {
        var buffer = [csup_tcp_peer](repeating: csup_tcp_peer(), count: 4096)
        let count = buffer.withUnsafeMutableBufferPointer { csup_tcp_port_peers(UInt16(port), $0.baseAddress, Int32($0.count)) }
        guard count >= 0 else { return nil }
        return Set(buffer.prefix(min(Int(count), buffer.count)).map { peer in
            var raw = peer.remote_address
            let family = Int32(peer.family)
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            _ = withUnsafeBytes(of: &raw) { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
            return Peer(address: String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), port: Int(peer.remote_port))
        })
    }
}
