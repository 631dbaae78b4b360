#if canImport(Glibc)
import Glibc
#endif
import Logging
import SupervisorCore
import SupervisorShared
import SystemBindings

/// The app in steady state: `AppMachine` decides (first start, health
/// gate, restarts with backoff, stop); this performs what it decides and
/// feeds the outcomes back.
extension Supervisor {
    func handleApp(_ event: AppMachine.Event) {
        for action in app.handle(event) {
            performApp(action)
        }
    }

    private func performApp(_ action: AppMachine.Action) {
        switch action {
        case .spawn(let port):
            spawn(port: port)

        case .awaitHealth(let pid, let port):
            guard let process, process.pid == pid else { return }
            let launch = self.launch
            let prepared = self.prepared
            let waitReady = effects.waitReady
            launchJob {
                let result = await waitReady(launch, prepared, process, port)
                await self.healthGateFinished(pid: pid, result)
            }

        case .announceReady(let pid, let port):
            logger.info("app is healthy", metadata: ["pid": "\(pid)", "port": "\(port)"])
            let firstReady = self.firstReady, sleep = effects.sleep
            launchJob {
                // READY=1 only once the proxy routes to the app: a failed update is
                // tried again with backoff (1 s doubling to 30 s), each try logged.
                var delay: Duration = .seconds(1)
                var attempt = 1
                while let problem = await firstReady(port) {
                    await self.firstStartBlocked(problem, attempt: attempt, retryIn: delay)
                    await sleep(delay)
                    if Task.isCancelled { return }
                    delay = min(delay * 2, .seconds(30))
                    attempt += 1
                }
                await self.completeFirstReady(pid: pid, port: port)
            }

        case .announceRecovered(let pid, let port, let restarts):
            recordServing(pid: pid, port: port)
            logger.notice("app is healthy again after restart", metadata: ["pid": "\(pid)", "port": "\(port)", "restarts": "\(restarts)"])
            if firstStartDone && !readyAnnounced {
                // The first instance died while the first start finished: this one is the ready one.
                readyAnnounced = true
                logger.info("ready", metadata: ["pid": "\(pid)", "port": "\(port)"])
                notifier.ready(status: statusLine())
            } else {
                notifier.status(statusLine())
            }
            // Until the first start is over (recovery still running), nothing may start a swap.
            if firstStartDone {
                perform(operations.handle(.appReady))
                // The first instance died before an emergency rollback was decided: decide now.
                continueEmergencyRollback()
            }

        case .scheduleRestart(let delay, let reason):
            logger.warning("app stopped unexpectedly: \(reason); restarting in \(delay.humanReadable)", metadata: ["restarts": "\(app.restarts)"])
            notifier.status(statusLine() + ": last exit: \(reason)")
            if app.hasBeenReady { metrics.appRestarted() }
            process = nil
            after(delay) { $0.handleApp(.restartTimerFired) }

        case .sendStopSignal(let pid):
            logger.info("stopping app with \(config.app.stopSignal.rawValue)", metadata: ["pid": "\(pid)"])
            process?.signal(config.app.stopSignal.number)

        case .scheduleStopTimer:
            after(config.app.stopTimeout) { $0.handleApp(.stopTimerFired) }

        case .kill(let pid):
            logger.warning("sending SIGKILL to app", metadata: ["pid": "\(pid)"])
            process?.signal(SIGKILL)

        case .discard(let pid):
            logger.warning("not in rotation: killing", metadata: ["pid": "\(pid)"])

        case .finishStop:
            logger.info("app stopped", metadata: ["last_exit": "\(app.lastExit ?? "none")"])
            process = nil
            processStarted = nil
            perform(operations.handle(.appStopped))
        }
    }

