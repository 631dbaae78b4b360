#if canImport(Glibc)
import Glibc
#endif
import Logging
import SupervisorCore
import SystemBindings

/// Runs the one app instance: feeds events to `AppMachine` and performs the
/// actions it decides (spawn, health gate, restart timers, stop).
public actor AppRuntime {
    public let config: SupervisorConfig
    private let logger: Logger
    private let notifier: Notifier
    private var machine: AppMachine
    private var process: ChildProcess?
    private var processStarted: ContinuousClock.Instant?
    private var processStartedWall: Double?
    private var binarySHA256: String?
    private var binaryVersion: String?
    /// Between a swap's switch and its commit the serving instance runs
    /// `<binary>.new` while `<binary>` is still the previous version: a
    /// restart in that window must start the staged file.
    private var uncommittedExecutable: String?
    /// What `<binary>.bak` holds: worked out once at start (hashing the file),
    /// then kept current by the swaps that move files.
    public private(set) var backup: BinaryIdentity?
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    private var healthTask: Task<Void, Never>?

    /// Runs once the app first passed its health gate, before READY=1 (the
    /// daemon points the proxy at it here).
    private let beforeReady: @Sendable (_ port: Int) async -> Void
    public let metrics: SupervisorMetrics
    private let store: JournalStore?
    public let launch: AppLaunch
    /// How the current instance was started (nil for an adopted one).
    private var prepared: AppLaunch.Prepared?

    public init(
        config: SupervisorConfig, logger: Logger, notifier: Notifier = Notifier(),
        metrics: SupervisorMetrics = SupervisorMetrics(), store: JournalStore? = nil, launch: AppLaunch? = nil,
        beforeReady: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) {
        self.launch = launch ?? AppLaunch(config: config, listenDescriptors: [])
        self.beforeReady = beforeReady
        self.metrics = metrics
        self.store = store
        self.config = config
        self.logger = logger
        self.notifier = notifier
        self.machine = AppMachine()
    }

    /// Starts the app on `port` (the first port by default), or adopts a
    /// live instance a previous supervisor left running.
    public func start(port: Int? = nil, adopting: Int32? = nil, history: [HistoryEntry] = []) async {
        binarySHA256 = FileDigest.sha256(path: config.app.binary)
        backup = BackupIdentity.of(binary: config.app.binary, history: history)
        if let command = config.app.versionCommand {
            binaryVersion = await VersionProbe.version(of: config.app.binary, command: command, timeout: config.health.startTimeout)
        }
        metrics.setServing(version: binaryVersion, sha256: binarySHA256)
        let port = port ?? config.app.ports.first ?? 0
        if let pid = adopting, let child = try? ChildProcess.adopt(pid: pid) {
            prepared = nil
            process = child
            processStarted = .now
            processStartedWall = Clock.now()
            logger.notice("re-adopted the running app (no restart)", metadata: ["pid": "\(pid)", "port": "\(port)"])
            watchExit(of: child)
            handle(.adopt(pid: pid, port: port))
            return
        }
        handle(.start(port: port))
    }

    /// Stops the app (stop signal, then SIGKILL after `stop_timeout`) and waits for it.
    public func stop() async {
        if case .stopped = machine.state { return }
        await withCheckedContinuation { continuation in
            stopWaiters.append(continuation)
            handle(.stopRequested)
        }
    }

    public func status(proxy: String) -> StatusReport {
        var pid: Int32?
        var port: Int?
        switch machine.state {
        case .running(let p, let q), .awaitingHealth(let p, let q):
            pid = p
            port = q
        case .stopping(let p) where p != 0:
            pid = p
        case .starting(let q), .restartPending(let q, _):
            port = q
        default:
            break
        }
        let uptime = processStarted.map { ContinuousClock.now - $0 }.map { Double($0.milliseconds) / 1000 }
        return StatusReport(
            name: config.name, phase: machine.phase, pid: pid, port: port, binary: config.app.binary,
            sha256: binarySHA256, version: binaryVersion,
            startedAt: pid == nil ? nil : processStartedWall.map { Clock.rfc3339($0, milliseconds: false) },
            uptimeSeconds: pid == nil ? nil : uptime, restarts: machine.restarts,
            lastExit: machine.lastExit, proxy: proxy, supervisorPID: getpid())
    }

    /// A `STATUS=` line for systemctl status.
    public func statusLine() -> String {
        let report = status(proxy: config.proxy.kind.rawValue)
        var parts = ["\(report.phase)"]
        if let pid = report.pid { parts.append("pid \(pid)") }
        if let port = report.port { parts.append("port \(port)") }
        if let version = report.version { parts.append("version \(version)") }
        if let sha = report.sha256 { parts.append("sha256 \(sha.prefix(12))") }
        if report.restarts > 0 { parts.append("\(report.restarts) restarts") }
        return parts.joined(separator: ", ")
    }

    // MARK: - Swaps

    /// The instance serving now, when the app is running.
    public func servingInstance() -> (process: ChildProcess, port: Int, sha256: String?, version: String?)? {
        guard case .running(let pid, let port) = machine.state, let process, process.pid == pid else { return nil }
        return (process, port, binarySHA256, binaryVersion)
    }

    public var phase: String { machine.phase }

    /// A swap committed or a flip moved the files: `<binary>` is what runs,
    /// `<binary>.bak` holds `identity`.
    public func backupChanged(to identity: BinaryIdentity?) {
        backup = identity
        uncommittedExecutable = nil
    }

    /// After a swap's switch: `child` on `port` is the supervised instance from
    /// now on; the old one's exit is no longer a crash. `executable`: the
    /// not yet committed file it runs, restarted instead of `<binary>`.
    public func handOver(to child: ChildProcess, port: Int, sha256: String?, version: String?, executable: String? = nil) {
        uncommittedExecutable = executable
        binaryVersion = version
        prepared = nil
        metrics.setServing(version: version, sha256: sha256)
        process = child
        processStarted = .now
        processStartedWall = Clock.now()
        binarySHA256 = sha256
        handle(.handedOver(pid: child.pid, port: port))
        recordServing(pid: child.pid, port: port)
        watchExit(of: child)
        notifier.status(statusLine())
    }

    /// A swap's new instance exited after the switch while `old` still ran:
    /// `old` is the supervised instance again. A restart of the new one that
    /// this runtime may already have begun is stopped: it is not in rotation.
    public func handBack(to old: ChildProcess, port: Int, sha256: String?, version: String?, abandoning new: ChildProcess?) {
        if let process, process.pid != old.pid, process.pid != new?.pid {
            logger.warning("stopping the restarted new instance: the swap switched back to the old one", metadata: ["pid": "\(process.pid)"])
            healthTask?.cancel()
            _ = process.signal(SIGKILL)
        }
        handOver(to: old, port: port, sha256: sha256, version: version)
    }

    // MARK: - The loop: events in, actions out

    private func handle(_ event: AppMachine.Event) {
        let actions = machine.handle(event)
        for action in actions {
            perform(action)
        }
    }

    private func perform(_ action: AppMachine.Action) {
        switch action {
        case .spawn(let port):
            spawn(port: port)

        case .awaitHealth(let pid, let port):
            guard let process, process.pid == pid else { return }
            let launch = self.launch
            let prepared = self.prepared
            healthTask = Task {
                let result = await launch.waitReady(prepared, process: process, port: port)
                self.healthGateFinished(pid: pid, result)
            }

        case .announceReady(let pid, let port):
            logger.info("app is healthy", metadata: ["pid": "\(pid)", "port": "\(port)"])
            let beforeReady = self.beforeReady
            Task {
                await beforeReady(port)
                self.completeReady(pid: pid, port: port)
            }

        case .announceRecovered(let pid, let port, let restarts):
            recordServing(pid: pid, port: port)
            logger.notice("app is healthy again after restart", metadata: ["pid": "\(pid)", "port": "\(port)", "restarts": "\(restarts)"])
            notifier.status(statusLine())

        case .scheduleRestart(let delay, let reason):
            logger.warning("app stopped unexpectedly: \(reason); restarting in \(delay.humanReadable)", metadata: ["restarts": "\(machine.restarts)"])
            notifier.status(statusLine() + ": last exit: \(reason)")
            if machine.hasBeenReady { metrics.appRestarted() }
            process = nil
            Task {
                try? await Task.sleep(for: delay)
                self.handle(.restartTimerFired)
            }

        case .sendStopSignal(let pid):
            logger.info("stopping app with \(config.app.stopSignal.rawValue)", metadata: ["pid": "\(pid)"])
            healthTask?.cancel()
            process?.signal(config.app.stopSignal.number)

        case .scheduleStopTimer:
            let timeout = config.app.stopTimeout
            Task {
                try? await Task.sleep(for: timeout)
                self.handle(.stopTimerFired)
            }

        case .kill(let pid):
            logger.warning("sending SIGKILL to app", metadata: ["pid": "\(pid)"])
            process?.signal(SIGKILL)

        case .finishStop:
            logger.info("app stopped", metadata: ["last_exit": "\(machine.lastExit ?? "none")"])
            process = nil
            processStarted = nil
            for waiter in stopWaiters { waiter.resume() }
            stopWaiters = []
        }
    }

    private func completeReady(pid: Int32, port: Int) {
        recordServing(pid: pid, port: port)
        logger.info("ready", metadata: ["pid": "\(pid)", "port": "\(port)"])
        notifier.ready(status: statusLine())
    }

    /// The serving instance as the journal keeps it (identity from /proc).
    public func servingRecord(pid: Int32, port: Int) -> JournalState.Instance {
        let identity = ProcessIdentity.of(pid: pid)
        return JournalState.Instance(
            pid: pid, port: port, sha256: binarySHA256, version: binaryVersion,
            startTime: identity?.startTime, executable: identity?.executable)
    }

    private func recordServing(pid: Int32, port: Int) {
        guard let store else { return }
        let record = servingRecord(pid: pid, port: port)
        Task { await store.setServing(record) }
    }

    private func spawn(port: Int) {
        do {
            let executable = uncommittedExecutable ?? config.app.binary
            let launching = try launch.prepare(executable: executable, port: port)
            let child = try ProcessSpawner.spawn(launching.request)
            prepared = launching
            process = child
            processStarted = .now
            processStartedWall = Clock.now()
            logger.info("started app", metadata: ["pid": "\(child.pid)", "port": "\(port)", "binary": "\(executable)"])
            watchExit(of: child)
            handle(.spawned(pid: child.pid))
        } catch {
            let reason = (error as? SpawnError)?.description ?? "cannot prepare the app instance: \(error)"
            logger.error("\(reason)")
            handle(.spawnFailed(reason: reason))
        }
    }

    private func watchExit(of child: ChildProcess) {
        Task {
            let status = await child.waitForExit() ?? .unknown
            self.processExited(child, status: status)
        }
    }

    private func processExited(_ child: ChildProcess, status: ExitStatus) {
        let uptime = processStarted.map { ContinuousClock.now - $0 } ?? .zero
        handle(.exited(pid: child.pid, status: status.description, uptime: uptime))
    }

    private func healthGateFinished(pid: Int32, _ result: HealthGate.Result) {
        switch result {
        case .healthy:
            handle(.healthy)
        case .timedOut(let problem):
            logger.error("app did not become healthy within \(config.health.startTimeout.humanReadable) (last probe: \(problem)); killing it", metadata: ["pid": "\(pid)"])
            handle(.healthGateFailed(reason: problem))
        case .exited:
            break  // the exit watcher reports it
        }
    }
}

