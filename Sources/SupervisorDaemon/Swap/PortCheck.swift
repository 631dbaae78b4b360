#if canImport(Glibc)
import Glibc
#endif

/// Whether a TCP port on loopback can be bound right now.
enum PortCheck {
    /// nil when free; else a description of what holds it.
    static func heldBy(port: Int) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = INADDR_ANY
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc == 0 { return nil }
        if errno == EADDRINUSE { return "held by another process; `ss -ltnp 'sport = :\(port)'` shows which" }
        return String(cString: strerror(errno))
    }
}
