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

    /// SIGHUP arrived.
    func requestReexec() {
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
        logger.notice(
            "re-executing \(target.path): supervisord \(SupervisorVersion.current) → \(target.version), pid \(getpid()) stays; the app (pid \(instance.process.pid)) runs on and is re-adopted")
        let failure = target.exec()
        abandonReexec("execve \(target.path): \(failure)")
    }

    private func abandonReexec(_ reason: String) {
        logger.error("re-exec refused: \(reason); this supervisord (\(SupervisorVersion.current)) goes on")
        reexecProblem = "re-exec refused: \(reason)"
        metrics.reexecRefused()
        operationEvent(.reexecAbandoned)
        notifier.ready(status: "re-exec refused: \(reason); " + statusLine())
    }
}
