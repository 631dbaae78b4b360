/// The steps of a swap (DESIGN.md, "The swap, step by step"), in order.
public enum SwapPhase: String, Sendable, Codable, CaseIterable {
    case stage
    case preflight
    case start
    case health
    case `switch`
    case drain
    case stop
    case commit
    /// Warm hold after a swap: the old instance kept alive out of rotation.
    case watch
    /// Undoing a failed swap: proxy back, new instance stopped, `.new` removed.
    case revert
    /// Inside the warm hold: the proxy goes back to the warm old instance,
    /// `<binary>` and `<binary>.bak` trade places, the new instance stops.
    case flip
    case done
}

/// `swap`, `rollback` (a swap to `<binary>.bak`), `auto-rollback`.
public enum SwapAction: String, Sendable, Codable {
    case swap
    case rollback
    case autoRollback = "auto-rollback"
    /// `rollback --emergency`: files exchanged and the unit restarted, without the daemon.
    case emergencyRollback = "emergency-rollback"
}