    private func firstStartBlocked(_ problem: String, attempt: Int, retryIn delay: Duration) {
        startProblem = problem
        logger.error("first start, try \(attempt): \(problem); not ready (READY=1 waits), trying again in \(delay.humanReadable)")
        // systemd's start timeout would otherwise SIGTERM us, and a stop stops
        // the app: ask for more time with every try, as long as the tries go on.
        let moreTime = (delay + .seconds(60)).components.seconds * 1_000_000
        _ = notifier.send(["STATUS=starting: \(problem)", "EXTEND_TIMEOUT_USEC=\(moreTime)"])
    }

    private func completeFirstReady(pid: Int32, port: Int) {
        startProblem = nil
        // Recovery is over (firstReady finished it): no swap is in progress,
        // none could start before this (requests waited for it).
        journalState.swap = nil
        firstStartDone = true
        // The app may have crashed and restarted while firstReady ran: record who serves now.
        guard let current = servingInstance() else {
            logger.warning("the app is not running at the end of its first start (it exited meanwhile); READY=1 waits for its restart", metadata: ["pid": "\(pid)"])
            return
        }
        recordServing(pid: current.process.pid, port: current.port)
        keepServingRelease(port: current.port)
        logger.info("ready", metadata: ["pid": "\(current.process.pid)", "port": "\(current.port)"])
        readyAnnounced = true
        notifier.ready(status: statusLine())
        perform(operations.handle(.appReady))
        continueEmergencyRollback()
    }

    /// The release ledger knows the binary that serves at the first start (a
    /// service run before it had a ledger, or a fresh install): recorded and
    /// kept, when `<binary>` is what runs.
    private func keepServingRelease(port: Int) {
        guard let sha = serving.sha256 else { return }
        let store = ReleaseStore(stateDirectory: config.stateDirectory), binary = config.app.binary, version = serving.version
        let logger = self.logger
        let probe = SchemaProbe(config: config.health), base = SchemaProbe.base(port: port, listen: config.app.listen)
        launchJob {
            var read: String?
            if let probe, let base {
                switch await probe.read(base: base) {
                case .success(let value): read = value
                case .failure(let why): logger.warning("releases: the serving release's schema (\(probe.field)) was not read: \(why)")
                }
            }
            let schema = read
            await BlockingThread.run {
                let known = store.load().release(sha)
                guard known == nil || (known?.schema == nil && schema != nil) else { return }
                guard FileDigest.sha256(path: binary) == sha else { return }
                do {
                    try store.keep(binary, sha256: sha)
                    try store.update { ledger in
                        // A swap may have recorded it meanwhile.
                        if ledger.release(sha) == nil {
                            ledger.served(ReleaseLedger.Release(sha256: sha, version: version, schema: schema, servedAt: WallClock.rfc3339Now(), callerUID: nil))
                        } else if let schema, ledger.release(sha)?.schema == nil {
                            ledger.recordSchema(schema, for: sha)
                        }
                    }
                } catch {
                    logger.warning("releases: cannot record the serving binary: \(error)")
                }
            }
        }
    }

    /// Fork and exec block until the exec is known to have worked: a job
    /// does it on a blocking thread; `AppMachine` waits in `starting` (a stop
    /// asked meanwhile stops what the spawn produces).
    private func spawn(port: Int) {
        let executable = uncommittedExecutable ?? config.app.binary
        if servingFromJournal && uncommittedExecutable == nil {
            // The adopted instance ran what the journal said; a restart runs the file as it is now.
            servingFromJournal = false
            identifyServingFile()
        }
        let launching: AppLaunch.Prepared
        do {
            launching = try launch.prepare(executable: executable, port: port)
        } catch {
            spawnFinished(.failure(SpawnFailure("cannot prepare the app instance: \(error)")), port: port, executable: executable, launching: nil)
            return
        }
        let request = launching.request
        spawnCount += 1
        let number = spawnCount
        pendingSpawn = number
        launchJob {
            let outcome: Result<ChildProcess, SpawnFailure>
            do throws(SpawnError) {
                outcome = .success(try await BlockingThread.run { () throws(SpawnError) in try ProcessSpawner.spawn(request) })
            } catch {
                outcome = .failure(SpawnFailure(error.description))
            }
            await self.spawnFinished(outcome, number: number, port: port, executable: executable, launching: launching)
        }
    }

