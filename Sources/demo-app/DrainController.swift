import NIOConcurrencyHelpers
import NIOCore

/// Graceful drain for demo-app: on SIGTERM the listener closes (the
/// supervisor's shared socket stays open in the other holders), every
/// connection's next response carries `Connection: close` and closes it, and
/// connections that stay idle for `idleGrace` are closed; then the process exits.
/// Unlike closing idle keep-alive connections at once, this never races a
/// client that is just sending its next request.
final class DrainController: Sendable {
    private let state = NIOLockedValueBox(State())

    private struct State {
        var draining = false
        var channels: [ObjectIdentifier: Channel] = [:]
        var onEmpty: (@Sendable () -> Void)?
    }

    var isDraining: Bool { state.withLockedValue { $0.draining } }

    func register(_ channel: Channel) {
        let key = ObjectIdentifier(channel)
        state.withLockedValue { $0.channels[key] = channel }
        channel.closeFuture.whenComplete { _ in self.unregister(key) }
    }

    private func unregister(_ key: ObjectIdentifier) {
        let callback = state.withLockedValue { state -> (@Sendable () -> Void)? in
            state.channels[key] = nil
            return state.draining && state.channels.isEmpty ? state.onEmpty : nil
        }
        callback?()
    }

    /// Starts draining; `done` runs once every connection is closed.
    func drain(idleGrace: TimeAmount, eventLoop: EventLoop, done: @escaping @Sendable () -> Void) {
        let empty = state.withLockedValue { state -> Bool in
            state.draining = true
            state.onEmpty = done
            return state.channels.isEmpty
        }
        if empty {
            done()
            return
        }
        eventLoop.scheduleTask(in: idleGrace) {
            let remaining = self.state.withLockedValue { Array($0.channels.values) }
            for channel in remaining { channel.close(promise: nil) }
        }
    }
}
