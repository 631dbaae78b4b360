#if canImport(Glibc)
import CSupervisorShims
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SupervisorCore
import SupervisorShared
import SystemBindings

/// HTTP/1.1 on the control unix socket (swift-nio). Each connection's peer
/// must be root or in `[control] group` (SO_PEERCRED), else 403.
public final class ControlServer: Sendable {
    public struct BindError: Error, CustomStringConvertible {
        public let description: String
    }

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    struct AcceptedConnection: Sendable {
        let channel: Connection
        let peer: PeerCredentials?
    }

    public let path: String
    private let groupID: UInt32?
    private let handler: any ControlHandling
    private let logger: Logger
    private let listener: NIOAsyncChannel<AcceptedConnection, Never>
    /// False when systemd created the socket (socket activation): not ours to unlink.
    let ownsPath: Bool
    /// The listening socket (NIO serves it; an in-place re-exec carries it).
    let fd: Int32
    static let maximumBodyBytes = 1 << 16
    /// A client gets this long to send a whole request (from connecting, or
    /// from the previous response); a slow or silent one is disconnected.
    static let requestTimeout: TimeAmount = .seconds(10)

    private init(
        path: String, groupID: UInt32?, handler: any ControlHandling, logger: Logger, listener: NIOAsyncChannel<AcceptedConnection, Never>, fd: Int32,
        ownsPath: Bool = true
    ) {
        self.ownsPath = ownsPath
        self.fd = fd
        self.path = path
        self.groupID = groupID
        self.handler = handler
        self.logger = logger
        self.listener = listener
    }

    /// Binds `path` (mode 0660, group `groupName`), refusing to take over a
    /// socket another live daemon is serving.
    public static func bind(
        path: String, groupName: String?, handler: any ControlHandling, logger: Logger
    ) async throws -> ControlServer {
        let groupID = groupName.flatMap { UserDatabase.groupID(named: $0) }
        if groupName != nil && groupID == nil {
            throw BindError(description: "control.group: no group named \"\(groupName!)\"")
        }
        try prepareSocketPath(path)
        // Bound here rather than by NIO, so the daemon knows the descriptor:
        // an in-place re-exec carries it across execve.
        unlink(path)
        let fd = csup_listen_unix(path, 128)
        guard fd >= 0 else {
            throw BindError(description: "cannot listen on \(path): \(String(cString: strerror(errno)))")
        }
        let listener: NIOAsyncChannel<AcceptedConnection, Never>
        do {
            listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(fd) { channel in Self.initializeConnection(channel) }
        } catch {
            Glibc.close(fd)
            unlink(path)
            throw BindError(description: "cannot listen on \(path): \(error)")
        }
        // The directory is root's alone (checked before bind): the socket file
        // cannot have been swapped for a symlink. Check anyway, then never follow one.
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else {
            listener.channel.close(promise: nil)
            throw BindError(description: "\(path) is not the socket just bound; refusing to change its mode")
        }
        if fchmodat(AT_FDCWD, path, 0o660, 0) != 0 || (groupID.map { lchown(path, uid_t(bitPattern: -1), $0) } ?? 0) != 0 {
            let reason = String(cString: strerror(errno))
            listener.channel.close(promise: nil)
            throw BindError(description: "cannot set the mode and group of \(path): \(reason)")
        }
        return ControlServer(path: path, groupID: groupID, handler: handler, logger: logger, listener: listener, fd: fd)
    }

    /// Serves on a listening unix socket systemd passed (socket activation),
    /// or the one a previous image of this process bound (`ownsPath`: then
    /// its path is ours to unlink). Peer credentials are still checked,
    /// whatever the unit's SocketMode.
    public static func adopt(
        fd: Int32, path: String, groupName: String?, handler: any ControlHandling, logger: Logger, ownsPath: Bool = false
    ) async throws -> ControlServer {
        let groupID = groupName.flatMap { UserDatabase.groupID(named: $0) }
        let listener: NIOAsyncChannel<AcceptedConnection, Never>
        do {
            listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(fd) { channel in Self.initializeConnection(channel) }
        } catch {
            throw BindError(description: "cannot serve the control socket systemd passed (fd \(fd)): \(error)")
        }
        return ControlServer(path: path, groupID: groupID, handler: handler, logger: logger, listener: listener, fd: fd, ownsPath: ownsPath)
    }

    /// Serves until `close()` or cancellation.
    public func run() async {
        do {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } catch {
            logger.debug("control server stopped: \(error)")
        }
    }

    /// Stops accepting and removes the socket file.
    public func close() {
        listener.channel.close(promise: nil)
        if ownsPath { unlink(path) }
    }

