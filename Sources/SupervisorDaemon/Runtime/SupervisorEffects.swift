import SupervisorCore
import SupervisorShared
import SystemBindings

/// The effects whose outcome and timing decide the runtime's paths: the
/// health gate and probes, the connection drain, the state journal's
/// storage and the clock. Injected, so the runtime's own tests drive every
/// phase in-process (a gate that opens when the test says so, a journal
/// that fails on the write the test picks) in milliseconds. Processes and
/// files stay real there; the proxy is injected through `ProxyDriver`.
public struct SupervisorEffects: Sendable {
    /// Waits until a fresh (or adopted) instance is ready: READY=1 or the HTTP health gate.
    public var waitReady: @Sendable (_ launch: AppLaunch, _ prepared: AppLaunch.Prepared?, _ process: ChildProcess, _ port: Int) async -> HealthGate.Result
    /// One health probe of an instance on `port` (the warm hold's watch).
    public var probe: @Sendable (_ port: Int) async -> HealthProbe.Outcome
    /// Waits until the instance on `port` is quiet, at most `timeout`.
    public var drain: @Sendable (_ port: Int, _ timeout: Duration) async -> ConnectionDrainer.Result
    /// Rewrites `state.json`.
    public var writeState: @Sendable (JournalState) throws -> Void
    /// Appends one line to `history.jsonl`.
    public var appendHistory: @Sendable (HistoryEntry) throws -> Void
    /// The clock of restart and stop timers, waits and the watch window.
    public var sleep: @Sendable (Duration) async -> Void

    public init(
        waitReady: @escaping @Sendable (AppLaunch, AppLaunch.Prepared?, ChildProcess, Int) async -> HealthGate.Result,
        probe: @escaping @Sendable (Int) async -> HealthProbe.Outcome,
        drain: @escaping @Sendable (Int, Duration) async -> ConnectionDrainer.Result,
        writeState: @escaping @Sendable (JournalState) throws -> Void,
        appendHistory: @escaping @Sendable (HistoryEntry) throws -> Void,
        sleep: @escaping @Sendable (Duration) async -> Void
    ) {
        self.waitReady = waitReady
        self.probe = probe
        self.drain = drain
        self.writeState = writeState
        self.appendHistory = appendHistory
        self.sleep = sleep
    }

    /// The real ones: libcurl probes, sock_diag drains, files in the state directory, the continuous clock.
    public static func live(config: SupervisorConfig, journal: StateJournal) -> SupervisorEffects {
        let probe = HealthProbe(config: config.health)
        return SupervisorEffects(
            waitReady: { launch, prepared, process, port in await launch.waitReady(prepared, process: process, port: port) },
            probe: { port in await probe.probe(port: port) },
            drain: { port, timeout in await ConnectionDrainer(timeout: timeout).drain(port: port) },
            writeState: { state in try journal.write(state) },
            appendHistory: { entry in try journal.append(entry) },
            sleep: { duration in try? await Task.sleep(for: duration) })
    }
}
