#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import Logging
import SupervisorCore
import SystemBindings

/// `[health] watch`: after a swap the old instance stays alive, out of
/// rotation, while the new one keeps being probed. Within the window a
/// rollback is a flip of the proxy back to the old instance (nothing
/// starts); `healthy_after` consecutive failed probes, or the new instance
/// exiting, trigger the same flip automatically (`auto-rollback`). After the
/// window the old instance is drained and stopped as usual.
actor WarmHold {
    struct Instance: Sendable {
        let process: ChildProcess
        let port: Int
        let sha256: String?
        let version: String?
    }

    enum State: Sendable {
        case watching
        case flipped
        case finished
    }

    let id: String
    let old: Instance
    let new: Instance
    let config: SupervisorConfig
    let runtime: AppRuntime
    let driver: any ProxyDriver
    let store: JournalStore
    let logger: Logger
    private(set) var state: State = .watching

    init(id: String, old: Instance, new: Instance, config: SupervisorConfig, runtime: AppRuntime, driver: any ProxyDriver, store: JournalStore, logger: Logger) {
        self.id = id
        self.old = old
        self.new = new
        self.config = config
        self.runtime = runtime
        self.driver = driver
        self.store = store
        self.logger = logger
    }

    var isWatching: Bool { state == .watching }

    /// Watches the new instance for the window; `onAutoRollback` receives the result of a flip it triggered.
    func begin(onAutoRollback: @escaping @Sendable (SwapResult) async -> Void) {
        logger.info("warm hold: old instance (pid \(old.process.pid), port \(old.port)) kept out of rotation for \(config.health.watch.humanReadable)")
        Task {
            let reason = await self.watchForFailure()
            if let reason {
                let result = await self.flip(action: .autoRollback, reason: reason, report: { _ in })
                await onAutoRollback(result)
            } else {
                await self.finishWindow()
            }
        }
    }

    /// Nil when the window passed with the new instance healthy; else why it failed.
    private func watchForFailure() async -> String? {
        let probe = HealthProbe(config: config.health)
        let deadline = ContinuousClock.now + config.health.watch
        var failures = 0
        while ContinuousClock.now < deadline {
            guard state == .watching else { return nil }
            if let status = new.process.exitStatus {
                return "the new instance \(status) during the watch window"
            }
            switch await probe.probe(port: new.port) {
            case .healthy:
                failures = 0
            case .unhealthy(let problem):
                failures += 1
                if failures >= config.health.healthyAfter {
                    return "\(failures) consecutive failed health probes of the new instance (last: \(problem))"
                }
            }
            try? await Task.sleep(for: config.health.interval)
        }
        return nil
    }

    /// Ends the window now (a new swap is starting): drain and stop the old instance.
    func finishWindow() async {
        guard state == .watching else { return }
        // The watch loop sees the state change and ends by itself (it may be
        // the caller: cancelling it would cancel this very work).
        state = .finished
        _ = await ConnectionDrainer(timeout: config.drain.timeout).drain(port: old.port)
        let result = await ProcessStopper.stop(old.process, signal: config.app.stopSignal.number, timeout: config.app.stopTimeout)
        logger.info("warm hold over: old instance (pid \(old.process.pid)) \(result)")
        try? await store.setSwap(nil, serving: nil)
    }

    /// Flips the proxy back to the old instance, which becomes the serving one
    /// again; the files trade places; the new instance is drained and stopped.
    func flip(action: SwapAction, reason: String?, report: @escaping @Sendable (SwapProgress) -> Void) async -> SwapResult {
        let started = ContinuousClock.now
        let logger = self.logger
        let id = self.id
        let say: @Sendable (String) -> Void = { message in
            logger.notice("\(action.rawValue): \(message)", metadata: ["swap.id": "\(id)"])
            report(SwapProgress(phase: .switch, message: message, elapsedMS: (ContinuousClock.now - started).milliseconds))
        }
        let from = BinaryIdentity(sha256: new.sha256, version: new.version)
        let to = BinaryIdentity(sha256: old.sha256, version: old.version)
        guard state == .watching else {
            return SwapResult(ok: false, id: id, action: action, from: from, to: to, pid: nil, port: nil, error: SwapError(.notRunning, "the warm hold is over"), failedPhase: .switch, phasesMS: [:], totalMS: 0)
        }
        if let reason { say("rolling back: \(reason)") }
        do {
            try await driver.switchUpstream(to: old.port, log: say)
        } catch {
            logger.error("\(action.rawValue) failed: \(error.message)")
            return SwapResult(ok: false, id: id, action: action, from: from, to: to, pid: new.process.pid, port: new.port, error: error, failedPhase: .switch, phasesMS: [:], totalMS: (ContinuousClock.now - started).milliseconds)
        }
        state = .flipped
        let switched = ContinuousClock.now
        await runtime.handOver(to: old.process, port: old.port, sha256: old.sha256, version: old.version)
        let binary = config.app.binary
        if csup_rename_exchange(binary, BinaryCommitter.backupPath(for: binary)) == 0 {
            AtomicFile.syncDirectory(of: binary)
            say("\(binary) and \(binary).bak traded places: the old binary is live again")
            await runtime.backupChanged(to: BinaryIdentity(sha256: new.sha256, version: new.version))
        } else {
            say("warning: could not exchange \(binary) and \(binary).bak: \(String(cString: strerror(errno)))")
        }
        _ = await ConnectionDrainer(timeout: config.drain.timeout).drain(port: new.port)
        let stopped = await ProcessStopper.stop(new.process, signal: config.app.stopSignal.number, timeout: config.app.stopTimeout)
        say("stopped the new instance (pid \(new.process.pid)): \(stopped)")
        try? await store.setSwap(nil, serving: nil)
        let total = (ContinuousClock.now - started).milliseconds
        return SwapResult(
            ok: true, id: id, action: action, from: from, to: to, pid: old.process.pid, port: old.port, error: nil,
            failedPhase: nil, phasesMS: ["switch": (switched - started).milliseconds, "stop": (ContinuousClock.now - switched).milliseconds],
            totalMS: total)
    }
}
