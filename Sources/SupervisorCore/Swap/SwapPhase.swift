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

/// `swap`, `rollback` (a swap to `<binary>.bak`), `auto-rollback`, `restart`.
public enum SwapAction: String, Sendable, Codable {
    case swap
    case rollback
    /// `supervisorctl restart`: the same binary through the swap's gates (side
    /// port, health, switch, drain), with `[app]` as the config file has it
    /// now; `<binary>.bak` is left as it is.
    case restart
    case autoRollback = "auto-rollback"
    /// `rollback --emergency`: files exchanged and the unit restarted, without the daemon.
    case emergencyRollback = "emergency-rollback"

    /// A rollback of any kind (its hooks are `on_rollback`).
    public var isRollback: Bool { self == .rollback || self == .autoRollback || self == .emergencyRollback }
}
