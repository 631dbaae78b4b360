#if canImport(Glibc)
import Glibc
#endif

/// Arguments baked into a copy of the demo-app file itself, so a version of
/// the app is one ELF (as users' Go/Rust/Swift services are) rather than a
/// shell wrapper: `/proc/PID/exe` then follows renames of the file exactly as
/// it does for theirs, and each version has its own sha256.
///
/// A copy is made a version by appending one trailer line to the ELF (the
/// loader ignores bytes past the last section):
///
///     cp demo-app v2 && printf '\n#demo-app-args: --version-tag v2 --start-delay-ms 500\n' >> v2
///
/// The baked arguments come before the command line's, which override them.
enum BakedArguments {
    static let marker = "\n#demo-app-args:"

    /// The arguments baked into the running executable (read through
    /// /proc/self/exe, which names the file that was exec'd even after it was
    /// renamed or replaced on disk).
    static func ofRunningExecutable() -> [String] {
        let fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return [] }
        let tail = min(Int(size), 1024)
        var buffer = [UInt8](repeating: 0, count: tail)
        guard pread(fd, &buffer, tail, off_t(Int(size) - tail)) == tail else { return [] }
        return parse(trailer: buffer)
    }

    /// The words after the last marker, up to the final newline.
    static func parse(trailer: [UInt8]) -> [String] {
        let marker = Array(marker.utf8)
        guard trailer.count >= marker.count, trailer.last == UInt8(ascii: "\n") else { return [] }
        var start: Int?
        var index = trailer.count - marker.count
        while index >= 0 {
            if Array(trailer[index..<index + marker.count]) == marker {
                start = index + marker.count
                break
            }
            index -= 1
        }
        guard let start else { return [] }
        let line = trailer[start..<(trailer.count - 1)]
        guard !line.contains(UInt8(ascii: "\n")) else { return [] }
        return String(decoding: line, as: UTF8.self).split(separator: " ").map(String.init)
    }
}