public enum ProcessEnvironment {
    /// How an app instance is started: the daemon's environment without
    /// systemd's per-process variables (they describe the daemon, not the
    /// app), plus `[app] env` and `PORT`.
    static func appSpawnRequest(executable: String, config: AppConfig, port: Int) -> SpawnRequest {
        var environment = current()
        for key in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            environment[key] = nil
        }
        environment.merge(config.env) { $1 }
        environment["PORT"] = String(port)
        return SpawnRequest(
            executable: executable, arguments: config.arguments(port: port),
            environment: environment, workingDirectory: config.workingDirectory)
    }

    public static func current() -> [String: String] {
        var environment: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return environment
    }
}

/// What `<binary>.bak` holds: the `from` of the last committed swap when its
/// sha256 still matches the file, else the file's own sha256 (and a version
/// from history if one is known for it).
enum BackupIdentity {
    static func of(binary: String, history: [HistoryEntry]) -> BinaryIdentity? {
        let path = BinaryCommitter.backupPath(for: binary)
        guard let sha = FileDigest.sha256(path: path) else { return nil }
        if let last = history.last(where: { $0.result == .ok }), last.from.sha256 == sha {
            return last.from
        }
        let version = history.first { $0.to.sha256 == sha }?.to.version ?? history.first { $0.from.sha256 == sha }?.from.version
        return BinaryIdentity(sha256: sha, version: version)
    }
}
