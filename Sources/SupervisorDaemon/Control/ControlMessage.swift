import Foundation
import SupervisorCore
import SupervisorShared
import SystemBindings

/// One request on the control socket.
public struct ControlRequest: Sendable {
    public let method: String
    public let path: String
    public let body: [UInt8]
    public let peer: PeerCredentials?
}

/// One answer: a whole body, or NDJSON lines streamed as they happen.
public struct ControlResponse: Sendable {
    public enum Body: Sendable {
        case full([UInt8])
        case stream(AsyncStream<[UInt8]>)
    }

    public let status: Int
    public let contentType: String
    public let body: Body

    public init(status: Int, contentType: String = "application/json", body: Body) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func json<T: Encodable>(_ value: T, status: Int = 200) -> ControlResponse {
        ControlResponse(status: status, body: .full(ControlJSON.encode(value) + [UInt8(ascii: "\n")]))
    }

    public static func error(_ error: ControlError) -> ControlResponse {
        json(ControlFailure(error), status: error.httpStatus)
    }
}

/// Answers control requests; the server calls it once per request.
public protocol ControlHandling: Sendable {
    func handle(_ request: ControlRequest) async -> ControlResponse
}

/// The one JSON style of everything the supervisor writes (responses, NDJSON
/// lines, state.json, history.jsonl, `--json` output): sorted keys, no escaped slashes.
