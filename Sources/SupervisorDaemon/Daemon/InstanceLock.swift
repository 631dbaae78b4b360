#if canImport(Glibc)
import Glibc
#endif
import SupervisorShared

/// Another `supervisord` holds this service's lock: this one exits 2
/// (`supervisord` recognises this error) having read and changed nothing.
public struct DaemonAlreadyRunning: Error, CustomStringConvertible {
    public let lockPath: String
    /// The pid written in the lock file, when it could be read.
    public let holder: Int32?

    public var description: String {
        "another supervisord (pid \(holder.map(String.init) ?? "unknown")) is already running for this service (lock \(lockPath)); not starting"
    }
}

/// One daemon per service: `<state_dir>/supervisord.lock`, held with
/// flock(LOCK_EX) for the daemon's whole life and holding its pid. A second
/// `supervisord` for the same config (started by hand during a swap, say)
/// finds it held and exits before it reads the journal or touches any file
/// or socket. The kernel drops the lock when the process dies, however it
/// dies: a stale file never blocks a restart.
enum InstanceLock {
    static func path(stateDirectory: String) -> String { DaemonLock.path(stateDirectory: stateDirectory) }

    /// Takes the lock, or throws `DaemonAlreadyRunning` (`StartError` when the
    /// file cannot be opened or locked). The descriptor is never closed:
    /// closing it would release the lock; the process's exit does.
    @discardableResult
    static func acquire(stateDirectory: String) throws -> Int32 {
        let path = path(stateDirectory: stateDirectory)
        // O_CLOEXEC: no app or hook inherits it (the spawner closes every fd
        // anyway). A re-exec in place (SIGHUP) keeps it across execve instead
        // (`InPlaceReexec`), rather than unlock and relock: a second daemon
        // could slip in between.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            throw StartError(description: "cannot open the lock \(path): \(String(cString: strerror(errno)))")
        }
        var result: Int32
        repeat { result = flock(fd, LOCK_EX | LOCK_NB) } while result != 0 && errno == EINTR
        guard result == 0 else {
            let reason = errno
            let holder = readPID(fd)
            close(fd)
            if reason == EWOULDBLOCK { throw DaemonAlreadyRunning(lockPath: path, holder: holder) }
            throw StartError(description: "cannot lock \(path): \(String(cString: strerror(reason)))")
        }
        // The pid is only for a second daemon's message: a failure here is not fatal.
        DaemonLock.recordHolder(fd: fd)
        return fd
    }

    /// The lock a previous image of this process held, handed over by a
    /// re-exec: it must still be this service's lock file, and still ours
    /// (flock on the same open file succeeds again).
    static func adopt(fd: Int32, stateDirectory: String) throws {
        let path = path(stateDirectory: stateDirectory)
        var held = stat(), named = stat()
        guard fstat(fd, &held) == 0, stat(path, &named) == 0, held.st_dev == named.st_dev, held.st_ino == named.st_ino else {
            throw StartError(description: "the lock handed over by the previous image (fd \(fd)) is not \(path)")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw StartError(description: "the lock handed over by the previous image (fd \(fd)) is not held: \(String(cString: strerror(errno)))")
        }
    }

    static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = pread(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[0..<count].prefix { $0 >= 0x30 && $0 <= 0x39 }, as: UTF8.self))
    }
}