    private func spawnFinished(_ outcome: Result<ChildProcess, SpawnFailure>, number: Int? = nil, port: Int, executable: String, launching: AppLaunch.Prepared?) {
        if let number, pendingSpawn != number {
            // Supervision moved on (a hand-over) or a newer spawn began meanwhile.
            if case .success(let child) = outcome {
                logger.warning("stopping the instance just started: supervision moved on meanwhile", metadata: ["pid": "\(child.pid)"])
                child.signal(SIGKILL)
            }
            return
        }
        pendingSpawn = nil
        switch outcome {
        case .success(let child):
            let actions = app.handle(.spawned(pid: child.pid))
            if actions == [.discard(pid: child.pid)] {
                logger.warning("stopping the instance just started: supervision moved to another one meanwhile", metadata: ["pid": "\(child.pid)"])
                child.signal(SIGKILL)
                return
            }
            prepared = launching
            process = child
            processStarted = .now
            processStartedWall = WallClock.now()
            logger.info("started app", metadata: ["pid": "\(child.pid)", "port": "\(port)", "binary": "\(executable)"])
            watchExit(of: child)
            for action in actions { performApp(action) }
        case .failure(let failure):
            logger.error("\(failure.reason)")
            handleApp(.spawnFailed(reason: failure.reason))
        }
    }

    /// Waits for `child`'s exit (once per process) and reports it as an event.
    func watchExit(of child: ChildProcess) {
        guard watchedPIDs.insert(child.pid).inserted else { return }
        launchJob {
            // nil: this wait was cancelled (the daemon is going away), not an exit.
            guard let status = await child.waitForExit() else { return }
            await self.processExited(child, status: status)
        }
    }

    private func processExited(_ child: ChildProcess, status: ExitStatus) {
        watchedPIDs.remove(child.pid)
        let uptime = process?.pid == child.pid ? processStarted.map { ContinuousClock.now - $0 } ?? .zero : .zero
        handleApp(.exited(pid: child.pid, status: status.description, uptime: uptime))
    }

    private func healthGateFinished(pid: Int32, _ result: HealthGate.Result) {
        // A result for an instance that is no longer the one being gated is stale.
        guard case .awaitingHealth(let gated, _) = app.state, gated == pid else { return }
        switch result {
        case .healthy:
            handleApp(.healthy)
        case .timedOut(let problem):
            logger.error("app did not become healthy within \(config.health.startTimeout.humanReadable) (last probe: \(problem)); killing it", metadata: ["pid": "\(pid)"])
            handleApp(.healthGateFailed(reason: problem))
        case .exited:
            break  // the exit watcher reports it
        }
    }

    /// Hashes `<binary>` (and asks its version) off this actor, then records it as what serves,
    /// unless an operation moved files meanwhile (it then knows what serves itself).
    private func identifyServingFile() {
        let binary = config.app.binary, command = config.app.versionCommand, timeout = config.health.startTimeout, runAs = launch.runAs.app
        launchJob {
            let sha = await BlockingThread.run { FileDigest.sha256(path: binary) }
            let version: String? = if let command { await VersionProbe.version(of: binary, command: command, timeout: timeout, as: runAs) } else { nil }
            await self.servingFileIdentified(BinaryIdentity(sha256: sha, version: version))
        }
    }

    private func servingFileIdentified(_ identity: BinaryIdentity) {
        guard uncommittedExecutable == nil, operations.busyPhase == nil, hold == nil else { return }
        serving = identity
        metrics.setServing(version: identity.version, sha256: identity.sha256)
        if let current = servingInstance() { recordServing(pid: current.process.pid, port: current.port) }
    }
}

struct SpawnFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
