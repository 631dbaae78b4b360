#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Accepts on a listening socket that other processes accept on too (the
/// supervisor's socket in handoff mode, shared by the old and the new
/// instance during a swap), and hands each connection to NIO.
///
/// Why not `ServerBootstrap.withBoundSocket`: when two processes poll one
/// listening socket, both wake for a connection and only one gets it; the
/// other's accept() says EAGAIN. That is normal, but NIO's server channel
/// asserts that a readable socket yields something, so a debug build of an
/// NIO server trips over it (release builds do not check). Here EAGAIN is
/// simply another turn of the loop.
final class SharedSocketAcceptor: Sendable {
    private let listenFD: Int32
    private let stopping = NIOLockedValueBox(false)
    private let finished = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)
    /// Accepted connections NIO has not registered yet.
    private let handingOver = NIOLockedValueBox(0)

    init(listenFD: Int32, group: EventLoopGroup, initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>) {
        self.listenFD = listenFD
        let flags = fcntl(listenFD, F_GETFL)
        _ = fcntl(listenFD, F_SETFL, flags | O_NONBLOCK)
        DispatchQueue(label: "demo-app.accept").async {
            self.run(ClientBootstrap(group: group).channelOption(.tcpOption(.tcp_nodelay), value: 1).channelInitializer(initializer))
        }
    }

    /// Stops accepting (connections already accepted go on), then `done`.
    func stop(_ done: @escaping @Sendable () -> Void) {
        finished.withLockedValue { $0 = done }
        stopping.withLockedValue { $0 = true }
    }

    private func run(_ bootstrap: ClientBootstrap) {
        var poller = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
        while !stopping.withLockedValue({ $0 }) {
            poller.revents = 0
            guard poll(&poller, 1, 50) > 0 else { continue }
            let connection = accept(listenFD, nil, nil)
            if connection < 0 { continue }  // EAGAIN: the other process took it
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
            handingOver.withLockedValue { $0 += 1 }
            bootstrap.withConnectedSocket(connection).whenComplete { result in
                if case .failure = result { close(connection) }
                self.handingOver.withLockedValue { $0 -= 1 }
            }
        }
        close(listenFD)  // our reference only: the socket stays open for the other holders
        // Every accepted connection is registered (and so drained) before `done`.
        for _ in 0..<2000 where handingOver.withLockedValue({ $0 }) > 0 { usleep(1000) }
        finished.withLockedValue { $0 }?()
    }
}
