#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A test-owned NOTIFY_SOCKET: a unix datagram socket collecting what the
/// daemon sends, as systemd would receive it.
final class NotifyListener: @unchecked Sendable {
    let directory = TemporaryDirectory("notify")
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var messages: [String] = []
    private var closed = false

    init() throws {
        path = directory.file("notify.sock")
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let rc = unixSocket(fd, bind, path: path)
        guard rc == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EINVAL) }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in receiveLoop() }
        thread.start()
    }

    deinit {
        lock.withLock { closed = true }
        usleep(150_000)
        close(fd)
    }

    private func receiveLoop() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !lock.withLock({ closed }) {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 {
                let text = String(decoding: buffer[0..<count], as: UTF8.self)
                lock.withLock { messages.append(text) }
            }
        }
    }

    var received: [String] { lock.withLock { messages } }
}
