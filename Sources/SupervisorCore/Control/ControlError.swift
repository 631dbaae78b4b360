/// The envelope of every failed control response:
/// `{"ok":false,"error":{"code":"…","message":"…"}}`.
public struct ControlFailure: Codable, Sendable, Equatable {
    public let ok: Bool
    public let error: SupervisorError
    public init(_ error: SupervisorError) {
        self.ok = false
        self.error = error
    }
}
