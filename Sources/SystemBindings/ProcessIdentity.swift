#if canImport(Glibc)
import Glibc
#endif

/// Who a pid is, from /proc: its start time (clock ticks after boot, which
/// survives exec and tells a reused pid apart), the boot it belongs to, and
/// its executable (for messages only: a file renamed or replaced under a
/// running process changes its `/proc/PID/exe`, never who it is).
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
        guard let stat = ProcessTable.stat(of: pid) else { return nil }
        return ProcessIdentity(pid: pid, startTime: stat.startTime, executable: executable(of: pid))
    }

    /// Whether `pid` is still the very process this identity was taken from:
    /// same start time, and (when the record has one) the same boot. Not by
    /// the path of its executable: the commit renames `<binary>` under the
    /// old instance, an emergency rollback exchanges it, a package manager
    /// writes over it; the process stays the same.
    public func isStillRunning(bootID recordedBoot: String? = nil) -> Bool {
        guard let now = ProcessIdentity.of(pid: pid) else { return false }
        if let recordedBoot, let currentBoot = Self.bootID, recordedBoot != currentBoot { return false }
        return now.startTime == startTime
    }

    /// This boot's id (`/proc/sys/kernel/random/boot_id`): a start time is counted from boot.
    public static let bootID: String? = readText("/proc/sys/kernel/random/boot_id").map { String($0.filter { !$0.isWhitespace }) }

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

    /// A /proc file's text (read to EOF: /proc files report size 0).
    public static func readText(_ path: String) -> String? {
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

/// Processes as /proc shows them.
public enum ProcessTable {
    /// The parts of /proc/PID/stat we use, for a live (non-zombie) process.
    public static func stat(of pid: Int32) -> (parent: Int32, startTime: UInt64)? {
        guard pid > 0, let stat = ProcessIdentity.readText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // After the command name: state (field 3), parent (4), …, start time (22).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X",
            let parent = Int32(fields[1]), let start = UInt64(fields[19])
        else { return nil }
        return (parent, start)
    }

    /// When `pid` started, in seconds since the epoch: the boot time (`btime`
    /// in /proc/stat) plus its start time in clock ticks.
    public static func startedAt(pid: Int32) -> Double? {
        guard let start = stat(of: pid)?.startTime, let text = ProcessIdentity.readText("/proc/stat"),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
            let boot = Double(line.dropFirst("btime ".count))
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ticks > 0 ? boot + Double(start) / ticks : nil
    }

    /// Now, in the unit of /proc/PID/stat's start time: clock ticks since boot.
    public static func ticksSinceBoot() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_BOOTTIME, &now)
        let hertz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        return UInt64(now.tv_sec) * hertz + UInt64(now.tv_nsec) * hertz / 1_000_000_000
    }

    /// The live children of `parent`.
    public static func children(of parent: Int32) -> Set<Int32> {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var result: Set<Int32> = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let pid = Int32(name), stat(of: pid)?.parent == parent { result.insert(pid) }
        }
        return result
    }
}
