#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import Logging
import SupervisorCore
import SupervisorShared
import SystemBindings

/// `[health] watch`: after a swap the old instance stays alive, out of
/// rotation, while the new one keeps being probed. Inside the window a
/// rollback is a flip of the proxy back to the old instance (nothing
/// starts); `healthy_after` consecutive failed probes, or the new instance
/// exiting, ask for the same flip on their own (`auto-rollback`). After the
/// window the old instance is drained and stopped. `OperationMachine`
/// decides which of these may run; the flip and the end hold the lock.
extension Supervisor {
    /// Watches the new instance for the window; reports failures and the window's end as events.
    func watch(_ hold: WarmHold) {
        logger.info("warm hold: old instance (pid \(hold.old.process.pid), port \(hold.old.port)) kept out of rotation for \(config.health.watch.humanReadable)")
        let health = config.health
        let effects = self.effects
        launchJob {
            let deadline = ContinuousClock.now + health.watch
            var failures = 0
            var exitReported = false
            while ContinuousClock.now < deadline, await self.isHolding(hold.id) {
                if let status = hold.old.process.exitStatus {
                    // Nothing warm to flip back to: the hold is over (a rollback is an ordinary one now).
                    await self.oldInstanceGone(hold.id, status)
                    return
                }
                if let status = hold.new.process.exitStatus {
                    if !exitReported {
                        exitReported = true
                        await self.holdFailed(hold.id, reason: "the new instance \(status) during the watch window")
                    }
                    await effects.sleep(health.interval)
                    continue
                }
                switch await effects.probe(hold.new.port) {
                case .healthy:
                    failures = 0
                case .unhealthy(let problem):
                    failures += 1
                    if failures >= health.healthyAfter {
                        failures = 0
                        await self.holdFailed(hold.id, reason: "\(health.healthyAfter) consecutive failed health probes of the new instance (last: \(problem))")
                    }
                }
                await effects.sleep(health.interval)
            }
            await self.holdWindowElapsed(hold.id)
        }
    }

    private func isHolding(_ id: String) -> Bool {
        hold?.id == id
    }

    /// A failure the watch of hold `id` saw; a late one (that hold is over) changes nothing.
    private func holdFailed(_ id: String, reason: String) {
        guard let hold, hold.id == id else { return }
        if let change = hold.schemaChange {
            // The old code on the new schema could do worse than a failing new version: reported, not done.
            guard !hold.rollbackWithheld else { return }
            self.hold?.rollbackWithheld = true
            let message = "warm hold: \(reason); no automatic rollback: it would cross a schema change (\(change)); `supervisorctl rollback --restore-backup` or `--force` decides"
            logger.error("\(message)")
            holdProblem = message
            metrics.autoRollbackWithheld()
            notifier.status(statusLine() + ": automatic rollback withheld (schema changed)")
            return
        }
        operationEvent(.holdFailed(reason: reason))
    }

    private func oldInstanceGone(_ id: String, _ status: ExitStatus) {
        guard hold?.id == id else { return }
        logger.warning("warm hold: the old instance (pid \(hold?.old.process.pid ?? 0)) \(status); the hold ends, a rollback now starts \(config.app.binary).bak")
        holdWindowElapsed(id)
    }

    private func holdWindowElapsed(_ id: String) {
        guard hold?.id == id else { return }
        hold?.windowElapsed = true
        operationEvent(.holdWindowElapsed)
    }

    /// Ends the hold: the old instance is drained and stopped.
    func endHold() async {
        guard let hold else {
            operationEvent(.holdEnded)
            return
        }
        // The watch of this hold stops here, not after the drain (it would report the old instance's exit).
        self.hold = nil
        let result = await InstanceRetirer(config: config, drain: effects.drain).retire(hold.old.process, port: hold.old.port)
        logger.info("warm hold over: old instance (pid \(hold.old.process.pid)) \(result)")
        driver.dropFallback(port: hold.new.port) { [logger] message in logger.info("proxy: \(message)") }
        do {
            try await writeJournal(swap: nil, serving: nil)
        } catch {
            logger.error("cannot write the state journal \(journal.statePath): \(error)")
        }
        operationEvent(.holdEnded)
    }

