import NIOConcurrencyHelpers

/// Connects the signal handlers, installed before the app listens, to the
/// drain, which exists only once it listens: a signal that arrives in between
/// is remembered and acted on when the drain is armed, never lost.
final class DrainTrigger: Sendable {
    private struct State {
        var action: (@Sendable () -> Void)?
        var pending = false
    }

    private let state = NIOLockedValueBox(State())

    /// A stop signal arrived: drain now, or as soon as `arm` is called.
    func fire() {
        let action = state.withLockedValue { state -> (@Sendable () -> Void)? in
            if state.action == nil { state.pending = true }
            return state.action
        }
        action?()
    }

    /// The drain exists: run it for every later signal, and now if one came already.
    func arm(_ action: @escaping @Sendable () -> Void) {
        let pending = state.withLockedValue { state -> Bool in
            state.action = action
            defer { state.pending = false }
            return state.pending
        }
        if pending { action() }
    }
}
