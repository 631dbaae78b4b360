#if canImport(Glibc)
import Glibc
#endif

/// Who a pid is, from /proc: its start time (clock ticks after boot, which
/// survives exec and tells a reused pid apart) and its executable.
public struct ProcessIdentity: Sendable, Equatable, Codable {
    public let pid: Int32
    public let startTime: UInt64
    public let executable: String?

    public init(pid: Int32, startTime: UInt64, executable: String?) {
        self.pid = pid
        self.startTime = startTime
        self.executable = executable
    }

    /// The identity of a live (non-zombie) process, or nil.
    public static func of(pid: Int32) -> ProcessIdentity? {
        guard pid > 0, let stat = readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3 of stat); the start time is field 22.
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X", let start = UInt64(fields[19]) else { return nil }
        return ProcessIdentity(pid: pid, startTime: start, executable: executable(of: pid))
    }

    /// Whether `pid` is still the very process this identity was taken from.
    public func isStillRunning() -> Bool {
        guard let now = ProcessIdentity.of(pid: pid) else { return false }
        return now.startTime == startTime && (executable == nil || now.executable == executable)
    }

    static func executable(of pid: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether the process's environment has `entry` (e.g. "PORT=8082").
    public static func environment(of pid: Int32, contains entry: String) -> Bool {
        guard let bytes = readBytes("/proc/\(pid)/environ") else { return false }
        return bytes.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == entry }
    }

    static func readText(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            result.append(contentsOf: buffer[0..<count])
        }
        return result
    }
}
