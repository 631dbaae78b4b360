#if canImport(Glibc)
import Glibc
#endif
import Logging
import SupervisorCore
import SupervisorShared

/// SIGHUP: the in-place re-exec, decided by `OperationMachine` (it waits for
/// what runs, ends a warm hold, holds the lock) and carried out here.
extension Supervisor {
    /// The daemon sets it once the control socket is up (what the re-exec carries).
    func enableReexec(_ reexec: InPlaceReexec) {
        reexecutor = reexec
    }

    /// This image runs again because the one it exec'd could not start: status says so until the next operation.
    func reexecFailed(_ reason: String) {
        reexecProblem = "re-exec refused at \(WallClock.rfc3339(WallClock.now(), milliseconds: false)): \(reason)"
        metrics.reexecRefused()
    }

    /// SIGHUP, from the signal queue: an event for this owner, queued as a job of `runEffects`.
    nonisolated func hangup() {
        launchJob { await self.requestReexec() }
    }

    /// SIGHUP arrived.
    func requestReexec() {
        // Before the first start is over there is no steady app to hand over, and
        // READY=1 belongs to the start: nothing is sent to systemd.
        guard firstStartDone else {
            logger.warning("SIGHUP during the first start: ignored; send it again (systemctl reload) once the service is ready")
            return
        }
        if operations.state == .reexecuting {
            logger.notice("SIGHUP: a re-exec is already under way")
            return
        }
        logger.notice("SIGHUP: re-executing the installed supervisord in place (same pid; the app runs on)")
        perform(operations.handle(.reexecRequested))
    }

    /// The `.reexec` action: check the new image off this actor, then decide
    /// and exec in one step on it.
    func reexec() async {
        guard let reexecutor else {
            abandonReexec("this daemon was not started to re-execute itself")
            return
        }
        notifier.reloading(status: "re-exec: checking \(InPlaceReexec.installedPath() ?? "supervisord")")
        let checked = await reexecutor.check()
        execChecked(checked)
    }

    /// No `await` from the check of the app's state to execve: nothing can change in between.
    private func execChecked(_ checked: Result<InPlaceReexec.Checked, InPlaceReexec.Refusal>) {
        let target: InPlaceReexec.Checked
        switch checked {
        case .failure(let refusal):
            abandonReexec("the installed supervisord failed its check: \(refusal)")
            return
        case .success(let checked):
            target = checked
        }
        if operations.shutdownPending {
            abandonReexec("a stop came first")
            return
        }
        guard firstStartDone, let instance = servingInstance(), pendingSpawn == nil, journalState.swap == nil,
            journalState.serving?.pid == instance.process.pid
        else {
            abandonReexec("the app is not steadily serving (phase \(app.phase)); send SIGHUP again once it is")
            return
        }
        // The new image reads who serves from the journal: it must be on disk, not queued.
        do {
            try journalWriter.writeNow(journalState)
        } catch {
            abandonReexec("cannot write the state journal \(journal.statePath): \(error)")
            return
        }
        logger.notice(
            "re-executing \(target.path): supervisord \(SupervisorVersion.current) → \(target.version), pid \(getpid()) stays; the app (pid \(instance.process.pid)) runs on and is re-adopted")
        let failure = target.exec()
        abandonReexec("execve \(target.path): \(failure)")
    }

    private func abandonReexec(_ reason: String) {
        logger.error("re-exec refused: \(reason); this supervisord (\(SupervisorVersion.current)) goes on")
        // The time tells one refusal from an earlier one with the same words (the package's postinst compares).
        reexecProblem = "re-exec refused at \(WallClock.rfc3339(WallClock.now(), milliseconds: false)): \(reason)"
        metrics.reexecRefused()
        operationEvent(.reexecAbandoned)
        notifier.ready(status: statusLine())
    }
}
