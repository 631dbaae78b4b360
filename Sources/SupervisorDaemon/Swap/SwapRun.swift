#if canImport(Glibc)
import Glibc
#endif
import Logging
import SupervisorCore
import SupervisorShared
import SystemBindings

/// The effects of one swap, in order: asks `SwapMachine` what to do next,
/// does it (files, processes, proxy), and feeds the outcome back. The swap's
/// decisions are the machine's; who serves, the lock and the journal are
/// the owner's (`Supervisor`), which this tells each change as it happens.
/// What it keeps itself are the facts of its own effects (the staged copy,
/// the new child), which nothing else reads until it reports them.
actor SwapRun {
    struct Context: Sendable {
        let id: String
        let ticket: OperationMachine.Ticket
        let action: SwapAction
        let source: String
        let callerUID: UInt32?
        /// Whose rights the source is opened with (nil: the daemon's).
        let opener: ProcessCredentials?
        /// false: only a failure goes into history.
        let recordsSuccess: Bool
        let config: SupervisorConfig
        let owner: Supervisor
        let driver: any ProxyDriver
        let journal: StateJournal
        /// How the new instance starts (a restart's re-read `[app]`).
        let launch: AppLaunch
        /// How the old instance was started: what supervision goes back to if the swap is undone after its switch.
        let servingLaunch: AppLaunch
        /// Said before the first phase (what a restart applies).
        let notes: [String]
        /// `rollback --restore-backup`: the backup `[hooks] restore` puts back while no instance runs.
        var restoreBackup: String? = nil
        let effects: SupervisorEffects
        let logger: Logger
        let report: @Sendable (SwapStreamLine) -> Void
    }

    private let context: Context
    private var machine: SwapMachine
    private let started = ContinuousClock.now
    private var phaseStarted: (SwapPhase, ContinuousClock.Instant)?
    private var phasesMS: [String: Int64] = [:]

    private let old: Instance
    private let newPort: Int
    private var staged: BinaryStager.Staged?
    private var newVersion: String?
    private var newChild: ChildProcess?
    private var prepared: AppLaunch.Prepared?
    private var handedOver = false
    /// When the new instance began to serve (the switch confirmed).
    private var servingSince: ContinuousClock.Instant?
    private let oldIdentity: ProcessIdentity?
    private var newIdentity: ProcessIdentity?
    /// This swap's `SUPERVISOR_BACKUP_DIR`, made when its first hook runs.
    private var backupDirectory: String?
    /// `[health] schema_field` as the new instance's health answer gave it.
    private var newSchema: String?
    /// The before_start hooks all passed: the backup they wrote is whole.
    private var beforeStartPassed = false
    /// stop-start, after a failure: the old binary started again and healthy (what serves now).
    private var restartedOld: Instance?
    /// stop-start: this swap stopped the old instance.
    private var oldStopped = false
    private var releases: ReleaseStore { ReleaseStore(stateDirectory: context.config.stateDirectory) }

    init(context: Context, old: Instance) {
        self.context = context
        // The move that finishes an emergency rollback keeps nothing warm: the instance it
        // replaces is the version the operator rolled away from in an emergency.
        // Nor does a restart: the old instance runs the same binary, and a rollback
        // means `.bak`, which a restart leaves alone.
        let strategy: SwapStrategy = context.restoreBackup != nil ? .stopStart : context.config.app.strategy
        self.machine = SwapMachine(
            warmHold: context.config.health.watch > .zero && context.action != .emergencyRollback && context.action != .restart,
            strategy: strategy)
        self.old = old
        self.oldIdentity = ProcessIdentity.of(pid: old.process.pid)
        // stop-start: the new instance takes the old one's port once it is free (the proxy's
        // retries reach it there, no reload); overlap: the other port.
        newPort = strategy == .stopStart ? old.port : context.config.app.sidePort(after: old.port)
    }

    /// stop-start: the strategy, or a rollback that restores a backup (nothing may use the database meanwhile).
    private var stopsFirst: Bool { context.config.app.strategy == .stopStart || context.restoreBackup != nil }

    /// Runs the swap to its end and returns the result line.
    func run() async -> SwapResult {
        var queue = machine.handle(.begin)
        var outcome: SwapMachine.Outcome?
        while !queue.isEmpty {
            let action = queue.removeFirst()
            if case .finish(let result) = action {
                outcome = result
                continue
            }
            if let event = await perform(action) {
                // An action's outcome replaces whatever was queued after it.
                queue = machine.handle(event)
            }
        }
        return await finish(outcome ?? .failed(SwapError(.stageFailed, "swap ended without an outcome"), phase: .stage))
    }

    // MARK: - Actions

    private func perform(_ action: SwapMachine.Action) async -> SwapMachine.Event? {
        switch action {
        case .journal(let phase):
            let event = await journal(phase)
            FaultInjection.exitIfRequested(at: phase)
            return event
        case .stage:
            return await stage()
        case .runPreflight:
            return await preflight()
        case .runBeforeStartHooks:
            // The backup of what is left goes first: a restore overwrites it.
            if let error = await runBeforeStartHooks() { return .failed(error) }
            beforeStartPassed = true
            if let backup = context.restoreBackup {
                progress(.start, "restoring the backup \(backup) with [hooks] restore, while no instance runs")
                if let error = await runHooks(.restore, phase: .start, backupDirectory: backup) { return .failed(error) }
            }
            return .beforeStartHooksPassed
        case .startNew:
            return await startNew()
        case .awaitNewHealthy:
            return await awaitHealthy()
        case .switchProxy:
            return await switchProxy()
        case .drainOld:
            return await drainOld()
        case .handBackToOld:
            handedOver = false
            await context.owner.handOver(to: old, replacing: newChild, launch: context.servingLaunch)
            return nil
        case .switchProxyBack:
            return await switchProxyBack()
        case .stopOld:
            return await stopOld()
        case .restartOld:
            return await restartOld()
        case .commitBinaries:
            return await commit()
        case .startWarmHold:
            // The command returns with the old instance still listening: only once
            // nothing of the proxy's previous config can send it a new request.
            await context.driver.awaitPreviousConfigRetired { [self] message in self.progress(.watch, message) }
            if let newChild {
                progress(.watch, "warm hold: the old instance (pid \(old.process.pid)) stays alive out of rotation for \(context.config.health.watch.humanReadable); `supervisorctl rollback` flips back to it")
                let change = await schemaChange()
                if let change { progress(.watch, "the schema changed (\(change)): a failure in the window is reported, not rolled back automatically") }
                await context.owner.prepareHold(WarmHold(
                    id: context.id, action: context.action, old: old,
                    new: Instance(process: newChild, port: newPort, identity: newIdentityFacts), schemaChange: change))
            }
            return nil
        case .retireOld:
            await context.driver.awaitPreviousConfigRetired { [self] message in self.progress(.done, message) }
            let stopped = await InstanceRetirer(config: context.config, drain: context.effects.drain).retire(old.process, port: old.port)
            progress(.done, "no warm hold: stopped the old instance (pid \(old.process.pid)): \(stopped)")
            context.driver.dropFallback(port: newPort) { [self] message in self.progress(.done, message) }
            return nil
        case .stopNew:
            await stopNew()
            return .newStopped
        case .removeStaged:
            BinaryStager.removeStaged(for: context.config.app.binary)
            return .stagedRemoved
        case .finish:
            return nil
        }
    }

    private func journal(_ phase: SwapPhase) async -> SwapMachine.Event? {
        let now = ContinuousClock.now
        if let (previous, since) = phaseStarted {
            phasesMS[previous.rawValue, default: 0] += (now - since).milliseconds
        }
        phaseStarted = phase == .done ? nil : (phase, now)
        let oldRecord = JournalState.Instance(
            pid: old.process.pid, port: old.port, sha256: old.identity.sha256, version: old.identity.version,
            startTime: oldIdentity?.startTime, executable: oldIdentity?.executable, bootID: ProcessIdentity.bootID)
        let swap: JournalState.SwapInProgress? =
            phase == .done
            ? nil
            : .init(
                id: context.id, action: context.action, phase: phase, newPort: newPort, newPID: newChild?.pid,
                stagedSHA256: staged?.sha256, newStartTime: newIdentity?.startTime, old: oldRecord,
                strategy: stopsFirst ? .stopStart : nil)
        do {
            // Who serves is the owner's to say (it saw the hand-over, or a restart meanwhile).
            try await context.owner.enterPhase(context.ticket, phase, swap: swap)
        } catch {
            context.logger.error("cannot write the state journal before phase \(phase.rawValue): \(error)")
            return .journalFailed(SwapError(.journalFailed, "cannot write the state journal in \(context.journal.directory) before phase \(phase.rawValue): \(error)"))
        }
        return nil
    }

    private func stage() async -> SwapMachine.Event {
        for note in context.notes { progress(.stage, note) }
        let source = context.source, binary = context.config.app.binary
        let opener = context.opener, group = context.launch.runAs.app?.gid
        do {
            // Copy, sha256 and fsync of a whole binary: on a blocking thread, not the cooperative pool.
            let result = try await BlockingThread.run { () throws(SwapError) in
                try BinaryStager.stage(source: source, liveBinary: binary, opener: opener, group: group)
            }
            staged = result
            let identical = result.sha256 == old.identity.sha256
            if context.action == .restart, !identical {
                // Restarting would start other bytes and keep no copy of the running ones.
                let running = old.identity.sha256.map { "running \($0.prefix(12))" } ?? "what runs is not known"
                return .failed(SwapError(.stageFailed, "\(binary) is not known to be the binary that runs (sha256 \(result.sha256.prefix(12)), \(running)): it was replaced on disk since the app started, and a restart keeps no copy of what runs; swap to the new file from another path instead (`supervisorctl swap /path/to/new`), which keeps the running version as .bak"))
            }
            progress(.stage, "staged \(context.source) as \(result.path) (\(result.size) bytes, sha256 \(result.sha256.prefix(12)))" + (identical && context.action != .restart ? "; note: identical to the running binary" : ""))
            return .staged
        } catch {
            return .failed(error)
        }
    }

    private func preflight() async -> SwapMachine.Event {
        guard let staged else { return .failed(SwapError(.stageFailed, "nothing staged")) }
        if let replaced = BinaryStager.verify(staged) { return .failed(replaced) }
        if let backup = context.restoreBackup {
            // Checked while the serving version still runs: a restore that cannot happen stops nothing.
            var info = stat()
            guard lstat(backup, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                return .failed(SwapError(.noBackup, "the backup to restore, \(backup), is gone (pruned since the rollback was asked?); nothing was stopped"))
            }
            if !context.launch.isHandoff && context.config.proxy.kind == .nginx {
                progress(.preflight, "warning: behind nginx nothing holds requests while no instance runs: they get 502 until the restored version serves")
            }
        }
        if let problem = BinaryInspector.problem(with: staged.path, source: context.source) {
            return .failed(problem)
        }
        let values = ["binary": staged.path]
        for command in context.config.app.preflight {
            let argv = command.map { Placeholders.substitute($0, values) }
            let outcome = await runCommand(argv)
            guard outcome.succeeded else {
                return .failed(SwapError(.preflightFailed, "preflight \(UntrustedText.escapedLines(outcome.failureDescription))"))
            }
            progress(.preflight, "`\(argv.joined(separator: " "))` passed")
        }
        if context.config.app.versionCommand != nil, !versionOverlapsStart {
            await probeVersion(phase: .preflight)
        }
        if context.config.app.preflight.isEmpty && (context.config.app.versionCommand == nil || versionOverlapsStart) {
            progress(.preflight, "no preflight commands configured")
        }
        return .preflightPassed
    }

    private func startNew() async -> SwapMachine.Event {
        guard let staged else { return .failed(SwapError(.stageFailed, "nothing staged")) }
        if let replaced = BinaryStager.verify(staged) { return .failed(replaced) }
        let launch = context.launch
        if !launch.isHandoff, let holder = PortCheck.heldBy(port: newPort) {
            return .failed(SwapError(.portInUse, "side port \(newPort) is already in use (\(holder)); free it or change [app] ports"))
        }
        do {
            let launching = try launch.prepare(executable: staged.path, port: newPort)
            let request = launching.request
            let child = try await BlockingThread.run { () throws(SpawnError) in try ProcessSpawner.spawn(request) }
            prepared = launching
            newChild = child
            newIdentity = ProcessIdentity.of(pid: child.pid)
            progress(.start, "started the new binary on \(launch.describe(port: newPort)) (pid \(child.pid))")
            return .newStarted
        } catch let error as SpawnError {
            return .failed(SwapError(.startFailed, error.description))
        } catch {
            return .failed(SwapError(.startFailed, "cannot prepare the new instance: \(error)"))
        }
    }

    /// The version command is not a gate: with no `before_start` hook to hand
    /// the version to, it runs while the new instance starts (the switch waits
    /// for it only if it is slower than the app's start).
    private var versionOverlapsStart: Bool { context.config.hooks.beforeStart.isEmpty }

    private func probeVersion(phase: SwapPhase) async {
        guard let staged, let versionCommand = context.config.app.versionCommand else { return }
        newVersion = await VersionProbe.version(of: staged.path, command: versionCommand, timeout: context.config.health.startTimeout, as: context.launch.runAs.app)
        if let newVersion { progress(phase, "new version: \(newVersion)") }
    }

    private func awaitHealthy() async -> SwapMachine.Event {
        guard let newChild, let prepared else { return .failed(SwapError(.startFailed, "no new instance")) }
        let gate = HealthGate(config: context.config.health)
        async let versionProbed: Void = versionOverlapsStart ? probeVersion(phase: .health) : ()
        let ready = await context.effects.waitReady(context.launch, prepared, newChild, newPort)
        // Healthy: the switch waits for the version (slower than the gate only for a slow
        // command). Not healthy: leaving this scope cancels the probe, which kills it.
        if case .healthy = ready { await versionProbed }
        switch ready {
        case .healthy(let probes):
            if context.config.health.mode == .notify {
                progress(.health, "ready: READY=1 from pid \(newChild.pid) on its NOTIFY_SOCKET")
            } else {
                progress(.health, "healthy: \(context.config.health.healthyAfter) consecutive good answers from \(gate.probe.url(port: newPort)) (\(probes) probes)")
            }
            return .newHealthy
        case .exited(let status):
            return .failed(SwapError(.appExited, "the new binary \(status) before it became healthy; \(await Self.lastLines(of: newChild.pid, service: context.config.name))"))
        case .timedOut(let lastProblem):
            return .failed(SwapError(.healthTimeout, "the new binary was not healthy within \(context.config.health.startTimeout.humanReadable) (last probe of \(gate.probe.url(port: newPort)): \(lastProblem))"))
        }
    }

    private func switchProxy() async -> SwapMachine.Event {
        if stopsFirst {
            // The new instance took the old one's port or sockets: what led there leads to it.
            if let staged, let replaced = BinaryStager.verify(staged) { return .failed(replaced) }
            progress(.switch, context.launch.isHandoff ? "stop-start: the new instance accepts on the supervisor's sockets" : "stop-start: the new instance serves on port \(newPort), where the proxy already sends requests; nothing to reload")
            return await switched()
        }
        // What started was checked just before it started; a file replaced since
        // (during the health phase) would not be what is committed: stop here,
        // while the old instance still serves.
        if let staged, let replaced = BinaryStager.verify(staged) { return .failed(replaced) }
        let log: @Sendable (String) -> Void = { [self] message in self.progress(.switch, message) }
        let check = context.config.proxy.checkURL.map { RouteCheck(url: $0, timeout: max(context.config.drain.timeout, .seconds(2))) }
        let baseline = check == nil ? nil : TCPPeers.onLocalPort(newPort)
        do {
            // The old instance lives on through the drain (or the warm hold): the proxy's fallback until it stops.
            try await context.driver.switchUpstream(to: newPort, fallback: old.port, log: log)
        } catch {
            return .failed(error)
        }
        if let check {
            switch await check.confirm(newPort: newPort, baseline: baseline) {
            case .reached(let evidence):
                progress(.switch, "confirmed end to end: \(evidence)")
            case .notReached(let problem):
                progress(.switch, "no evidence that traffic reaches the new instance: \(problem); pointing the proxy back at the old instance (port \(old.port))")
                do {
                    try await context.driver.switchUpstream(to: old.port, log: log)
                } catch {
                    // The proxy accepted the new upstream and cannot be moved back: stopping
                    // the new instance now could leave nothing serving. It goes on, said loudly.
                    progress(.switch, "warning: pointing the proxy back failed too (\(error.message) [\(error.code)]); the swap goes on with the new instance, which is healthy")
                    return await switched()
                }
                return .failed(SwapError(.proxyNotConfirmed, "the proxy did not route to the new instance within \(check.timeout.humanReadable): \(problem); the proxy points at the old instance again (check [proxy] check_url)"))
            }
        }
        return await switched()
    }

    /// The new instance serves: it is the one supervised from here.
    private func switched() async -> SwapMachine.Event {
        // From here the new instance serves: it is the one supervised.
        servingSince = ContinuousClock.now
        if let newChild {
            await context.owner.handOver(
                to: Instance(process: newChild, port: newPort, identity: newIdentityFacts), replacing: old.process, executable: staged?.path,
                launch: context.launch)
            handedOver = true
        }
        if let error = await runHooks(.afterSwitch, phase: .switch) {
            // The new version already serves: a failing after_switch hook is reported, not undone.
            progress(.switch, "warning: \(error.message)")
        }
        return .switched
    }

    private func drainOld() async -> SwapMachine.Event {
        if context.launch.isHandoff {
            progress(.drain, "socket handoff: both instances accept on the same sockets; the old one stops accepting when signalled and finishes what it has")
            return .drained
        }
        // What the proxy's previous config (nginx's previous workers) still sends the old instance comes first.
        await context.driver.awaitPreviousConfigRetired { [self] message in self.progress(.drain, message) }
        let drain = context.effects.drain
        let timeout = context.config.drain.timeout
        let port = old.port
        let newChild = self.newChild
        // The old instance still listens until it is signalled: should the new
        // one exit meanwhile, the swap switches back to it instead of stopping it.
        // Whichever ends first ends the drain (nil: the new instance exited).
        let drained: ConnectionDrainer.Result? = await withTaskGroup(of: ConnectionDrainer.Result?.self) { group in
            group.addTask { await drain(port, timeout) }
            if let newChild { group.addTask { _ = await newChild.waitForExit(); return nil } }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if let status = newChild?.exitStatus { return await newExitedWhileDraining(status) }
        switch drained ?? .unobservable {
        case .quiet(let left):
            progress(.drain, left == 0 ? "old instance has no connections" : "old instance quiet (\(left) idle keep-alive connection\(left == 1 ? "" : "s") left to close)")
        case .timedOut(let connections):
            progress(.drain, "old instance still busy after \(context.config.drain.timeout.humanReadable) (\(connections) connections); stopping it anyway")
        case .unobservable:
            progress(.drain, "cannot read connection state (sock_diag unavailable); waited one quiet period")
        }
        return .drained
    }

    private func newExitedWhileDraining(_ status: ExitStatus) async -> SwapMachine.Event {
        let pid = newChild?.pid ?? 0
        let output = await Self.lastLines(of: pid, service: context.config.name)
        progress(.drain, "the new instance (pid \(pid)) \(status) after the switch; switching back to the old instance (pid \(old.process.pid), port \(old.port)), which never stopped")
        return .newExitedWhileDraining(
            SwapError(.appExited, "the new binary (pid \(pid)) \(status) after the switch, while the old instance drained; the proxy was switched back to the old instance (pid \(old.process.pid), port \(old.port)); \(output)"))
    }

    private func switchProxyBack() async -> SwapMachine.Event {
        let log: @Sendable (String) -> Void = { [self] message in self.progress(.revert, message) }
        let takeover = context.driver.fallbackTakeover(primary: newPort)
        if takeover > .zero {
            // The old instance already answers as the fallback; a reload now would fail what the proxy is retrying.
            log("the old instance answers as the proxy's fallback; switching back in \(takeover.humanReadable), once the proxy has moved its retries there")
            await context.effects.sleep(takeover)
        }
        do {
            try await context.driver.switchUpstream(to: old.port, log: log)
        } catch {
            return .switchBackFailed(
                SwapError(.switchBackFailed, "the new binary exited after the switch, and the proxy could not be pointed back at the old instance (pid \(old.process.pid), port \(old.port)), which is alive and supervised: \(error.message) [\(error.code)]"))
        }
        progress(.revert, "the proxy serves the old instance (pid \(old.process.pid), port \(old.port)) again")
        return .switchedBack
    }

    private func stopOld() async -> SwapMachine.Event {
        let signal = context.config.app.stopSignal
        if stopsFirst {
            // Its exit is this swap's doing, not a crash for supervision to restart.
            progress(.stop, "stop-start: stopping the old instance (pid \(old.process.pid)) before the new one starts; \(waitingRequests)")
            if let restarted = await context.owner.pauseSupervision(of: old) {
                let status = await ProcessStopper.stop(restarted, signal: signal.number, timeout: context.config.app.stopTimeout)
                progress(.stop, "stopped the instance a crash restart started meanwhile (pid \(restarted.pid)): \(status)")
            }
        }
        let status = await ProcessStopper.stop(old.process, signal: signal.number, timeout: context.config.app.stopTimeout)
        switch status {
        case .stopped(let exit):
            progress(.stop, "old instance (pid \(old.process.pid)) \(exit) after \(signal.rawValue)")
        case .killed(let exit):
            progress(.stop, "old instance (pid \(old.process.pid)) ignored \(signal.rawValue) for \(context.config.app.stopTimeout.humanReadable); sent SIGKILL: \(exit)")
        case .unkillable:
            return .failed(SwapError(.commitFailed, "old instance (pid \(old.process.pid)) survived SIGKILL"))
        }
        if stopsFirst { oldStopped = true } else { context.driver.dropFallback(port: newPort) { [self] message in self.progress(.stop, message) } }
        return .oldStopped
    }

    /// Where requests go while no instance runs (stop-start).
    private var waitingRequests: String {
        if context.launch.isHandoff { return "new connections wait in the listening socket's backlog, which the supervisor holds" }
        switch context.config.proxy.kind {
        case .caddy, .caddyAPI: return "requests wait in Caddy's lb_try_duration retries"
        case .nginx, .none: return "nothing holds requests meanwhile"
        }
    }

    /// stop-start, after a failure: the old binary (`<binary>`, not yet replaced)
    /// starts again the way the old instance was started, on its port or
    /// sockets, and becomes the supervised instance once ready.
    private func restartOld() async -> SwapMachine.Event {
        let launch = context.servingLaunch
        let binary = context.config.app.binary
        do {
            let launching = try launch.prepare(executable: binary, port: old.port)
            let request = launching.request
            let child = try await BlockingThread.run { () throws(SpawnError) in try ProcessSpawner.spawn(request) }
            progress(.revert, "started the old binary again on \(launch.describe(port: old.port)) (pid \(child.pid))")
            // Supervised and journalled at once: should it exit, supervision restarts it with
            // backoff; should the daemon die meanwhile, recovery finds it by the journal.
            let restarted = Instance(process: child, port: old.port, identity: old.identity)
            await context.owner.handOver(to: restarted, replacing: nil, launch: launch)
            _ = await journal(.revert)
            switch await context.effects.waitReady(launch, launching, child, old.port) {
            case .healthy:
                restartedOld = restarted
                progress(.revert, "the old version serves again (pid \(child.pid))")
                return .oldRestarted
            case .exited(let status):
                return .oldRestartFailed(SwapError(.appExited, "the old binary (pid \(child.pid)) \(status) before it became healthy; supervision keeps starting it with backoff"))
            case .timedOut(let problem):
                child.signal(SIGKILL)
                return .oldRestartFailed(SwapError(.healthTimeout, "the old binary was not healthy within \(context.config.health.startTimeout.humanReadable) (\(problem)); supervision keeps starting it with backoff"))
            }
        } catch let error as SpawnError {
            await context.owner.resumeSupervision()
            return .oldRestartFailed(SwapError(.startFailed, "\(error.description); supervision keeps starting it with backoff"))
        } catch {
            await context.owner.resumeSupervision()
            return .oldRestartFailed(SwapError(.startFailed, "cannot prepare the old binary's start: \(error); supervision keeps starting it with backoff"))
        }
    }

    private func commit() async -> SwapMachine.Event {
        if let staged, let replaced = BinaryStager.verify(staged) { return .failed(replaced) }
        await readNewSchema()
        let binary = context.config.app.binary
        let backupReplaced: Bool
        do {
            backupReplaced = try BinaryCommitter.commit(liveBinary: binary, keepingBackup: context.action == .restart)
        } catch {
            return .failed(error)
        }
        if !backupReplaced {
            progress(.commit, "\(binary) runs again; \(BinaryCommitter.backupPath(for: binary)) is left as it was")
            await context.owner.stagedCopyCommitted()
        } else {
            progress(.commit, "\(binary) is the new binary; the previous one is kept as \(BinaryCommitter.backupPath(for: binary))")
            await context.owner.backupChanged(to: old.identity)
        }
        return .committed
    }

    private func stopNew() async {
        guard let newChild else { return }
        // After a switch back: nothing of the config that routed to it may still send it requests.
        if !stopsFirst { await context.driver.awaitPreviousConfigRetired { [self] message in self.progress(.revert, message) } }
        let status = await ProcessStopper.stop(newChild, signal: context.config.app.stopSignal.number, timeout: min(context.config.app.stopTimeout, .seconds(5)))
        progress(.revert, "stopped the new instance (pid \(newChild.pid)): \(status)")
    }

    /// Where the output of an instance that exited is: its last lines, read
    /// back from the journal (its own stream), or where to look.
    static func lastLines(of pid: Int32, service: String) async -> String {
        let lines = JournalStream.isAvailable ? await JournalTail.settledLines(pid: pid, identifier: service) : []
        guard !lines.isEmpty else { return "see its output in the service's log" }
        return "its last lines (journalctl _PID=\(pid)):\n" + lines.map { "    " + $0 }.joined(separator: "\n")
    }

    /// What the new instance runs: the staged copy's sha256 and version.
    private var newIdentityFacts: BinaryIdentity { BinaryIdentity(sha256: staged?.sha256, version: newVersion) }

    // MARK: - Reporting

    /// Emits one progress line (callable from any thread: reads only constants).
    nonisolated private func progress(_ phase: SwapPhase, _ message: String) {
        let elapsed = (ContinuousClock.now - started).milliseconds
        context.logger.info("\(context.action.rawValue) \(phase.rawValue): \(message)", metadata: ["swap.id": "\(context.id)"])
        context.report(.progress(SwapProgress(phase: phase, message: message, elapsedMS: elapsed)))
    }

    private func finish(_ outcome: SwapMachine.Outcome) async -> SwapResult {
        let total = (ContinuousClock.now - started).milliseconds
        let from = old.identity
        let to = newIdentityFacts
        // After a failed stop-start, the old binary started again serves, or nothing yet (supervision retries it).
        let servingPID = handedOver ? newChild?.pid : restartedOld?.process.pid ?? (oldStopped ? nil : old.process.pid)
        var result = SwapResult(
            ok: true, id: context.id, action: context.action, from: from, to: to,
            pid: servingPID, port: handedOver ? newPort : old.port,
            error: nil, failedPhase: nil, phasesMS: phasesMS, totalMS: total)
        // Served, and still serves: a swap undone after its switch did not leave the new version serving.
        if handedOver, let servingSince { result.servingMS = (servingSince - started).milliseconds }

        if case .failed(let error, let phase) = outcome {
            result.ok = false
            result.error = error
            result.failedPhase = phase
            context.logger.error("\(context.action.rawValue) failed in \(phase.rawValue): \(error.message)", metadata: ["swap.id": "\(context.id)", "code": "\(error.code)"])
            if let hookError = await runHooks(.onFailure, phase: phase, error: error) {
                progress(.done, "warning: \(hookError.message)")
            }
        } else {
            if context.action.isRollback, let hookError = await runHooks(.onRollback, phase: .done) {
                progress(.done, "warning: \(hookError.message)")
            }
            context.logger.notice("\(context.action.rawValue) done in \(total) ms", metadata: ["swap.id": "\(context.id)", "pid": "\(newChild?.pid ?? 0)", "port": "\(newPort)"])
        }
        result.backup = await recordRelease(result)
        if !result.ok || context.recordsSuccess {
            await context.owner.appendHistory(HistoryEntry(result: result, callerUID: context.callerUID, time: WallClock.rfc3339Now()))
        }
        return result
    }

    /// Runs one kind of hook with the facts of this swap; nil when all passed (or none configured).
    private func runHooks(_ kind: HookRunner.Kind, phase: SwapPhase, error: SwapError? = nil, backupDirectory given: String? = nil) async -> SwapError? {
        let runner = HookRunner(config: context.config, credentials: context.launch.runAs.hooks)
        guard !runner.commands(kind).isEmpty else { return nil }
        let directory: String? = if let given { given } else { await makeBackupDirectory(phase: phase) }
        let restore = kind == .beforeStart ? context.restoreBackup : nil
        let facts = HookRunner.Facts(
            action: context.action, phase: phase, oldBinary: context.config.app.binary, newBinary: staged?.path,
            oldSHA256: old.identity.sha256, newSHA256: staged?.sha256, oldVersion: old.identity.version, newVersion: newVersion, error: error,
            backupDirectory: directory, restoreBackup: restore)
        return await runner.run(kind, facts) { [self] line in self.progress(phase, line) }
    }

    /// The swap's `SUPERVISOR_BACKUP_DIR`: `STATE_DIR/backups/<swap id>`, empty,
    /// 0700, the hooks' user's. Nil (said in the progress) when it cannot be made.
    private func makeBackupDirectory(phase: SwapPhase) async -> String? {
        if let backupDirectory { return backupDirectory }
        let store = releases, id = context.id
        let owner = context.launch.runAs.hooks.map { (uid: $0.uid, gid: $0.gid) }
        do {
            backupDirectory = try await BlockingThread.run { () throws(ReleaseStore.StoreError) in
                do { return try store.makeBackupDirectory(swapID: id, owner: owner) } catch let error as ReleaseStore.StoreError { throw error } catch {
                    throw ReleaseStore.StoreError("\(error)")
                }
            }
        } catch {
            progress(phase, "warning: no SUPERVISOR_BACKUP_DIR for the hooks: \(error.description)")
        }
        return backupDirectory
    }

    /// `before_start` hooks with the swap's `SUPERVISOR_BACKUP_DIR`; a directory that
    /// cannot be made fails them (a backup hook would write elsewhere, or nowhere).
    private func runBeforeStartHooks() async -> SwapError? {
        guard !context.config.hooks.beforeStart.isEmpty else { return nil }
        guard let directory = await makeBackupDirectory(phase: .start) else {
            return SwapError(.hookFailed, "before_start hooks not run: no SUPERVISOR_BACKUP_DIR could be made under \(releases.backupsDirectory) (see the warning above); nothing was started")
        }
        if let hooksUser = context.launch.runAs.hooks, hooksUser.uid != 0 {
            // The state directory is root's; the hooks' user must be able to reach its own directory in it.
            let reach = try? await CommandRunner.run(["/usr/bin/test", "-w", directory], environment: [:], credentials: hooksUser, timeout: .seconds(5))
            if reach?.succeeded != true {
                return SwapError(
                    .hookFailed,
                    "before_start hooks not run: the hooks' user \(hooksUser.user) cannot write its SUPERVISOR_BACKUP_DIR \(directory): it needs search permission on every directory above it (under systemd the unit's StateDirectory is 0755; else `chmod o+x \(context.config.stateDirectory)` or an ACL: `setfacl -m u:\(hooksUser.user):x \(context.config.stateDirectory)`); nothing was started")
            }
        }
        return await runHooks(.beforeStart, phase: .start, backupDirectory: directory)
    }

    /// `[health] schema_field` of the new instance, which serves by now (read once, recorded with its release).
    private func readNewSchema() async {
        guard let probe = SchemaProbe(config: context.config.health),
            let base = SchemaProbe.base(port: newPort, listen: context.config.app.listen)
        else { return }
        switch await probe.read(base: base) {
        case .success(let value):
            newSchema = value
            progress(.commit, "schema: \(probe.field) = \(UntrustedText.quoted(value))")
        case .failure(let why):
            progress(.commit, "warning: the schema was not recorded (\(base)\(probe.path), field \(probe.field)): \(why)")
        }
    }

    /// "1 → 2" when the old release's recorded schema and the new one's differ.
    private func schemaChange() async -> String? {
        guard let newSchema, let oldSHA = old.identity.sha256 else { return nil }
        let store = releases
        guard let oldSchema = await BlockingThread.run({ store.load().release(oldSHA)?.schema }), oldSchema != newSchema else { return nil }
        return "\(context.config.health.schemaField ?? "schema") \(UntrustedText.quoted(oldSchema)) → \(UntrustedText.quoted(newSchema))"
    }

    /// After the outcome: what the hooks left in the backup directory (an empty
    /// one is removed), and the release ledger: the backup goes with the
    /// release it protects (the one serving before), a committed binary is
    /// kept under its sha256, and releases past `keep_releases` are pruned
    /// (never the one serving nor the one in `.bak`).
    private func recordRelease(_ result: SwapResult) async -> ReleaseLedger.Backup? {
        let store = releases, directory = backupDirectory, id = context.id
        let binary = context.config.app.binary, keep = context.config.app.keepReleases
        let committed = result.ok && context.action != .restart && handedOver
        let old = self.old.identity, new = newIdentityFacts, caller = context.callerUID, schema = newSchema
        // A backup whose hooks did not all pass may be partial: it never replaces a release's earlier one.
        let whole = beforeStartPassed
        // What `.bak` holds after this operation is never pruned, nor what serves.
        let backupFile = await context.owner.backup?.sha256
        let (backup, problems) = await BlockingThread.run { () -> (ReleaseLedger.Backup?, [String]) in
            var problems: [String] = []
            var backup: ReleaseLedger.Backup?
            if let directory {
                let size = ReleaseStore.size(of: directory)
                if size.entries == 0 {
                    store.removeBackup(directory)
                } else {
                    backup = ReleaseLedger.Backup(path: directory, sizeBytes: size.bytes, swapID: id)
                }
            }
            do {
                // Files go only once the ledger that no longer names them is written.
                let removals = try store.update { ledger -> (backups: [String], releases: [ReleaseLedger.Release]) in
                    var backups: [String] = []
                    let now = WallClock.rfc3339Now()
                    if let oldSHA = old.sha256 {
                        if ledger.release(oldSHA) == nil {
                            // Served before the ledger knew it (the first swap after an upgrade of supervisord).
                            ledger.served(ReleaseLedger.Release(sha256: oldSHA, version: old.version, servedAt: now, callerUID: nil))
                        }
                        if let backup {
                            if let earlier = ledger.release(oldSHA)?.backup, earlier.path != backup.path, !whole {
                                // Kept on disk (a hook that failed after the dump may have left the only copy), not recorded.
                                problems.append("the backup \(backup.path) comes from hooks that failed: kept on disk but not recorded; the release keeps its earlier backup \(earlier.path)")
                            } else {
                                if let earlier = ledger.release(oldSHA)?.backup, earlier.path != backup.path { backups.append(earlier.path) }
                                ledger.attach(backup, to: oldSHA)
                            }
                        }
                    }
                    if committed, let newSHA = new.sha256 {
                        ledger.served(ReleaseLedger.Release(sha256: newSHA, version: new.version, schema: schema, servedAt: now, callerUID: caller))
                        do { try store.keep(binary, sha256: newSHA) } catch { problems.append("\(error)") }
                        if let oldSHA = old.sha256 {
                            do { try store.keep(BinaryCommitter.backupPath(for: binary), sha256: oldSHA) } catch { problems.append("\(error)") }
                        }
                    }
                    let protected = Set([committed ? new.sha256 : nil, old.sha256, backupFile].compactMap { $0 })
                    return (backups, ledger.prune(keep: keep, protecting: protected))
                }
                for path in removals.backups { store.removeBackup(path) }
                for dropped in removals.releases { store.remove(dropped) }
            } catch {
                problems.append("cannot write \(store.ledgerPath): \(error)")
            }
            return (backup, problems)
        }
        for problem in problems { progress(.done, "warning: releases: \(problem)") }
        if let backup { progress(.done, "backup: \(backup.path) (\(ByteCount.human(backup.sizeBytes))), kept with the release it protects (\(old.version ?? String((old.sha256 ?? "?").prefix(12))))") }
        return backup
    }

    private func runCommand(_ argv: [String]) async -> CommandOutcome {
        do {
            return try await CommandRunner.run(argv, environment: ProcessEnvironment.current(), workingDirectory: context.config.app.workingDirectory, credentials: context.launch.runAs.app, timeout: context.config.health.startTimeout)
        } catch {
            return CommandOutcome(argv: argv, status: .exited(code: 127), output: error.description, timedOut: false)
        }
    }
}
