#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization
import SystemBindings

/// `GET /metrics` over TCP on `[metrics] listen`, for Prometheus (swift-nio).
/// Read-only and unauthenticated, like any exporter: bind it to loopback or a
/// network only your monitoring reaches. Everything else is on the control
/// socket.
public final class MetricsServer: Sendable {
    public struct BindError: Error, CustomStringConvertible {
        public let description: String
    }

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    public let address: String
    private let page: @Sendable () async -> String
    private let logger: Logger
    private let listener: NIOAsyncChannel<Connection, Never>
    private let open = Mutex(0)
    static let requestTimeout: TimeAmount = .seconds(10)
    /// Scrapers are few: more connections at once are closed unanswered, so
    /// a flood cannot take the daemon's file descriptors.
    static let maximumConnections = 16

    private init(address: String, page: @escaping @Sendable () async -> String, logger: Logger, listener: NIOAsyncChannel<Connection, Never>) {
        self.address = address
        self.page = page
        self.logger = logger
        self.listener = listener
    }

    /// Listens on `address` (`host:port`); `page` renders the metrics text per scrape.
    public static func bind(address: String, logger: Logger, page: @escaping @Sendable () async -> String) async throws -> MetricsServer {
        let fd: Int32
        do {
            fd = try ListeningSocket.open(address)
        } catch {
            throw BindError(description: "metrics.listen: cannot listen on \(address): \(String(cString: strerror(error.errno)))")
        }
        do {
            let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(fd) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
            return MetricsServer(address: address, page: page, logger: logger, listener: listener)
        } catch {
            Glibc.close(fd)
            throw BindError(description: "metrics.listen: cannot serve \(address): \(error)")
        }
    }

    /// Serves until `close()` or cancellation.
    public func run() async {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        let admitted = open.withLock { count in
                            guard count < Self.maximumConnections else { return false }
                            count += 1
                            return true
                        }
                        guard admitted else {
                            connection.channel.close(promise: nil)
                            continue
                        }
                        group.addTask {
                            await self.serve(connection)
                            self.open.withLock { $0 -= 1 }
                        }
                    }
                }
            }
        } catch {
            // An accept error (out of file descriptors, say) ends the listener; the daemon goes on.
            logger.error("metrics server on \(address) stopped: \(error); /metrics stays on the control socket")
        }
    }

    public func close() { listener.channel.close(promise: nil) }

    /// One request per connection (`Connection: close`), within `requestTimeout`.
    private func serve(_ connection: Connection) async {
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: Self.requestTimeout) { channel.close(promise: nil) }
        defer { deadline.cancel() }
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case .head(let requestHead): head = requestHead
                    case .body: continue
                    case .end:
                        guard let head else { return }
                        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                        let (status, body): (HTTPResponseStatus, String) =
                            switch (head.method, path) {
                            case (.GET, "/metrics"): (.ok, await page())
                            case (_, "/metrics"): (.methodNotAllowed, "GET /metrics only\n")
                            default: (.notFound, "only /metrics is served here (the rest is on the control socket)\n")
                            }
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8")
                        headers.add(name: "Content-Length", value: String(body.utf8.count))
                        headers.add(name: "Connection", value: "close")
                        try await outbound.write(.head(HTTPResponseHead(version: head.version, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                        try await outbound.write(.end(nil))
                        return
                    }
                }
            }
        } catch {
            logger.debug("metrics connection ended: \(error)")
        }
    }
}

/// Serves `[metrics] listen` until shutdown.
struct MetricsService: Service {
    let server: MetricsServer

    func run() async throws {
        await withGracefulShutdownHandler {
            await server.run()
        } onGracefulShutdown: {
            server.close()
        }
    }
}
