#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// Opens a file with someone else's rights: in a short-lived child that
/// takes their uid, gid and groups and hands the descriptor back, so a
/// daemon running as root reads only what its caller could read itself.
public enum FileOpener {
    public enum Opened: Sendable {
        /// A regular file, open for reading.
        case regular(Int32)
        /// Something else (FIFO, device, socket, directory); the descriptor
        /// (O_PATH) only tells what: nothing was opened for reading.
        case notRegular(kind: mode_t, descriptor: Int32)
    }

    /// `as: nil` opens with this process's own rights. Never blocks on a FIFO;
    /// an open as someone else that hangs (a stuck mount) fails with ETIMEDOUT.
    public static func open(_ path: String, as credentials: ProcessCredentials?, timeout: Duration = .seconds(10)) -> Result<Opened, Errno> {
        var error: Int32 = 0
        let milliseconds = Int32(clamping: HTTPRequest.milliseconds(timeout))
        let fd: Int32 =
            if let credentials {
                credentials.withC { csup_open_as(path, $0, milliseconds, &error) }
            } else {
                csup_open_as(path, nil, milliseconds, &error)
            }
        guard fd >= 0 else { return .failure(Errno(error)) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let failure = errno
            close(fd)
            return .failure(Errno(failure))
        }
        let kind = info.st_mode & S_IFMT
        return .success(kind == S_IFREG ? .regular(fd) : .notRegular(kind: kind, descriptor: fd))
    }

    public struct Errno: Error, Sendable, Equatable {
        public let code: Int32
        public init(_ code: Int32) { self.code = code }
        public var description: String { String(cString: strerror(code)) }
    }
}
