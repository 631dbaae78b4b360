#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SupervisorCore
import SupervisorShared
import SystemBindings

/// A request that holds the lock, or waits for it to be granted: its
/// progress stream stays open until its result line.
struct ClaimedRequest: Sendable {
    let action: SwapAction
    let source: String
    let callerUID: UInt32?
    /// Whose rights a swap's source file is opened with (nil: the daemon's, for root callers and rollbacks).
    var opener: ProcessCredentials? = nil
    let stream: AsyncStream<[UInt8]>.Continuation
    let started = ContinuousClock.now
    /// Whether a success goes into history (the move that finishes an emergency
    /// rollback does not: the emergency rollback's own line records it).
    var recordsSuccess = true
    /// A restart's config and launch (nil for the other actions).
    var restart: RestartPlan? = nil
    /// `rollback --restore-backup`: the backup `[hooks] restore` gets (the rollback is a stop-start).
    var restoreBackup: String? = nil
}

/// What a rollback was checked against (the schema guard): refused once claimed
/// if what serves, or what it rolls back to, changed since.
public struct RollbackCheck: Sendable {
    public let serving: String?
    public let target: String?
    public init(serving: String?, target: String?) {
        self.serving = serving
        self.target = target
    }
}

/// What a restart starts the new instance with, read from the config file when it was asked for.
struct RestartPlan: Sendable {
    let changes: RestartChanges
    let launch: AppLaunch

    /// Progress lines that say what the restart applies and what it does not.
    var notes: [String] {
        var lines: [String] = []
        lines.append(
            changes.applied.isEmpty
                ? "the config file's [app] args, env and working_directory are as running: the same binary starts as it runs now"
                : "applies the config file's \(changes.applied.joined(separator: ", ")) to the new instance")
        if !changes.notApplied.isEmpty {
            lines.append("not applied: \(changes.notApplied.joined(separator: ", ")) changed in the config file; a restart only applies [app] args, env and working_directory, the rest takes effect when supervisord starts again")
        }
        return lines
    }
}

/// Swaps, rollbacks, warm-hold flips and the end of a hold: `OperationMachine`
/// decides who may act; this performs it.
extension Supervisor {
    /// A caller asks for a swap or a rollback (a swap to `<binary>.bak`).
    /// Claimed or refused in this one step: the answer is a progress stream,
    /// or the refusal (busy: exit 4, at once).
    /// `opener`: the caller's own identity when it is not root; the source
    /// file is opened with its rights, never the daemon's.
    public func request(
        _ action: SwapAction, source: String?, callerUID: UInt32?, opener: ProcessCredentials? = nil,
        checked: RollbackCheck? = nil, restoreBackup: String? = nil
    ) -> Result<AsyncStream<[UInt8]>, ControlError> {
        request(action, source: source, callerUID: callerUID, opener: opener, recordsSuccess: true, checked: checked, restoreBackup: restoreBackup)
            .map(\.stream)
    }

    func request(
        _ action: SwapAction, source: String?, callerUID: UInt32?, opener: ProcessCredentials? = nil, recordsSuccess: Bool,
        checked: RollbackCheck? = nil, restoreBackup: String? = nil
    ) -> Result<(ticket: OperationMachine.Ticket, stream: AsyncStream<[UInt8]>), ControlError> {
        if let checked, operations.busyPhase == nil, checked.serving != serving.sha256 || (source == nil && checked.target != backup?.sha256) {
            return .failure(ControlError(.busy, "the serving release changed while the rollback was checked (another operation finished meanwhile); ask again", phase: "rollback check"))
        }
        let binary = config.app.binary
        let path: String
        var restart: RestartPlan?
        switch action {
        case .restart:
            // Read only when not busy: a busy daemon answers busy (exit 4), whatever the file holds.
            if operations.busyPhase == nil {
                switch restartPlan() {
                case .failure(let error): return .failure(error)
                case .success(let plan): restart = plan
                }
            }
            path = binary
        case .swap:
            guard let source, source.hasPrefix("/") else {
                return .failure(ControlError(.badRequest, "\"binary\" must be an absolute path (supervisorctl resolves relative ones)"))
            }
            if let problem = BinaryStager.pathProblem(source) { return .failure(problem) }
            path = source
        case .rollback where source != nil:
            // `rollback --to`: a kept release's file (the daemon's own, under the state directory).
            path = source ?? ""
            if operations.busyPhase == nil, access(path, F_OK) != 0 {
                return .failure(ControlError(.unknownRelease, "\(path) is gone (pruned since the rollback was asked); `supervisorctl releases` lists what is kept"))
            }
        case .rollback, .autoRollback, .emergencyRollback:
            path = BinaryCommitter.backupPath(for: binary)
            // Inside a warm hold a rollback flips back to the warm instance (and `.bak` is its
            // file); while the lock is held the answer is busy, whatever `.bak` holds by then.
            if operations.busyPhase == nil, operations.state != .holding, access(path, F_OK) != 0 {
                return .failure(ControlError(.noBackup, "no previous binary to roll back to: \(path) does not exist (nothing has been swapped yet?)"))
            }
        }
        nextTicket += 1
        let ticket = OperationMachine.Ticket(nextTicket)
        // A rollback to a named release is a swap to its file: inside a warm hold it ends the
        // hold first, rather than flipping back to the warm instance.
        let actions = operations.handle(.requested(ticket, action == .rollback && source != nil ? .swap : action, app: availability))
        for case .refuse(ticket, let refusal) in actions {
            return .failure(controlError(refusal, action: action))
        }
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
        requests[ticket] = ClaimedRequest(
            action: action, source: path, callerUID: callerUID, opener: action == .swap ? opener : nil, stream: continuation,
            recordsSuccess: recordsSuccess, restart: restart, restoreBackup: restoreBackup)
        perform(actions)
        return .success((ticket, stream))
    }

