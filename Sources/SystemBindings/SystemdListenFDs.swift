#if canImport(Glibc)
import Glibc
#endif
import CSystemd

/// Sockets systemd passed to this process (socket activation or the FD
/// store), with their `FileDescriptorName=` names.
public enum SystemdListenFDs {
    public struct Descriptor: Sendable, Equatable {
        public let fd: Int32
        public let name: String
    }

    /// The passed descriptors (fd 3, 4, …), or none when LISTEN_PID is not us.
    public static func take() -> [Descriptor] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let count = csd_listen_fds_with_names(&names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for index in 0..<Int(count) { free(names[index]) }
                free(names)
            }
        }
        return (0..<Int(count)).map { index in
            let fd = Int32(3 + index)
            // Keep them from leaking into children we exec; the spawner passes the ones it means to.
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let name = names?[index].map { String(cString: $0) } ?? "unknown"
            return Descriptor(fd: fd, name: name)
        }
    }
}

extension Notifier {
    /// Keeps `fd` in systemd's FD store under `name`, so it survives a
    /// restart of this service (no-op without NOTIFY_SOCKET).
    @discardableResult
    public func store(fd: Int32, name: String) -> Bool {
        var descriptor = fd
        return csd_pid_notify_with_fds(0, "FDSTORE=1\nFDNAME=\(name)", &descriptor, 1) > 0
    }
}
