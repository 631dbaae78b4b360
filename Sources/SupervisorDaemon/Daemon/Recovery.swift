#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import Logging
import SupervisorCore
import SupervisorShared
import SystemBindings

/// Carries out a `RecoveryPlanner` plan at start: gathers the facts from
/// /proc and the file system, commits a half-committed swap before anything
/// starts, and — once the proxy points at the serving instance — drains and
/// stops what a dead supervisor left behind, removes a stray `.new` and
/// records the interrupted swap in history.
struct Recovery: Sendable {
    let config: SupervisorConfig
    let journal: StateJournal
    let logger: Logger
    let previous: JournalState?
    let plan: RecoveryPlanner.Plan

    init(config: SupervisorConfig, journal: StateJournal, previous: JournalState?, logger: Logger) {
        self.config = config
        self.journal = journal
        self.logger = logger
        self.previous = previous
        let staged = access(BinaryStager.stagedPath(for: config.app.binary), F_OK) == 0
        func alive(_ instance: JournalState.Instance?) -> Bool {
            guard let instance, let startTime = instance.startTime else { return false }
            return ProcessIdentity(pid: instance.pid, startTime: startTime, executable: instance.executable).isStillRunning(bootID: instance.bootID)
        }
        func newAlive(_ swap: JournalState.SwapInProgress?) -> Bool {
            guard let swap, let pid = swap.newPID, let startTime = swap.newStartTime else { return false }
            // The journal's serving record was written in the same boot as the new pid.
            return ProcessIdentity(pid: pid, startTime: startTime, executable: nil).isStillRunning(bootID: previous?.serving?.bootID)
        }
        // Only an interrupted flip needs to know what `<binary>` holds (hashing it costs).
        let liveIsNew = previous?.swap.map { $0.phase == .flip && $0.stagedSHA256 != nil && FileDigest.sha256(path: config.app.binary) == $0.stagedSHA256 } ?? false
        let facts = RecoveryPlanner.Facts(
            servingAlive: alive(previous?.serving), newAlive: newAlive(previous?.swap),
            oldAlive: alive(previous?.swap?.old), stagedExists: staged, liveIsNew: liveIsNew)
        plan = RecoveryPlanner.plan(
            state: previous, facts: facts, firstPort: config.app.ports.first ?? 0, stagedExistsWithoutSwap: staged)
    }

    /// Before the app starts: finish a commit the dead supervisor had begun.
    func prepare() {
        if let interrupted = plan.interrupted {
            logger.warning("the previous supervisor stopped during \(interrupted.action.rawValue) phase \(interrupted.phase.rawValue); recovery will \(interrupted.outcome == .undone ? "undo" : "complete") it")
        }
        if plan.exchangeBinaries {
            let binary = config.app.binary
            if csup_rename_exchange(binary, BinaryCommitter.backupPath(for: binary)) == 0 {
                AtomicFile.syncDirectory(of: binary)
                logger.notice("recovery: finished the interrupted flip: \(binary) and \(binary).bak traded places")
            } else {
                logger.error("recovery: cannot exchange \(binary) and \(binary).bak: \(String(cString: strerror(errno)))")
            }
        }
        if plan.commitStaged {
            // Only the bytes the swap hashed: a `.new` put there since is not committed.
            let staged = BinaryStager.stagedPath(for: config.app.binary)
            if let expected = previous?.swap?.stagedSHA256, FileDigest.sha256(path: staged) != expected {
                logger.error("recovery: \(staged) is not the file the interrupted swap staged (sha256 \(expected.prefix(12))); not committed, removed")
                unlink(staged)
                return
            }
            do {
                try BinaryCommitter.commit(liveBinary: config.app.binary, keepingBackup: previous?.swap?.action == .restart)
                logger.notice("recovery: committed \(BinaryStager.stagedPath(for: config.app.binary)) as \(config.app.binary)")
            } catch {
                logger.error("recovery: \(error.message)")
            }
        }
    }

    /// Where the app comes from: the adopted pid (and what it runs, as the
    /// journal recorded it), or a fresh start on a port.
    var start: (port: Int, adopting: Int32?, identity: BinaryIdentity?) {
        switch plan.instance {
        case .adopt(let pid, let port):
            let record = previous?.serving
            return (port, pid, record.map { BinaryIdentity(sha256: $0.sha256, version: $0.version) })
        case .start(let port):
            return (port, nil, nil)
        }
    }

    /// Before the app starts, for an interrupted stop-start: the new instance
    /// goes first (it may hold the port or the lock the old one needs).
    func stopBeforeStart() async {
        guard plan.stopBeforeStart else { return }
        await stopLeftovers()
    }

    private func stopLeftovers() async {
        for target in plan.stop {
            guard let process = try? ChildProcess.adopt(pid: target.pid) else { continue }
            let result = await InstanceRetirer(config: config).retire(process, port: target.port)
            logger.notice("recovery: stopped the instance a previous supervisor left on port \(target.port) (pid \(target.pid)): \(result)")
        }
    }

    /// The backup directory of the interrupted swap: removed when empty, else recorded
    /// with the release it protects unless that one has a backup already (then kept
    /// on disk and named in the log: its hooks may not have finished).
    private func keepInterruptedBackup(_ swap: JournalState.SwapInProgress) {
        let store = ReleaseStore(stateDirectory: config.stateDirectory)
        let path = store.backupsDirectory + "/" + swap.id
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return }
        let size = ReleaseStore.size(of: path)
        guard size.entries > 0 else {
            store.removeBackup(path)
            return
        }
        guard let sha = swap.old?.sha256 else { return }
        do {
            try store.update { ledger in
                if ledger.release(sha) == nil {
                    ledger.served(ReleaseLedger.Release(sha256: sha, version: swap.old?.version, servedAt: WallClock.rfc3339Now(), callerUID: nil))
                }
                if let earlier = ledger.release(sha)?.backup {
                    logger.warning("recovery: the interrupted swap's backup \(path) is kept on disk, not recorded: release \(sha.prefix(12)) keeps \(earlier.path)")
                } else {
                    ledger.attach(ReleaseLedger.Backup(path: path, sizeBytes: size.bytes, swapID: swap.id), to: sha)
                    logger.notice("recovery: recorded the interrupted swap's backup \(path) with release \(sha.prefix(12))")
                }
            }
        } catch {
            logger.error("recovery: cannot record the interrupted swap's backup \(path): \(error)")
        }
    }

    /// After the proxy points at the serving instance.
    func finish() async {
        if !plan.stopBeforeStart { await stopLeftovers() }
        if plan.removeStaged {
            BinaryStager.removeStaged(for: config.app.binary)
            logger.notice("recovery: removed the stray \(BinaryStager.stagedPath(for: config.app.binary))")
        }
        guard let interrupted = plan.interrupted, let swap = previous?.swap else { return }
        keepInterruptedBackup(swap)
        let old = swap.old
        let entry = HistoryEntry(
            id: interrupted.id, time: WallClock.rfc3339Now(), action: interrupted.action, callerUID: nil,
            from: BinaryIdentity(sha256: old?.sha256, version: old?.version),
            to: BinaryIdentity(sha256: swap.stagedSHA256, version: nil), result: .interrupted,
            error: SwapError(
                .interrupted,
                "supervisord stopped during phase \(interrupted.phase.rawValue); recovery \(interrupted.outcome == .undone ? "undid it: the previous version serves" : "completed it: the new version serves")"),
            phasesMS: [:], totalMS: 0)
        do {
            try journal.append(entry)
        } catch {
            logger.error("recovery: cannot record the interrupted swap in history: \(error)")
        }
    }
}