    /// The config file read again, for a restart (as running when there is no file).
    private func restartPlan() -> Result<RestartPlan, ControlError> {
        let running = launch.config
        guard let configPath else {
            return .success(RestartPlan(changes: RestartChanges(running: running, file: running), launch: launch))
        }
        switch ConfigLoader.load(path: configPath, environment: ProcessEnvironment.current()) {
        case .failure(let problems):
            let list = problems.problems.map { "  \($0)" }.joined(separator: "\n")
            return .failure(ControlError(.configInvalid, "\(configPath) has \(problems.problems.count) problem\(problems.problems.count == 1 ? "" : "s"); nothing was restarted:\n\(list)"))
        case .success(let file):
            let changes = RestartChanges(running: running, file: file)
            return .success(RestartPlan(changes: changes, launch: changes.applied.isEmpty ? launch : launch.with(changes.config)))
        }
    }

    private func controlError(_ refusal: OperationMachine.Refusal, action: SwapAction? = nil) -> ControlError {
        switch refusal {
        case .notRunning where action == .restart:
            return ControlError(.notRunning, "the app is not running (phase \(app.phase)); a restart needs a healthy instance to fall back on. While it does not stay up, `systemctl restart supervisor@\(config.name)` starts it again with the config file as it is now (the daemon re-reads it)")
        case .busy(let phase):
            let running = operations.current.map { "another \($0.action.rawValue) is in progress (phase \($0.phase))" } ?? "another operation is in progress (phase \(phase))"
            return ControlError(.busy, "\(running); wait for it to finish", phase: phase)
        case .notRunning:
            return ControlError(.notRunning, "the app is not running (phase \(app.phase)); a swap needs a healthy instance to fall back on. Check `supervisorctl status` and the service log")
        case .shuttingDown:
            return ControlError(.shuttingDown, "supervisord is stopping; nothing was changed")
        }
    }

    /// Performs what `OperationMachine` decided.
    func perform(_ actions: [OperationMachine.Action]) {
        for action in actions {
            switch action {
            case .refuse(let ticket, let refusal):
                // A claimed request refused later (its wait ran out, or a stop came first).
                endRequest(ticket, error: controlError(refusal))
            case .waitForApp(let ticket):
                progress(ticket, .stage, "waiting for the app to start (phase \(app.phase)), at most \(config.health.startTimeout.humanReadable)")
                after(config.health.startTimeout) { $0.operationEvent(.waitTimedOut(ticket)) }
            case .startSwap(let pending):
                startSwap(pending)
            case .flip(let ticket, let action, let reason):
                launchJob { await self.flip(ticket, action, reason: reason) }
            case .endHold:
                launchJob { await self.endHold() }
            case .ignoreHoldFailure(let reason, let because):
                logger.warning("warm hold: \(reason); no automatic rollback: \(because)")
            case .reexec:
                launchJob { await self.reexec() }
            case .ignoreReexec(let because):
                logger.warning("SIGHUP: no re-exec: \(because)")
            case .deferReexec(let behind):
                logger.notice("SIGHUP: the re-exec waits until \(behind) is over; new swaps are refused meanwhile")
            case .stopApp:
                notifier.stopping(status: "stopping app")
                handleApp(.stopRequested)
            case .finishStop:
                for waiter in stopWaiters { waiter.resume() }
                stopWaiters = []
                jobQueue.finish()
            }
        }
    }

