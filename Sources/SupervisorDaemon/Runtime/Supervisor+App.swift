#if canImport(Glibc)
import Glibc
#endif
import Logging
import SupervisorCore
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
            launchJob {
                let result = await launch.waitReady(prepared, process: process, port: port)
                await self.healthGateFinished(pid: pid, result)
            }

        case .announceReady(let pid, let port):
            logger.info("app is healthy", metadata: ["pid": "\(pid)", "port": "\(port)"])
            let firstReady = self.firstReady
            launchJob {
                await firstReady(port)
                await self.completeFirstReady(pid: pid, port: port)
            }

        case .announceRecovered(let pid, let port, let restarts):
            recordServing(pid: pid, port: port)
            logger.notice("app is healthy again after restart", metadata: ["pid": "\(pid)", "port": "\(port)", "restarts": "\(restarts)"])
            notifier.status(statusLine())
            perform(operations.handle(.appReady))

        case .scheduleRestart(let delay, let reason):
            logger.warning("app stopped unexpectedly: \(reason); restarting in \(delay.humanReadable)", metadata: ["restarts": "\(app.restarts)"])
            notifier.status(statusLine() + ": last exit: \(reason)")
            if app.hasBeenReady { metrics.appRestarted() }
            process = nil
            launchJob {
                try? await Task.sleep(for: delay)
                await self.handleApp(.restartTimerFired)
            }

        case .sendStopSignal(let pid):
            logger.info("stopping app with \(config.app.stopSignal.rawValue)", metadata: ["pid": "\(pid)"])
            process?.signal(config.app.stopSignal.number)

        case .scheduleStopTimer:
            let timeout = config.app.stopTimeout
            launchJob {
                try? await Task.sleep(for: timeout)
                await self.handleApp(.stopTimerFired)
            }

        case .kill(let pid):
            logger.warning("sending SIGKILL to app", metadata: ["pid": "\(pid)"])
            process?.signal(SIGKILL)

        case .finishStop:
            logger.info("app stopped", metadata: ["last_exit": "\(app.lastExit ?? "none")"])
            process = nil
            processStarted = nil
            perform(operations.handle(.appStopped))
        }
    }

    private func completeFirstReady(pid: Int32, port: Int) {
        // Recovery is over (firstReady finished it): no swap is in progress.
        journalState.swap = nil
        recordServing(pid: pid, port: port)
        logger.info("ready", metadata: ["pid": "\(pid)", "port": "\(port)"])
        notifier.ready(status: statusLine())
        perform(operations.handle(.appReady))
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
            handleApp(.spawned(pid: child.pid))
        } catch {
            let reason = (error as? SpawnError)?.description ?? "cannot prepare the app instance: \(error)"
            logger.error("\(reason)")
            handleApp(.spawnFailed(reason: reason))
        }
    }

    /// Waits for `child`'s exit (once per process) and reports it as an event.
    func watchExit(of child: ChildProcess) {
        guard watchedPIDs.insert(child.pid).inserted else { return }
        launchJob {
            let status = await child.waitForExit() ?? .unknown
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
}
