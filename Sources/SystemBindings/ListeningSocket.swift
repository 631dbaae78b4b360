#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// TCP sockets on a host and port: the listening sockets the supervisor holds
/// for socket-handoff mode, and the bind-only probe that tells whether a port
/// is free.
public enum ListeningSocket {
    /// Opens `host:port` (`127.0.0.1:8080`, `[::]:8080`) for listening; CLOEXEC
    /// in the supervisor, passed to children as fd 3, 4, … by the spawner.
    public static func open(_ address: String) throws(ProcessError) -> Int32 {
        let (host, port) = try split(address)
        let fd = csup_listen_tcp(host, port, 4096)
        guard fd >= 0 else { throw ProcessError(pid: 0, errno: errno) }
        return fd
    }

    /// Binds `host:port` without listening (nobody can connect to it); the
    /// caller closes it. Fails with EADDRINUSE when someone holds the port.
    public static func bind(_ address: String) throws(ProcessError) -> Int32 {
        let (host, port) = try split(address)
        let fd = csup_bind_tcp(host, port)
        guard fd >= 0 else { throw ProcessError(pid: 0, errno: errno) }
        return fd
    }

    private static func split(_ address: String) throws(ProcessError) -> (String, Int32) {
        guard let colon = address.lastIndex(of: ":"), let port = Int32(address[address.index(after: colon)...]) else {
            throw ProcessError(pid: 0, errno: EINVAL)
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}
