#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import SupervisorCore
import SupervisorShared
import SystemBindings

/// Finishing an emergency rollback done while no daemon ran: it exchanged
/// `<binary>` and `<binary>.bak` and started this daemon, which adopted the
/// instance that was serving (it runs the rolled-away binary, now the file
/// called `.bak`). Traffic moves to the restored binary the way a rollback
/// does it (side port, health, switch, drain, stop), never by a restart.
/// `EmergencyRollbackPlanner` decides; `status` shows where it is, which is
/// what `supervisorctl rollback --emergency` waits for.
extension Supervisor {
    /// After the first start: gather the files' facts (hashing blocks: a job), then decide.
    func continueEmergencyRollback() {
        guard let record = emergency, emergencyStatus?.state == .pending else { return }
        let binary = config.app.binary
        launchJob {
            let files = await BlockingThread.run {
                (FileDigest.sha256(path: binary), FileDigest.sha256(path: BinaryCommitter.backupPath(for: binary)))
            }
            await self.decideEmergencyRollback(record, binarySHA256: files.0, backupSHA256: files.1)
        }
    }

    private func decideEmergencyRollback(_ record: EmergencyRollbackRecord, binarySHA256: String?, backupSHA256: String?) {
        guard emergencyStatus?.state == .pending else { return }
        let facts = EmergencyRollbackPlanner.Facts(
            startedFresh: prepared != nil, servingSHA256: serving.sha256, binarySHA256: binarySHA256, backupSHA256: backupSHA256)
        switch EmergencyRollbackPlanner.decide(record, facts) {
        case .done(let message):
            endEmergencyRollback(.ok, message)
        case .failed(let message):
            endEmergencyRollback(.failed, message)
        case .move(let exchangeBack):
            let binary = config.app.binary, backup = BinaryCommitter.backupPath(for: binary)
            // Checked and acted on in this one step: a request that came first makes the rollback busy, below.
            guard operations.busyPhase == nil, operations.state == .idle else {
                endEmergencyRollback(.failed, "another operation started first (\(operations.current.map { "\($0.action.rawValue) in phase \($0.phase)" } ?? "busy")); nothing moved")
                return
            }
            if exchangeBack {
                // The files name what runs again (`<binary>` the serving version), so the rollback
                // below is an ordinary one: `.bak` is staged, started, gated, switched to, committed.
                guard csup_rename_exchange(binary, backup) == 0 else {
                    endEmergencyRollback(.failed, "cannot exchange \(binary) and \(backup) back: \(String(cString: strerror(errno))); nothing moved")
                    return
                }
                AtomicFile.syncDirectory(of: binary)
                logger.notice("emergency rollback \(record.id): \(binary) and \(backup) traded back to name what runs; rolling back to \(backup) the way a swap does")
            }
            switch request(.emergencyRollback, source: nil, callerUID: record.callerUID, recordsSuccess: false) {
            case .success(let claimed):
                emergencyTicket = claimed.ticket
                emergencyStatus?.state = .moving
                emergencyStatus?.message = "moving traffic from the rolled-away instance (pid \(process?.pid ?? 0)) to the restored binary"
            case .failure(let error):
                endEmergencyRollback(.failed, "\(error.message); the running instance keeps serving, \(binary) is what it runs")
            }
        }
    }

    func emergencyMoveEnded(_ result: SwapResult) {
        emergencyTicket = nil
        if result.ok {
            endEmergencyRollback(.ok, "the restored binary serves (pid \(result.pid ?? 0), port \(result.port ?? 0)); the rolled-away instance was drained and stopped")
        } else {
            let binary = config.app.binary
            endEmergencyRollback(
                .failed,
                "the restored binary did not take over: \(result.error?.message ?? "unknown error") [\(result.error?.code.rawValue ?? "?")]; the rolled-away version keeps serving (pid \(result.pid ?? 0)) and is \(binary) again; the restored one is \(binary).bak")
        }
    }

    private func endEmergencyRollback(_ state: StatusReport.EmergencyRollbackStatus.State, _ message: String) {
        guard let record = emergency else { return }
        emergencyStatus = .init(id: record.id, state: state, message: message)
        if state == .ok {
            logger.notice("emergency rollback \(record.id): done: \(message)")
        } else {
            logger.error("emergency rollback \(record.id): failed: \(message)")
        }
        // Decided: a later restart of the daemon does not try again.
        journal.removeEmergencyRollback()
    }
}
