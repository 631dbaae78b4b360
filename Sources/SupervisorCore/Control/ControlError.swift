/// An error answered by the control API: a code a script can match and a
/// message a person can act on. Rendered as
/// `{"ok":false,"error":{"code":"…","message":"…"}}`.
public struct ControlError: Error, Codable, Sendable, Equatable {
    public struct Code: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let badRequest = Code(rawValue: "bad_request")
        public static let notFound = Code(rawValue: "not_found")
        public static let methodNotAllowed = Code(rawValue: "method_not_allowed")
        public static let forbidden = Code(rawValue: "forbidden")
        public static let busy = Code(rawValue: "busy")
    }

    public let code: Code
    public let message: String
    /// With `busy`: the phase the running operation is in.
    public let phase: String?

    public init(_ code: Code, _ message: String, phase: String? = nil) {
        self.code = code
        self.message = message
        self.phase = phase
    }

    /// The HTTP status the control API answers this error with.
    public var httpStatus: Int {
        switch code {
        case .badRequest: 400
        case .forbidden: 403
        case .notFound: 404
        case .methodNotAllowed: 405
        case .busy: 409
        case Code(rawValue: "no_backup"), Code(rawValue: "not_running"): 409
        default: 422
        }
    }
}

/// The envelope of every failed control response.
public struct ControlFailure: Codable, Sendable, Equatable {
    public let ok: Bool
    public let error: ControlError
    public init(_ error: ControlError) {
        self.ok = false
        self.error = error
    }
}
