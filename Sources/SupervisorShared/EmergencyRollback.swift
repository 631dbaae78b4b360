#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import Foundation
import SupervisorCore
import SystemBindings

/// `supervisorctl rollback --emergency`: works with the daemon down or hung.
///
/// 1. Checks that `<binary>.bak` is a regular, executable, non-empty file
///    (else nothing is touched).
/// 2. Stops the daemon if one runs, with SIGKILL (a hung one too, at once;
///    never SIGTERM, which would stop the app): the app survives the
///    daemon's death by design. Holds the daemon's lock until step 3 is
///    done, so a daemon systemd restarts meanwhile exits 2 rather than
///    adopt the app without the record.
/// 3. Exchanges `<binary>` and `<binary>.bak` atomically (renameat2
///    RENAME_EXCHANGE) and leaves `<state_dir>/emergency-rollback.json` for
///    the next daemon, then records it in history.
/// 4. Runs `[control] emergency_restart` (default `systemctl start
///    supervisor@NAME`). The daemon it starts adopts the instance that was
///    serving (the rolled-away binary, now the file called `.bak`) and moves
///    traffic to the restored binary the way a rollback does.
///
/// The caller then waits for that daemon to confirm (`EmergencyRollbackPrinter`).
public struct EmergencyRollback: Sendable {
    public let config: SupervisorConfig

    public init(config: SupervisorConfig) {
        self.config = config
    }

    public var restartCommand: [String] {
        config.control.emergencyRestart.map { Placeholders.substitute($0, ["name": config.name]) }
    }

    /// Runs every step, reporting each to `say`; throws the first that fails
    /// (saying what was and was not changed). Returns what the next daemon finishes.
    public func run(callerUID: UInt32, say: @escaping @Sendable (String) -> Void) async throws(SwapError) -> EmergencyRollbackRecord {
        let binary = config.app.binary
        let backup = BinaryCommitter.backupPath(for: binary)
        if let problem = Self.problem(backup: backup, binary: binary) {
            throw SwapError(problem.code, "\(problem.message); nothing was exchanged or restarted")
        }
        let journal = StateJournal(directory: DaemonLock.stateDirectory(for: config))
        // Held until the files and the record are in place: a daemon systemd restarts meanwhile
        // (Restart=on-failure) finds it taken and exits 2 instead of adopting the app without the record.
        var lock = try await takeDaemonLock(say: say)
        func release() {
            if lock >= 0 { close(lock) }
            lock = -1
        }
        defer { release() }

        if let swap = Self.swapInProgress(journal), swap.phase != .watch, swap.phase != .done {
            // Before its commit `.bak` is not the version before the new one: recovery first.
            release()
            try await restart(say: say, afterExchange: false)
            throw SwapError(
                .interrupted,
                "supervisord was stopped during a \(swap.action.rawValue) (phase \(swap.phase.rawValue)), so \(backup) may not be the version to go back to; nothing was exchanged. It was started again: recovery finishes or undoes that \(swap.action.rawValue) with no request failing. Then run `supervisorctl rollback` if still needed")
        }

        let before = FileDigest.sha256(path: binary)
        let after = FileDigest.sha256(path: backup)
        let started = ContinuousClock.now
        guard csup_rename_exchange(binary, backup) == 0 else {
            let reason = String(cString: strerror(errno))
            release()
            try await restart(say: say, afterExchange: false)
            throw SwapError(.commitFailed, "cannot exchange \(binary) and \(backup): \(reason); nothing was exchanged; supervisord was started again")
        }
        AtomicFile.syncDirectory(of: binary)
        say("exchanged \(binary) and \(backup) atomically (renameat2 RENAME_EXCHANGE): \(binary) is now sha256 \(after?.prefix(12) ?? "?"), the one it replaced (sha256 \(before?.prefix(12) ?? "?")) is kept as \(backup)")

        let record = EmergencyRollbackRecord(
            id: "emergency-\(Int(WallClock.now()))-\(getpid())", time: WallClock.rfc3339Now(), callerUID: callerUID,
            fromSHA256: before, toSHA256: after)
        do {
            try journal.writeEmergencyRollback(record)
        } catch {
            // Without the record the restarted daemon would keep the rolled-away instance serving
            // while the files say otherwise: put the files back as they were.
            let undone = csup_rename_exchange(binary, backup) == 0
            AtomicFile.syncDirectory(of: binary)
            release()
            try await restart(say: say, afterExchange: !undone)
            throw SwapError(
                undone ? .journalFailed : .emergencyIncomplete,
                "cannot write \(journal.emergencyRollbackPath): \(error); " + (undone ? "the files were exchanged back, nothing changed; supervisord was started again" : "and cannot exchange the files back: \(binary) is the restored binary while the rolled-away one still serves"))
        }
        let entry = HistoryEntry(
            id: record.id, time: record.time, action: .emergencyRollback, callerUID: callerUID,
            from: BinaryIdentity(sha256: before, version: nil), to: BinaryIdentity(sha256: after, version: nil),
            result: .ok, error: nil, phasesMS: [:], totalMS: (ContinuousClock.now - started).milliseconds)
        do {
            try journal.append(entry)
            say("recorded in \(journal.historyPath)")
        } catch {
            say("warning: could not record it in \(journal.historyPath): \(error)")
        }
        release()
        try await restart(say: say, afterExchange: true)
        return record
    }