    private static func initializeConnection(_ channel: any Channel) -> EventLoopFuture<AcceptedConnection> {
        let credentials: EventLoopFuture<(csup_ucred, [UInt32]?)?>
        if let provider = channel as? SocketOptionProvider {
            credentials = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(CSUP_SOL_SOCKET), name: SocketOptionName(CSUP_SO_PEERCRED)
            ).flatMap { (cred: csup_ucred) in
                provider.unsafeGetSocketOption(
                    level: SocketOptionLevel(CSUP_SOL_SOCKET), name: SocketOptionName(CSUP_SO_PEERGROUPS)
                ).map { (groups: csup_peer_groups) -> (csup_ucred, [UInt32]?) in
                    let raw = withUnsafeBytes(of: groups.gids) { Array($0.bindMemory(to: UInt32.self)) }
                    return (cred, PeerCredentials.groups(fromPeerGroups: raw))
                }.recover { _ in (cred, nil) }
            }.map { Optional($0) }.recover { _ in nil }
        } else {
            credentials = channel.eventLoop.makeSucceededFuture(nil)
        }
        return credentials.flatMapThrowing { (answer: (csup_ucred, [UInt32]?)?) in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: false)
            try channel.pipeline.syncOperations.addHandler(BadRequestHandler())
            let wrapped = try Connection(wrappingChannelSynchronously: channel)
            let peer = answer.map { PeerCredentials(pid: $0.0.pid, uid: $0.0.uid, gid: $0.0.gid, groups: $0.1) }
            return AcceptedConnection(channel: wrapped, peer: peer)
        }
    }

    private func serve(_ connection: AcceptedConnection) async {
        let authorized = connection.peer?.isAuthorized(group: groupID) ?? false
        let channel = connection.channel.channel
        let logger = self.logger
        func armDeadline() -> Scheduled<Void> {
            channel.eventLoop.scheduleTask(in: Self.requestTimeout) {
                logger.info("closing a control connection that sent no complete request within \(Self.requestTimeout)")
                channel.close(promise: nil)
            }
        }
        var deadline = armDeadline()
        defer { deadline.cancel() }
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body: [UInt8] = []
                var tooLarge = false
                for try await part in inbound {
                    switch part {
                    case .head(let requestHead):
                        head = requestHead
                        body = []
                        tooLarge = false
                    case .body(let buffer):
                        if body.count + buffer.readableBytes > Self.maximumBodyBytes {
                            tooLarge = true
                        } else {
                            body.append(contentsOf: buffer.readableBytesView)
                        }
                    case .end:
                        deadline.cancel()
                        guard let requestHead = head else { continue }
                        let response: ControlResponse
                        if !authorized {
                            let who = connection.peer.map { peer in
                                UserDatabase.userName(uid: peer.uid).map { "user \($0) (uid \(peer.uid))" } ?? "uid \(peer.uid)"
                            } ?? "an unknown peer"
                            let group = groupID.map { gid in
                                "does not hold the control group \(UserDatabase.groupName(gid: gid).map { "\($0) (gid \(gid))" } ?? "gid \(gid)")"
                            } ?? "no [control] group is configured, so only root may use this socket"
                            logger.warning("refused control request from \(who)", metadata: ["path": "\(requestHead.uri)"])
                            response = .error(ControlError(.forbidden, "\(who) is not root and \(group)"))
                        } else if tooLarge {
                            response = .error(ControlError(.badRequest, "request body larger than \(Self.maximumBodyBytes) bytes"))
                        } else {
                            let request = ControlRequest(
                                method: requestHead.method.rawValue,
                                path: requestHead.uri, body: body, peer: connection.peer)
                            response = await handler.handle(request)
                        }
                        let keepAlive = requestHead.isKeepAlive && authorized
                        try await write(response, version: requestHead.version, keepAlive: keepAlive, to: outbound)
                        if !keepAlive { return }
                        head = nil
                        deadline = armDeadline()
                    }
                }
            }
        } catch {
            logger.debug("control connection ended: \(error)")
        }
    }

    private func write(
        _ response: ControlResponse, version: HTTPVersion, keepAlive: Bool,
        to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>
    ) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        switch response.body {
        case .full(let bytes):
            headers.add(name: "Content-Length", value: String(bytes.count))
            try await outbound.write(.head(HTTPResponseHead(version: version, status: .init(statusCode: response.status), headers: headers)))
            try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: bytes))))
            try await outbound.write(.end(nil))
        case .stream(let chunks):
            try await outbound.write(.head(HTTPResponseHead(version: version, status: .init(statusCode: response.status), headers: headers)))
            for await chunk in chunks {
                try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: chunk))))
            }
            try await outbound.write(.end(nil))
        }
    }

    /// Creates the socket's directory and refuses to replace a live socket.
    static func prepareSocketPath(_ path: String) throws {
        if let problem = SocketDirectory.problem(socketPath: path) {
            throw StartRefused(description: "control.socket: \(problem)")
        }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            let directory = String(path[..<slash])
            var info = stat()
            if stat(directory, &info) != 0 {
                try makeDirectories(directory)
                // Whatever was there by the time mkdir ran is judged as well.
                if let problem = SocketDirectory.problem(socketPath: path) {
                    throw StartRefused(description: "control.socket: \(problem)")
                }
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw BindError(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        if SocketProbe.isAccepting(unixPath: path) {
            throw BindError(description: "another process is already serving \(path) (is supervisord for this service already running?)")
        }
    }

    static func makeDirectories(_ directory: String) throws {
        var current = ""
        for component in directory.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw BindError(description: "cannot create \(current): \(String(cString: strerror(errno)))")
            }
        }
    }
}
