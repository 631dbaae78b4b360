import Foundation
import NIOCore
import NIOHTTP1

/// Answers `/` with the version and `/health` with the health JSON.
/// Keep-alive and draining (`Connection: close` on the last response) are
/// handled by NIO's `HTTPServerPipelineHandler` in front of it.
final class DemoHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let versionTag: String
    private let failHealth: Bool
    private let responseDelay: TimeAmount
    private let healthExtra: String
    /// When set, /health fails from this moment on.
    private let unhealthyFrom: NIODeadline?
    private let drainer: DrainController?
    /// `--schema-from-sqlite`: the database whose user_version /health reports as db_migration.
    private let schemaDatabase: String?
    private var request: HTTPRequestHead?

    init(
        versionTag: String, failHealth: Bool, responseDelay: TimeAmount, healthFields: [(String, String)] = [], unhealthyFrom: NIODeadline? = nil,
        drainer: DrainController? = nil, schemaDatabase: String? = nil
    ) {
        self.schemaDatabase = schemaDatabase
        self.unhealthyFrom = unhealthyFrom
        self.drainer = drainer
        self.healthExtra = healthFields.map { ",\"\(Self.escape($0.0))\":\"\(Self.escape($0.1))\"" }.joined()
        self.versionTag = versionTag
        self.failHealth = failHealth
        self.responseDelay = responseDelay
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            let (status, body, contentType) = answer(head)
            if responseDelay > .zero && head.uri == "/" {
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: responseDelay) {
                    let (handler, context) = loopBound.value
                    handler.respond(context: context, head: head, status: status, body: body, contentType: contentType)
                }
            } else {
                respond(context: context, head: head, status: status, body: body, contentType: contentType)
            }
        }
    }

    private func answer(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, String) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch path {
        case "/":
            return (.ok, "demo-app \(versionTag)\n", "text/plain")
        case "/health":
            let healthExtra = self.healthExtra + (schemaDatabase.map { ",\"db_migration\":\"\(SQLiteHeader.userVersion(of: $0).map(String.init) ?? "unreadable")\"" } ?? "")
            if failHealth || (unhealthyFrom.map { NIODeadline.now() >= $0 } ?? false) {
                return (.serviceUnavailable, #"{"status":"failing","version":"\#(versionTag)""# + healthExtra + "}\n", "application/json")
            }
            return (.ok, #"{"status":"ok","version":"\#(versionTag)""# + healthExtra + "}\n", "application/json")
        default:
            return (.notFound, "not found\n", "text/plain")
        }
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }

    private func respond(
        context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus,
        body: String, contentType: String
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        headers.add(name: "X-Version", value: versionTag)
        let keepAlive = head.isKeepAlive && !(drainer?.isDraining ?? false)
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        }
        let responseHead = HTTPResponseHead(version: head.version, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
