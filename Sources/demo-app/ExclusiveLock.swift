#if canImport(Glibc)
import Glibc
#endif

/// `--lock-file`: an exclusive `flock` held for the life of the process, the
/// way SQLite writers, DuckDB or a pid-file guard keep a second instance out.
/// The holder's pid is written into the file for the refusal message.
enum ExclusiveLock {
    /// Held open (never closed) once taken: the lock goes with the process.
    nonisolated(unsafe) private static var heldDescriptor: Int32 = -1

    static func take(_ path: String) -> Result<Void, String> {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return .failure("cannot open the lock file \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "is locked by another instance" : "cannot be locked: \(String(cString: strerror(errno)))"
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = read(fd, &buffer, buffer.count)
            let holder = count > 0 ? String(decoding: buffer[..<count], as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init) ?? "" : ""
            close(fd)
            return .failure("\(path) \(reason)\(holder.isEmpty ? "" : " (pid \(holder))"); only one instance may run at a time")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { pwrite(fd, $0, strlen($0), 0) }
        heldDescriptor = fd
        return .success(())
    }
}