    /// Flips the proxy back to the old instance, which serves again; the
    /// files trade places; the new instance is drained and stopped. The flip
    /// is journalled before it acts (recovery finishes it the same way).
    func flip(_ ticket: OperationMachine.Ticket?, _ action: SwapAction, reason: String?) async {
        guard let hold else {
            await finishFlip(ticket, result: SwapResult(
                ok: false, id: "flip", action: action, from: serving, to: backup ?? BinaryIdentity(sha256: nil, version: nil), pid: process?.pid,
                port: servingInstance()?.port, error: SwapError(.notRunning, "the warm hold is over; nothing was changed"), failedPhase: .flip,
                phasesMS: [:], totalMS: 0))
            return
        }
        let started = ContinuousClock.now
        let say: @Sendable (String) -> Void = { [logger] message in logger.notice("\(action.rawValue): \(message)", metadata: ["swap.id": "\(hold.id)"]) }
        func report(_ message: String) {
            say(message)
            progress(ticket, .flip, message)
        }
        let from = hold.new.identity, to = hold.old.identity
        report("rolling back: \(reason ?? "requested inside the warm hold: no new instance is started")")
        let oldRecord = Self.record(pid: hold.old.process.pid, port: hold.old.port, identity: hold.old.identity)
        let newRecord = Self.record(pid: hold.new.process.pid, port: hold.new.port, identity: hold.new.identity)
        let flipRecord = JournalState.SwapInProgress(
            id: hold.id, action: action, phase: .flip, newPort: hold.new.port, newPID: hold.new.process.pid,
            stagedSHA256: hold.new.identity.sha256, newStartTime: newRecord.startTime, old: oldRecord)
        var outcome: Result<Void, SwapError>
        if let status = hold.old.process.exitStatus {
            // Nothing to flip back to: the hold ends; the new version keeps serving.
            self.hold?.windowElapsed = true
            await finishFlip(ticket, result: SwapResult(
                ok: false, id: hold.id, action: action, from: from, to: to, pid: hold.new.process.pid, port: hold.new.port,
                error: SwapError(.notRunning, "the old instance (pid \(hold.old.process.pid)) \(status) during the warm hold: there is nothing warm to flip back to, and the new version keeps serving; `supervisorctl rollback` again starts \(config.app.binary).bak the ordinary way"),
                failedPhase: .flip, phasesMS: [:], totalMS: (ContinuousClock.now - started).milliseconds))
            return
        }
        do {
            try await writeJournal(swap: flipRecord, serving: oldRecord)
            FaultInjection.exitIfRequested(at: .flip)
            outcome = .success(())
        } catch {
            outcome = .failure(SwapError(.journalFailed, "cannot write the state journal in \(journal.directory): \(error); nothing was changed"))
        }
        if case .success = outcome {
            let takeover = driver.fallbackTakeover(primary: hold.new.port)
            if hold.new.process.exitStatus != nil, takeover > .zero {
                // The old instance already answers as the fallback; a reload now would fail what the proxy is retrying.
                report("the old instance answers as the proxy's fallback; flipping in \(takeover.humanReadable), once the proxy has moved its retries there")
                await effects.sleep(takeover)
            }
            do throws(SwapError) {
                try await driver.switchUpstream(to: hold.old.port) { message in
                    say(message)
                }
            } catch {
                outcome = .failure(error)
            }
        }
        if case .failure(let error) = outcome {
            logger.error("\(action.rawValue) failed: \(error.message)")
            let watchRecord = JournalState.SwapInProgress(
                id: hold.id, action: hold.action, phase: .watch, newPort: hold.new.port, newPID: hold.new.process.pid,
                stagedSHA256: hold.new.identity.sha256, newStartTime: newRecord.startTime, old: oldRecord)
            try? await writeJournal(swap: watchRecord, serving: newRecord)
            await finishFlip(ticket, result: SwapResult(
                ok: false, id: hold.id, action: action, from: from, to: to, pid: hold.new.process.pid, port: hold.new.port,
                error: error, failedPhase: .flip, phasesMS: [:], totalMS: (ContinuousClock.now - started).milliseconds))
            return
        }
        report("the proxy serves the old instance (pid \(hold.old.process.pid), port \(hold.old.port)) again")
        let switched = ContinuousClock.now
        handOver(to: hold.old, replacing: hold.new.process)
        // The hold is over: its watch stops (the new instance's exit below is expected).
        self.hold = nil
        let binary = config.app.binary
        if csup_rename_exchange(binary, BinaryCommitter.backupPath(for: binary)) == 0 {
            AtomicFile.syncDirectory(of: binary)
            report("\(binary) and \(binary).bak traded places: the old binary is live again")
            backupChanged(to: hold.new.identity)
        } else {
            report("warning: could not exchange \(binary) and \(binary).bak: \(String(cString: strerror(errno))); a restart of the app starts \(binary).bak")
            uncommittedExecutable = BinaryCommitter.backupPath(for: binary)
        }
        await driver.awaitPreviousConfigRetired { message in say(message) }
        let stopped = await InstanceRetirer(config: config, drain: effects.drain).retire(hold.new.process, port: hold.new.port)
        report("stopped the new instance (pid \(hold.new.process.pid)): \(stopped)")
        do {
            try await writeJournal(swap: nil, serving: nil)
        } catch {
            logger.error("cannot write the state journal \(journal.statePath): \(error)")
        }
        let stoppedAt = ContinuousClock.now
        if !config.hooks.onRollback.isEmpty {
            // Inside the lock, like a swap's hooks: the next operation does not overlap it.
            let facts = HookRunner.Facts(
                action: action, phase: .done, oldBinary: binary, newBinary: nil,
                oldSHA256: from.sha256, newSHA256: to.sha256, oldVersion: from.version, newVersion: to.version, error: nil)
            if let error = await HookRunner(config: config, credentials: launch.runAs.hooks).run(.onRollback, facts, onLine: { line in say("on_rollback: \(line)") }) {
                report("warning: \(error.message)")
            }
        }
        var flipped = SwapResult(
            ok: true, id: hold.id, action: action, from: from, to: to, pid: hold.old.process.pid, port: hold.old.port, error: nil,
            failedPhase: nil, phasesMS: ["switch": (switched - started).milliseconds, "stop": (stoppedAt - switched).milliseconds],
            totalMS: (ContinuousClock.now - started).milliseconds)
        flipped.servingMS = (switched - started).milliseconds
        await finishFlip(ticket, result: flipped)
    }

    private func finishFlip(_ ticket: OperationMachine.Ticket?, result: SwapResult) async {
        let callerUID = ticket.flatMap { requests[$0]?.callerUID }
        metrics.recordSwap(result)
        await appendHistory(HistoryEntry(result: result, suffix: "-" + result.action.rawValue, callerUID: callerUID, time: WallClock.rfc3339Now()))
        operationEvent(.flipFinished(ok: result.ok))
        // A window that ran out while the flip ran ends now.
        // (A flip that found no hold at all ends the machine's hold the same way.)
        if !result.ok, hold == nil || hold?.windowElapsed == true { operationEvent(.holdWindowElapsed) }
        announceReadyUnlessStopping()
        if let ticket, let request = requests.removeValue(forKey: ticket) {
            request.stream.yield(Self.encode(.result(result)))
            request.stream.finish()
        }
    }
}