    func operationEvent(_ event: OperationMachine.Event) {
        perform(operations.handle(event))
    }

    // MARK: - Swaps

    private func startSwap(_ pending: OperationMachine.Pending) {
        holdProblem = nil
        reexecProblem = nil
        guard let request = requests[pending.ticket] else {
            operationEvent(.swapFinished(pending.ticket, warmHold: false))
            return
        }
        guard let old = servingInstance() else {
            // The serving instance went away between the grant and now (a crash during the hold's end).
            endRequest(pending.ticket, error: controlError(.notRunning))
            operationEvent(.swapFinished(pending.ticket, warmHold: false))
            return
        }
        let id = "\(Int(Date().timeIntervalSince1970))-\(getpid())-\(pending.ticket.id)"
        notifier.reloading(status: "\(request.action.rawValue): staging \(request.source)")
        let continuation = request.stream
        let context = SwapRun.Context(
            id: id, ticket: pending.ticket, action: request.action, source: request.source, callerUID: request.callerUID, opener: request.opener,
            recordsSuccess: request.recordsSuccess, config: request.restart?.changes.config ?? launch.config, owner: self, driver: driver, journal: journal,
            launch: request.restart?.launch ?? launch, servingLaunch: launch, notes: request.restart?.notes ?? [], restoreBackup: request.restoreBackup,
            effects: effects, logger: logger,
            report: { line in continuation.yield(Self.encode(line)) })
        let run = SwapRun(context: context, old: old)
        launchJob {
            let result = await run.run()
            await self.swapEnded(pending.ticket, result)
        }
    }

    /// A swap's step entered `phase`: the lock says so, and the journal records it (with who
    /// serves now, as this owner knows it) before it acts.
    func enterPhase(_ ticket: OperationMachine.Ticket, _ phase: SwapPhase, swap: JournalState.SwapInProgress?) async throws {
        if phase != .done {
            operationEvent(.swapPhase(ticket, phase))
            if let action = requests[ticket]?.action { notifier.status("\(action.rawValue): \(phase.rawValue)") }
        }
        try await writeJournal(swap: swap, serving: nil)
    }

    /// `[health] watch`: the swap committed and keeps the old instance warm.
    func prepareHold(_ hold: WarmHold) {
        self.hold = hold
    }

    private func swapEnded(_ ticket: OperationMachine.Ticket, _ result: SwapResult) {
        let holding = result.ok && hold != nil
        metrics.recordSwap(result)
        operationEvent(.swapFinished(ticket, warmHold: holding))
        if holding, let hold { watch(hold) }
        // systemd hears READY=1 before the caller hears the result.
        announceReadyUnlessStopping()
        if let request = requests.removeValue(forKey: ticket) {
            request.stream.yield(Self.encode(.result(result)))
            request.stream.finish()
        }
        if ticket == emergencyTicket { emergencyMoveEnded(result) }
    }

    /// READY=1 after an operation (systemd showed RELOADING=1), unless a stop began: STOPPING=1 stands.
    func announceReadyUnlessStopping() {
        switch operations.state {
        case .stopping, .stopped: return
        default: if operations.shutdownPending { return }
        }
        notifier.ready(status: statusLine())
    }

    /// Ends a claimed request with a failure line (exit 1 for the client).
    private func endRequest(_ ticket: OperationMachine.Ticket, error: ControlError) {
        guard let request = requests.removeValue(forKey: ticket) else { return }
        let result = SwapResult(
            ok: false, id: "refused-\(ticket.id)", action: request.action, from: serving, to: BinaryIdentity(sha256: nil, version: nil),
            pid: process?.pid, port: servingInstance()?.port, error: error,
            failedPhase: .stage, phasesMS: [:], totalMS: (ContinuousClock.now - request.started).milliseconds)
        request.stream.yield(Self.encode(.result(result)))
        request.stream.finish()
        if ticket == emergencyTicket { emergencyMoveEnded(result) }
    }

    func progress(_ ticket: OperationMachine.Ticket?, _ phase: SwapPhase, _ message: String) {
        logger.info("\(message)")
        guard let ticket, let request = requests[ticket] else { return }
        let elapsed = (ContinuousClock.now - request.started).milliseconds
        request.stream.yield(Self.encode(.progress(SwapProgress(phase: phase, message: message, elapsedMS: elapsed))))
    }

    static func encode(_ line: SwapStreamLine) -> [UInt8] {
        switch line {
        case .progress(let progress): ControlJSON.encode(progress) + [UInt8(ascii: "\n")]
        case .result(let result): ControlJSON.encode(result) + [UInt8(ascii: "\n")]
        }
    }
}
