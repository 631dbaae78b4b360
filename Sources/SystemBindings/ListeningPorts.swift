#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// Who listens on a TCP port: the listening sockets from sock_diag (this
/// network namespace), then the processes holding one of them in /proc/PID/fd. Processes of other users are only
/// seen by root (the daemon runs as root).
public enum ListeningPorts {
    /// The pids holding a listening socket on `port`, on any address, lowest first.
    public static func holders(of port: Int) -> [Int32] {
        let inodes = listeningInodes(port: port)
        guard !inodes.isEmpty, let proc = opendir("/proc") else { return [] }
        defer { closedir(proc) }
        var pids: [Int32] = []
        while let entry = readdir(proc) {
            guard let pid = Int32(name(of: entry)), pid > 0 else { continue }
            if holdsSocket(pid: pid, inodes: inodes) { pids.append(pid) }
        }
        return pids.sorted()
    }

    /// Inodes of the listening sockets whose local port is `port` (sock_diag:
    /// the kernel filters by state, so thousands of TIME_WAIT sockets cost nothing).
    static func listeningInodes(port: Int) -> Set<String> {
        guard let port = UInt16(exactly: port) else { return [] }
        var inodes = [UInt32](repeating: 0, count: 64)
        let count = Int(csup_tcp_listening_inodes(port, &inodes, Int32(inodes.count)))
        guard count > 0 else { return [] }
        return Set(inodes.prefix(min(count, inodes.count)).map { String($0) })
    }

    static func holdsSocket(pid: Int32, inodes: Set<String>) -> Bool {
        let directory = "/proc/\(pid)/fd"
        guard let fds = opendir(directory) else { return false }
        defer { closedir(fds) }
        var buffer = [CChar](repeating: 0, count: 256)
        while let entry = readdir(fds) {
            let fd = name(of: entry)
            guard fd.first?.isNumber == true else { continue }
            let count = readlink("\(directory)/\(fd)", &buffer, buffer.count - 1)
            guard count > 9 else { continue }
            let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // "socket:[12345]"
            if target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) { return true }
        }
        return false
    }

    static func name(of entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

extension ProcessIdentity {
    /// The process's argv from /proc/PID/cmdline (empty for a kernel thread or a process gone).
    public static func arguments(of pid: Int32) -> [String] {
        guard let bytes = readBytes("/proc/\(pid)/cmdline") else { return [] }
        return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// /proc/PID/exe: the file the process runs ("PATH (deleted)" once replaced).
    public static func executablePath(of pid: Int32) -> String? {
        executable(of: pid)
    }
}
