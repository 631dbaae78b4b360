#if canImport(Glibc)
import Glibc
#endif
import Logging
import SupervisorCore
import SupervisorShared
import SystemBindings

/// The one owner of the service's mutable state: the supervised instance
/// and its `AppMachine`, the lock and warm hold (`OperationMachine`), the
/// state journal, the claimed requests and their progress streams.
///
/// Everything that happens reaches it as an event: a control request, a
/// pidfd exit, a health result, a timer, a signal, the outcome of a swap's
/// step. Each event is decided by a pure machine in one synchronous step
/// (no `await` between a check and what is done about it); the effects the
/// machines ask for run as jobs (child tasks of `runEffects()`) and send
/// their outcome back as another event.
public actor Supervisor {
    public let config: SupervisorConfig
    let logger: Logger
    let notifier: Notifier
    public let metrics: SupervisorMetrics
    /// How the app starts: `[app]` as the daemon read it, or as a restart re-read it.
    public internal(set) var launch: AppLaunch
    /// The config file (nil in tests that build a config in memory): a restart reads it again.
    let configPath: String?
    let driver: any ProxyDriver
    let journal: StateJournal
    let effects: SupervisorEffects
    let journalWriter: JournalWriter
    /// First start only, once the app is healthy and before READY=1: the
    /// daemon points the proxy at it and finishes recovery here. Nil when
    /// done; else what failed (tried again with backoff; READY=1 waits).
    let firstReady: @Sendable (_ port: Int) async -> String?

    typealias Job = @Sendable () async -> Void
    private let jobs: AsyncStream<Job>
    let jobQueue: AsyncStream<Job>.Continuation

    // MARK: - The state this actor owns

    var app = AppMachine()
    var operations = OperationMachine()
    /// The supervised instance.
    var process: ChildProcess?
    /// How the supervised instance was started (nil for an adopted one).
    var prepared: AppLaunch.Prepared?
    var processStarted: ContinuousClock.Instant?
    /// What keeps the first start from finishing (the proxy update failed), for status.
    var startProblem: String?
    /// An automatic rollback withheld in the warm hold (schema changed), for status until the next operation.
    var holdProblem: String?
    /// SIGHUP's re-exec (nil in tests that build a supervisor in memory).
    var reexecutor: InPlaceReexec?
    /// Why the last SIGHUP did not re-exec, for status until the next operation.
    var reexecProblem: String?
    var processStartedWall: Double?
    /// What the supervised instance runs.
    var serving = BinaryIdentity(sha256: nil, version: nil)
    /// Between a swap's switch and its commit the serving instance runs
    /// `<binary>.new` while `<binary>` is still the previous version: a
    /// restart in that window must start the staged file.
    var uncommittedExecutable: String?
    /// What `<binary>.bak` holds: worked out once at start, then kept current
    /// by the swaps that move files.
    public internal(set) var backup: BinaryIdentity?
    /// What `state.json` says; every change is written before it is acted on.
    var journalState: JournalState
    /// `[health] watch`: the instances of the hold in progress.
    var hold: WarmHold?
    /// Requests that hold the lock (or wait for it), with their progress streams.
    var requests: [OperationMachine.Ticket: ClaimedRequest] = [:]
    var nextTicket = 0
    /// Processes whose exit a job is already waiting for.
    var watchedPIDs: Set<Int32> = []
    var stopWaiters: [CheckedContinuation<Void, Never>] = []
    /// The first start is over: the proxy points at the app, recovery is
    /// done, READY=1 was sent. Until then the app counts as starting.
    var firstStartDone = false
    /// READY=1 was sent (once, at the end of the first start, or at the first recovery after it).
    var readyAnnounced = false
    /// The spawn under way (its number), if any: a spawn that finishes after
    /// supervision moved on, or after a newer spawn began, is discarded.
    var pendingSpawn: Int?
    var spawnCount = 0
    /// `serving` is what the journal recorded for the adopted instance, not
    /// `<binary>` (the file may differ): a restart from `<binary>` hashes it.
    var servingFromJournal = false
    /// An emergency rollback done while no daemon ran, which this one finishes after its first start.
    let emergency: EmergencyRollbackRecord?
    var emergencyStatus: StatusReport.EmergencyRollbackStatus?
    /// The rollback that moves traffic for it.
    var emergencyTicket: OperationMachine.Ticket?

    public init(
        config: SupervisorConfig, logger: Logger, notifier: Notifier = Notifier(), metrics: SupervisorMetrics = SupervisorMetrics(),
        journal: StateJournal, initialState: JournalState?, launch: AppLaunch? = nil, driver: (any ProxyDriver)? = nil,
        effects: SupervisorEffects? = nil, emergency: EmergencyRollbackRecord? = nil, configPath: String? = nil,
        firstReady: @escaping @Sendable (_ port: Int) async -> String? = { _ in nil }
    ) {
        self.emergency = emergency
        self.configPath = configPath
        emergencyStatus = emergency.map { .init(id: $0.id, state: .pending) }
        self.effects = effects ?? .live(config: config, journal: journal)
        self.journalWriter = JournalWriter(effects: self.effects)
        self.config = config
        self.logger = logger
        self.notifier = notifier
        self.metrics = metrics
        self.journal = journal
        self.journalState = initialState ?? JournalState(serving: nil, swap: nil)
        self.launch = launch ?? AppLaunch(config: config, listenDescriptors: [])
        self.driver = driver ?? ProxyDrivers.make(for: config)
        self.firstReady = firstReady
        (jobs, jobQueue) = AsyncStream<Job>.makeStream()
    }

    /// Runs the effects the machines ask for, each as a child task, until the
    /// app has stopped; then cancels what is left (exit watchers, timers).
    public func runEffects() async {
        await withDiscardingTaskGroup { group in
            for await job in jobs {
                group.addTask { await job() }
            }
            group.cancelAll()
        }
    }

    /// Queues an effect; its outcome comes back as an event.
    nonisolated func launchJob(_ job: @escaping Job) {
        jobQueue.yield(job)
    }

    /// A timer on the injected clock: after `delay`, `fire` runs on this actor
    /// (the machines ignore a timer whose moment has passed).
    func after(_ delay: Duration, _ fire: @escaping @Sendable (isolated Supervisor) -> Void) {
        let sleep = effects.sleep
        launchJob {
            await sleep(delay)
            await self.fire(fire)
        }
    }

    private func fire(_ body: @Sendable (isolated Supervisor) -> Void) {
        body(self)
    }

    // MARK: - Start and stop

    /// Starts the app on `port` (the first port by default), or adopts a
    /// live instance a previous supervisor left running. `adoptedIdentity`:
    /// what the adopted instance runs, as the journal recorded it when it
    /// started (the file at `<binary>` may have been replaced or exchanged
    /// since); without it, `<binary>` is hashed.
    public func start(port: Int? = nil, adopting: Int32? = nil, adoptedIdentity: BinaryIdentity? = nil, history: [HistoryEntry] = []) async {
        let binary = config.app.binary
        let command = config.app.versionCommand
        let timeout = config.health.startTimeout
        let runAs = launch.runAs.app
        let adopted = adopting.flatMap { try? ChildProcess.adopt(pid: $0) }
        let known = adopted != nil && adoptedIdentity?.sha256 != nil ? adoptedIdentity : nil
        // Hashing a binary and running its version command block: not on this actor's turn.
        let facts = await BlockingThread.run { () -> (String?, BinaryIdentity?) in
            (known == nil ? FileDigest.sha256(path: binary) : nil, BackupIdentity.of(binary: binary, history: history))
        }
        servingFromJournal = known != nil
        if let known {
            serving = known
        } else {
            let version: String? = if let command { await VersionProbe.version(of: binary, command: command, timeout: timeout, as: runAs) } else { nil }
            serving = BinaryIdentity(sha256: facts.0, version: version)
        }
        backup = facts.1
        metrics.setServing(version: serving.version, sha256: serving.sha256)
        let port = port ?? config.app.ports.first ?? 0
        if let pid = adopting, let child = adopted {
            prepared = nil
            process = child
            // Uptime counts from the app's own start, not from its adoption.
            let now = WallClock.now()
            let started = ProcessTable.startedAt(pid: pid).map { min($0, now) } ?? now
            processStarted = .now - .milliseconds(Int64((now - started) * 1000))
            processStartedWall = started
            logger.notice("re-adopted the running app (no restart)", metadata: ["pid": "\(pid)", "port": "\(port)"])
            watchExit(of: child)
            handleApp(.adopt(pid: pid, port: port))
            return
        }
        handleApp(.start(port: port))
    }

    /// SIGTERM/SIGINT: lets a swap, flip or the end of a warm hold in
    /// progress finish, refuses what comes after, stops the app and returns.
    public func shutdown() async {
        if case .stopped = operations.state { return }
        await withCheckedContinuation { continuation in
            stopWaiters.append(continuation)
            if operations.shutdownPending || operations.state == .stopping { return }
            if operations.busyPhase != nil {
                logger.notice("stop requested while \(operations.current.map { "\($0.action.rawValue) is in phase \($0.phase)" } ?? "an operation runs"); stopping once it has finished")
            }
            perform(operations.handle(.shutdownRequested))
        }
    }

    // MARK: - Status

    public func status(proxy: String) -> StatusReport {
        var pid: Int32?
        var port: Int?
        switch app.state {
        case .running(let p, let q), .awaitingHealth(let p, let q):
            pid = p
            port = q
        case .stopping(let p) where p != 0:
            pid = p
        case .starting(let q), .restartPending(let q, _), .paused(let q):
            port = q
        default:
            break
        }
        let uptime = processStarted.map { ContinuousClock.now - $0 }.map { Double($0.milliseconds) / 1000 }
        var report = StatusReport(
            name: config.name, phase: app.phase, pid: pid, port: port, binary: config.app.binary,
            sha256: serving.sha256, version: serving.version,
            startedAt: pid == nil ? nil : processStartedWall.map { WallClock.rfc3339($0, milliseconds: false) },
            uptimeSeconds: pid == nil ? nil : uptime, restarts: app.restarts,
            lastExit: app.lastExit, proxy: proxy, supervisorPID: getpid())
        if let current = operations.current {
            report.phase = "\(current.action.rawValue):\(current.phase)"
        } else if operations.state == .reexecuting {
            report.phase = "reexec"
        } else if report.phase == "running", !firstStartDone {
            report.phase = "starting"
        }
        report.state = report.phase
        report.problem = firstStartDone ? holdProblem ?? reexecProblem : startProblem
        report.supervisorVersion = SupervisorVersion.current
        report.serving = firstStartDone && servingInstance() != nil
        report.backup = backup
        report.emergencyRollback = emergencyStatus
        return report
    }

    /// The Prometheus text, with the gauges of the present brought up to date.
    public func metricsText() -> String {
        metrics.observe(status(proxy: config.proxy.kind.rawValue))
        return metrics.text()
    }

    /// A `STATUS=` line for systemctl status.
    public func statusLine() -> String {
        let report = status(proxy: config.proxy.kind.rawValue)
        // A refused re-exec leads systemctl status (and the package's postinst reads it there).
        var parts = (reexecProblem.map { [$0] } ?? []) + ["\(report.phase)"]
        if let pid = report.pid { parts.append("pid \(pid)") }
        if let port = report.port { parts.append("port \(port)") }
        if let version = report.version { parts.append("version \(version)") }
        if let sha = report.sha256 { parts.append("sha256 \(sha.prefix(12))") }
        if report.restarts > 0 { parts.append("\(report.restarts) restarts") }
        return parts.joined(separator: ", ")
    }

    /// The instance serving now, when the app is running and healthy.
    func servingInstance() -> Instance? {
        guard case .running(let pid, let port) = app.state, let process, process.pid == pid else { return nil }
        return Instance(process: process, port: port, identity: serving)
    }

    var availability: OperationMachine.AppAvailability {
        switch app.state {
        case .running: servingInstance() == nil || !firstStartDone ? .starting : .running
        case .idle, .starting, .awaitingHealth, .restartPending, .paused: .starting
        case .stopping, .stopped: .down
        }
    }

    // MARK: - Supervision changes hands

    /// From now on `target` is the supervised instance: after a swap's
    /// switch (the new one), after a switch back or a flip (the old one).
    /// `replacing` is the instance it takes over from, which the caller stops
    /// itself; any other instance this runtime started meanwhile (a restart
    /// of the replaced one) is not in rotation and is killed.
    /// `executable`: the not yet committed file `target` runs, restarted
    /// instead of `<binary>`.
    /// `launch`: how the target instance was started, when a restart changed it
    /// (so a crash restarts it the same way).
    func handOver(to target: Instance, replacing: ChildProcess?, executable: String? = nil, launch: AppLaunch? = nil) {
        if let launch { self.launch = launch }
        if let process, process.pid != target.process.pid, process.pid != replacing?.pid {
            logger.warning("stopping an instance that is not in rotation", metadata: ["pid": "\(process.pid)"])
            process.signal(SIGKILL)
        }
        uncommittedExecutable = executable
        serving = target.identity
        prepared = nil
        metrics.setServing(version: target.identity.version, sha256: target.identity.sha256)
        process = target.process
        processStarted = .now
        processStartedWall = WallClock.now()
        // A spawn still under way (a restart of the replaced instance) is not wanted any more.
        pendingSpawn = nil
        handleApp(.handedOver(pid: target.process.pid, port: target.port))
        // While a swap or flip is journalled this stays in memory: a separate write here
        // would pair the new serving instance with a phase recovery undoes.
        recordServing(pid: target.process.pid, port: target.port)
        watchExit(of: target.process)
        notifier.status(statusLine())
    }

    /// A stop-start swap stops the serving instance itself: its exit is not a crash to restart.
    /// Returns the supervised process when it is not `instance` (a crash restarted it since
    /// the swap began): the swap stops that one too, or it would keep the port or the lock.
    func pauseSupervision(of instance: Instance) -> ChildProcess? {
        let current = process
        handleApp(.pause)
        // Nothing is supervised until the swap hands an instance over (or resumes).
        process = nil
        processStarted = nil
        pendingSpawn = nil
        notifier.status(statusLine())
        return current.flatMap { $0.pid == instance.process.pid ? nil : $0 }
    }

    /// The stop-start swap that paused supervision could not start the old binary again:
    /// supervision starts it (with backoff) as after a crash.
    func resumeSupervision() {
        uncommittedExecutable = nil
        handleApp(.resume)
    }

    /// The files moved: `<binary>` is what runs, `<binary>.bak` holds `identity`.
    func backupChanged(to identity: BinaryIdentity?) {
        backup = identity
        uncommittedExecutable = nil
    }

    /// A restart's commit: `<binary>` is what runs again, `.bak` unchanged.
    func stagedCopyCommitted() {
        uncommittedExecutable = nil
    }

    // MARK: - The state journal

    /// Records a swap's phase (and who serves) before it acts; throws when
    /// the file cannot be written.
    func writeJournal(swap: JournalState.SwapInProgress?, serving: JournalState.Instance?) async throws {
        journalState.swap = swap
        if let serving { journalState.serving = serving }
        try await journalWriter.write(journalState)
    }

    /// The serving instance as the journal keeps it (identity from /proc).
    func servingRecord(pid: Int32, port: Int) -> JournalState.Instance {
        Self.record(pid: pid, port: port, identity: serving)
    }

    static func record(pid: Int32, port: Int, identity: BinaryIdentity) -> JournalState.Instance {
        let proc = ProcessIdentity.of(pid: pid)
        return JournalState.Instance(
            pid: pid, port: port, sha256: identity.sha256, version: identity.version,
            startTime: proc?.startTime, executable: proc?.executable, bootID: ProcessIdentity.bootID)
    }

    /// Records who serves. While a swap or flip is journalled, only in memory:
    /// its next write names who serves, with its phase, in one atomic write.
    func recordServing(pid: Int32, port: Int) {
        journalState.serving = servingRecord(pid: pid, port: port)
        guard journalState.swap == nil else { return }
        journalWriter.writeLater(journalState) { [logger, journal] error in
            logger.error("cannot write the state journal \(journal.statePath): \(error)")
        }
    }

    /// Appends to `history.jsonl`; returns once the line is written (a caller hears its result after).
    func appendHistory(_ entry: HistoryEntry) async {
        await journalWriter.append(entry) { [logger, journal] error in
            logger.error("cannot append to history \(journal.historyPath): \(error)")
        }
    }
}

/// One app instance as the runtime tracks it.
struct Instance: Sendable {
    let process: ChildProcess
    let port: Int
    let identity: BinaryIdentity
}

/// `[health] watch`: the old instance kept warm, out of rotation, while the new one is watched.
struct WarmHold: Sendable {
    let id: String
    let action: SwapAction
    let old: Instance
    let new: Instance
    /// The watch window passed (while a flip ran, say): end the hold once it can.
    var windowElapsed = false
    /// "schema 1 → 2" when the swap crossed a `[health] schema_field` change: no automatic rollback.
    var schemaChange: String? = nil
    /// An automatic rollback was withheld for it (said once).
    var rollbackWithheld = false
}
