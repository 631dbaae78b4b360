#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SupervisorCore
import SystemBindings

/// The swap lock: one swap or rollback at a time; a second is refused at once
/// with the phase the first is in. Runs each swap detached from the client's
/// connection (a client that goes away does not interrupt it) and streams
/// its progress as NDJSON lines.
public actor SwapCoordinator {
    private let config: SupervisorConfig
    private let runtime: AppRuntime
    private let driver: any ProxyDriver
    private let journal: StateJournal
    private let store: JournalStore
    private let logger: Logger
    private let notifier: Notifier
    private var running: (id: String, action: SwapAction, phase: SwapPhase)?
    private var warmHold: WarmHold?
    private var counter = 0

    public init(config: SupervisorConfig, runtime: AppRuntime, driver: any ProxyDriver, store: JournalStore, logger: Logger, notifier: Notifier = Notifier()) {
        self.store = store
        let journal = store.journal
        self.config = config
        self.runtime = runtime
        self.driver = driver
        self.journal = journal
        self.logger = logger
        self.notifier = notifier
    }

    /// What a running swap is doing, for status.
    public var current: (action: SwapAction, phase: SwapPhase)? {
        running.map { ($0.action, $0.phase) }
    }

    /// Starts a swap (or a rollback: a swap to `<binary>.bak`), or refuses.
    public func start(action: SwapAction, source: String?, callerUID: UInt32?) async -> Result<AsyncStream<[UInt8]>, ControlError> {
        if let running {
            return .failure(ControlError(.busy, "another \(running.action.rawValue) is in progress (phase \(running.phase.rawValue)); wait for it to finish", phase: running.phase.rawValue))
        }
        // Inside a warm hold: a rollback is a flip back to the old instance;
        // a new swap first ends the hold (the old instance's port is the idle one).
        if let hold = warmHold, await hold.isWatching {
            if action == .rollback {
                return .success(flip(hold, callerUID: callerUID))
            }
            await hold.finishWindow()
        }
        warmHold = nil
        let binary = config.app.binary
        let path: String
        switch action {
        case .swap:
            guard let source, source.hasPrefix("/") else {
                return .failure(ControlError(.badRequest, "\"binary\" must be an absolute path (supervisorctl resolves relative ones)"))
            }
            path = source
        case .rollback, .autoRollback, .emergencyRollback:
            path = BinaryCommitter.backupPath(for: binary)
            if access(path, F_OK) != 0 {
                return .failure(ControlError(SwapError.Code.noBackup.controlCode, "no previous binary to roll back to: \(path) does not exist (nothing has been swapped yet?)"))
            }
        }
        guard let old = await runtime.servingInstance() else {
            let phase = await runtime.phase
            return .failure(ControlError(SwapError.Code.notRunning.controlCode, "the app is not running (phase \(phase)); a swap needs a healthy instance to fall back on. Check `supervisorctl status` and the service log"))
        }

        counter += 1
        let id = "\(Int(Date().timeIntervalSince1970))-\(getpid())-\(counter)"
        running = (id, action, .stage)
        notifier.reloading(status: "\(action.rawValue): staging \(path)")

        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
        let context = SwapRun.Context(
            id: id, action: action, source: path, callerUID: callerUID, config: config, runtime: runtime,
            driver: driver, journal: journal, store: store, logger: logger,
            report: { line in continuation.yield(Self.encode(line)) },
            phaseChanged: { [weak self] phase in await self?.phaseChanged(id: id, phase) },
            startWarmHold: { [weak self] old, new in await self?.beginWarmHold(id: id, old: old, new: new) })
        let run = SwapRun(context: context, old: old)
        Task {
            let result = await run.run()
            continuation.yield(Self.encode(.result(result)))
            continuation.finish()
            await self.finished(id: id, result)
        }
        return .success(stream)
    }

    private func beginWarmHold(id: String, old: WarmHold.Instance, new: WarmHold.Instance) async {
        let hold = WarmHold(id: id, old: old, new: new, config: config, runtime: runtime, driver: driver, store: store, logger: logger)
        warmHold = hold
        await hold.begin { [weak self] result in
            await self?.recordFlip(result, callerUID: nil)
        }
    }

    /// A manual rollback inside the warm hold: the flip, streamed like a swap.
    private func flip(_ hold: WarmHold, callerUID: UInt32?) -> AsyncStream<[UInt8]> {
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
        running = (hold.id, .rollback, .switch)
        Task {
            let result = await hold.flip(action: .rollback, reason: "requested inside the warm hold: no new instance is started") { progress in
                continuation.yield(Self.encode(.progress(progress)))
            }
            continuation.yield(Self.encode(.result(result)))
            continuation.finish()
            await self.recordFlip(result, callerUID: callerUID)
            await self.finished(id: hold.id, result, recordMetrics: false)
        }
        return stream
    }

    private func recordFlip(_ result: SwapResult, callerUID: UInt32?) async {
        runtime.metrics.recordSwap(result)
        let entry = HistoryEntry(
            id: result.id + "-\(result.action.rawValue)", time: Clock.rfc3339Now(), action: result.action, callerUID: callerUID,
            from: result.from, to: result.to, result: result.ok ? .ok : .failed, error: result.error,
            phasesMS: result.phasesMS, totalMS: result.totalMS)
        try? journal.append(entry)
        if result.ok, !config.hooks.onRollback.isEmpty {
            let facts = HookRunner.Facts(
                action: result.action, phase: .done, oldBinary: config.app.binary, newBinary: nil,
                oldSHA256: result.from.sha256, newSHA256: result.to.sha256, oldVersion: result.from.version,
                newVersion: result.to.version, error: nil)
            _ = await HookRunner(config: config).run(.onRollback, facts) { [logger] line in logger.info("on_rollback: \(line)") }
        }
    }

    private func phaseChanged(id: String, _ phase: SwapPhase) {
        guard let current = running, current.id == id, phase != .done else { return }
        running = (id, current.action, phase)
        notifier.status("\(current.action.rawValue): \(phase.rawValue)")
    }

    private func finished(id: String, _ result: SwapResult, recordMetrics: Bool = true) async {
        if running?.id == id { running = nil }
        if recordMetrics { runtime.metrics.recordSwap(result) }
        let line = await runtime.statusLine()
        notifier.ready(status: line)
    }

    static func encode(_ line: SwapStreamLine) -> [UInt8] {
        switch line {
        case .progress(let progress): ControlJSON.encode(progress) + [UInt8(ascii: "\n")]
        case .result(let result): ControlJSON.encode(result) + [UInt8(ascii: "\n")]
        }
    }
}

extension SwapError.Code {
    var controlCode: ControlError.Code { ControlError.Code(rawValue: rawValue) }
}
