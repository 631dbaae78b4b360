#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// A NOTIFY_SOCKET of the supervisor's own for one child: a datagram socket
/// with SO_PASSCRED that believes only messages from that child's pid.
public final class NotifyReceiver: Sendable {
    public let path: String
    private let fd: Int32

    public init(path: String) throws(ProcessError) {
        let fd = csup_notify_socket(path)
        guard fd >= 0 else { throw ProcessError(pid: 0, errno: errno) }
        self.path = path
        self.fd = fd
    }

    deinit {
        close(fd)
        if !path.hasPrefix("@") { unlink(path) }
    }

    /// Waits (on its own thread) until `pid` sends `READY=1`, the process
    /// exits, or `timeout` passes. Messages from other pids are ignored.
    public func waitForReady(from process: ChildProcess, timeout: Duration) async -> Bool {
        let fd = self.fd
        let deadline = ContinuousClock.now + timeout
        return await BlockingThread.run { () -> Bool in
            var buffer = [CChar](repeating: 0, count: 4096)
            while ContinuousClock.now < deadline, process.exitStatus == nil {
                var sender: Int32 = 0
                let count = csup_notify_receive(fd, &buffer, Int32(buffer.count - 1), 100, &sender)
                guard count > 0, sender == process.pid else { continue }
                let text = String(decoding: buffer[0..<Int(count)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if text.split(separator: "\n").contains("READY=1") { return true }
            }
            return false
        }
    }
}
