import SupervisorCore
import SupervisorShared
import SystemBindings

/// Takes an instance that is out of rotation out of service: waits until it
/// is quiet (the drain), then `stop_signal` and SIGKILL after `stop_timeout`.
/// The one place drain-then-stop is written (warm hold's end, flips, recovery).
struct InstanceRetirer: Sendable {
    let config: SupervisorConfig
    var drain: @Sendable (_ port: Int, _ timeout: Duration) async -> ConnectionDrainer.Result = { port, timeout in
        await ConnectionDrainer(timeout: timeout).drain(port: port)
    }

    /// `port` nil or 0: socket-handoff mode, where instances share the supervisor's sockets.
    func retire(_ process: ChildProcess, port: Int?) async -> ProcessStopper.Result {
        if let port, port != 0 {
            _ = await drain(port, config.drain.timeout)
        }
        return await ProcessStopper.stop(process, signal: config.app.stopSignal.number, timeout: config.app.stopTimeout)
    }
}