    /// Why `<binary>.bak` cannot be rolled back to (nil: it can).
    public static func problem(backup: String, binary: String) -> (code: SwapError.Code, message: String)? {
        var info = stat()
        guard stat(backup, &info) == 0 else {
            return errno == ENOENT
                ? (.noBackup, "no previous binary to roll back to: \(backup) does not exist")
                : (.noBackup, "cannot read \(backup): \(String(cString: strerror(errno)))")
        }
        if (info.st_mode & S_IFMT) != S_IFREG {
            return (.binaryNotRegular, "\(backup) is not a regular file (\((info.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "a special file")); it cannot run")
        }
        if info.st_mode & 0o111 == 0 {
            return (.binaryNotExecutable, "\(backup) is not executable (mode \(String(info.st_mode & 0o7777, radix: 8))); it cannot run")
        }
        if info.st_size == 0 {
            return (.binaryEmpty, "\(backup) is empty; it cannot run")
        }
        var live = stat()
        if stat(binary, &live) != 0 {
            return (.commitFailed, "\(binary) does not exist, so there is nothing to exchange with \(backup) (restore it by hand: cp -p \(backup) \(binary))")
        }
        return nil
    }

    /// Takes the daemon's lock (`<state_dir>/supervisord.lock`): SIGKILL to
    /// whichever daemon holds it (a hung, even stopped, one too; SIGKILL kills
    /// the daemon alone: the app keeps serving), until this process holds it,
    /// 10 s at most. Returns the locked descriptor.
    private func takeDaemonLock(say: @Sendable (String) -> Void) async throws(SwapError) -> Int32 {
        let stateDirectory = DaemonLock.stateDirectory(for: config)
        let path = DaemonLock.path(stateDirectory: stateDirectory)
        do {
            try StateJournal(directory: stateDirectory).prepare()
        } catch {
            throw SwapError(.journalFailed, "cannot create the state directory \(stateDirectory): \(error); nothing was exchanged or restarted")
        }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            throw SwapError(.journalFailed, "cannot open \(path): \(String(cString: strerror(errno))); nothing was exchanged or restarted")
        }
        let deadline = ContinuousClock.now + .seconds(10)
        var killed: [Int32] = []
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if let pid = DaemonLock.holder(stateDirectory: stateDirectory), !killed.contains(pid) || ContinuousClock.now > deadline - .seconds(5) {
                // Only a daemon is killed: another emergency rollback holding the lock is left to finish.
                let executable = ProcessIdentity.executablePath(of: pid) ?? ""
                guard executable.split(separator: "/").last?.hasPrefix("supervisord") == true else {
                    close(fd)
                    throw SwapError(.busy, "\(path) is held by pid \(pid) (\(executable.isEmpty ? "executable unknown" : executable)), not supervisord: another emergency rollback runs? Nothing was exchanged or restarted")
                }
                guard kill(pid, SIGKILL) == 0 || errno == ESRCH else {
                    close(fd)
                    throw SwapError(.forbidden, "cannot stop supervisord (pid \(pid)): \(String(cString: strerror(errno))); nothing was exchanged or restarted (run it as root)")
                }
                if !killed.contains(pid) {
                    killed.append(pid)
                    say("stopped supervisord (pid \(pid)) with SIGKILL; the app was not signalled and keeps serving")
                }
            }
            guard ContinuousClock.now < deadline else {
                close(fd)
                throw SwapError(
                    .startFailed,
                    killed.isEmpty
                        ? "\(path) is held, and /proc/locks does not say by whom; nothing was exchanged or restarted. Stop supervisord by hand (systemctl kill --kill-whom=main -s SIGKILL supervisor@\(config.name)) and try again"
                        : "\(path) is still held 10 s after SIGKILL to pid \(killed.map(String.init).joined(separator: ", ")); nothing was exchanged or restarted")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        if killed.isEmpty {
            say("no supervisord was running for \(config.name)")
        }
        // A daemon that starts meanwhile names this process in its refusal.
        DaemonLock.recordHolder(fd: fd)
        return fd
    }

    private func restart(say: @escaping @Sendable (String) -> Void, afterExchange: Bool) async throws(SwapError) {
        let argv = restartCommand
        say("starting supervisord: `\(argv.joined(separator: " "))`")
        let exchanged = afterExchange ? "the binaries are exchanged, but " : ""
        let outcome: CommandOutcome
        do {
            outcome = try await CommandRunner.run(
                argv, environment: ProcessEnvironment.current(), timeout: .seconds(120),
                onOutputLine: { line in say("  | \(line)") })
        } catch {
            throw SwapError(afterExchange ? .emergencyIncomplete : .startFailed, "\(exchanged)the restart command could not start: \(error.description). Start the service by hand (systemctl start supervisor@\(config.name))")
        }
        guard outcome.succeeded else {
            throw SwapError(afterExchange ? .emergencyIncomplete : .startFailed, "\(exchanged)`\(argv.joined(separator: " "))` \(outcome.timedOut ? "timed out" : outcome.status.description). Start the service by hand (systemctl start supervisor@\(config.name))")
        }
    }

    /// The swap or flip the journal says was in progress (read only: a file
    /// that does not parse is the daemon's to keep aside, not ours).
    static func swapInProgress(_ journal: StateJournal) -> JournalState.SwapInProgress? {
        guard let bytes = AtomicFile.read(journal.statePath) else { return nil }
        return (try? JSONDecoder().decode(JournalState.self, from: Data(bytes)))?.swap
    }
}
