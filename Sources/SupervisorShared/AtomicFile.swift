#if canImport(Glibc)
import Glibc
#endif

/// Whole-file writes that a crash never leaves half done: temp file in the
/// same directory, fsync, rename over the target, fsync the directory.
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible {
        public let path: String
        public let step: String
        public let errno: Int32
        public var description: String { "\(step) \(path): \(String(cString: strerror(errno)))" }
    }

    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(Failure) {
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure(path: temporary, step: "cannot create", errno: errno) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let saved = errno
                close(fd)
                unlink(temporary)
                throw Failure(path: temporary, step: "cannot write", errno: saved)
            }
            offset += written
        }
        fchmod(fd, mode)
        if fsync(fd) != 0 {
            let saved = errno
            close(fd)
            unlink(temporary)
            throw Failure(path: temporary, step: "cannot fsync", errno: saved)
        }
        close(fd)
        if rename(temporary, path) != 0 {
            let saved = errno
            unlink(temporary)
            throw Failure(path: path, step: "cannot rename into", errno: saved)
        }
        syncDirectory(of: path)
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws(Failure) {
        try write(Array(text.utf8), to: path, mode: mode)
    }

    /// The file's bytes, or nil when it does not exist or cannot be read.
    public static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = Glibc.read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return nil }
            if count == 0 { return bytes }
            bytes.append(contentsOf: buffer[0..<count])
        }
    }

    /// The last `bytes` bytes of a file (all of it when shorter).
    public static func readTail(_ path: String, bytes: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        guard size >= 0 else { return nil }
        let start = max(0, Int(size) - bytes)
        var buffer = [UInt8](repeating: 0, count: Int(size) - start)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
        guard count >= 0 else { return nil }
        return Array(buffer.prefix(count))
    }

    /// Appends one line with O_APPEND and fsyncs (the history journal).
    /// A torn last line (bytes without their final newline, left by a full
    /// disk or a crash mid-write) is ended first, so it stays one unreadable
    /// line of its own instead of swallowing this one.
    public static func appendLine(_ line: String, to path: String) throws(Failure) {
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Failure(path: path, step: "cannot open", errno: errno) }
        defer { close(fd) }
        let healing = endsWithoutNewline(fd) ? "\n" : ""
        let bytes = Array((healing + line + "\n").utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written != bytes.count { throw Failure(path: path, step: "cannot append to", errno: errno) }
        fsync(fd)
    }

    /// Whether the file is non-empty and its last byte is not a newline.
    static func endsWithoutNewline(_ fd: Int32) -> Bool {
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return false }
        var last: UInt8 = 0
        return pread(fd, &last, 1, size - 1) == 1 && last != UInt8(ascii: "\n")
    }

    public static func syncDirectory(of path: String) {
        let directory = directoryName(path)
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    public static func directoryName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func makeDirectories(_ directory: String, mode: mode_t = 0o755) throws(Failure) {
        var current = ""
        for component in directory.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw Failure(path: current, step: "cannot create", errno: errno)
            }
        }
    }
}
