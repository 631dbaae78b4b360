#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import SupervisorCore
import SystemBindings

/// `supervisorctl rollback --emergency`: works with the daemon down or hung.
/// Exchanges `<binary>` and `<binary>.bak` atomically (renameat2
/// RENAME_EXCHANGE), records it in the history, and runs
/// `[control] emergency_restart` (default `systemctl restart supervisor@NAME`),
/// so the restarted daemon starts the previous binary.
public struct EmergencyRollback: Sendable {
    public let config: SupervisorConfig

    public init(config: SupervisorConfig) {
        self.config = config
    }

    public var restartCommand: [String] {
        config.control.emergencyRestart.map { Placeholders.substitute($0, ["name": config.name]) }
    }

    /// Runs every step, reporting each to `say`; throws the first that fails.
    public func run(callerUID: UInt32, say: @escaping @Sendable (String) -> Void) async throws(SwapError) {
        let binary = config.app.binary
        let backup = BinaryCommitter.backupPath(for: binary)
        guard access(backup, F_OK) == 0 else {
            throw SwapError(.noBackup, "no previous binary to roll back to: \(backup) does not exist")
        }
        guard access(binary, F_OK) == 0 else {
            throw SwapError(.commitFailed, "\(binary) does not exist; nothing to exchange with \(backup) (restore it by hand: cp -p \(backup) \(binary))")
        }
        let before = BinaryIdentity(sha256: FileDigest.sha256(path: binary), version: nil)
        let after = BinaryIdentity(sha256: FileDigest.sha256(path: backup), version: nil)
        let started = ContinuousClock.now

        guard csup_rename_exchange(binary, backup) == 0 else {
            throw SwapError(.commitFailed, "cannot exchange \(binary) and \(backup): \(String(cString: strerror(errno)))")
        }
        AtomicFile.syncDirectory(of: binary)
        say("exchanged \(binary) and \(backup) atomically (renameat2 RENAME_EXCHANGE): \(binary) is now sha256 \(after.sha256?.prefix(12) ?? "?"), the one it replaced is kept as \(backup)")

        let journal = StateJournal(directory: config.stateDirectory)
        let entry = HistoryEntry(
            id: "emergency-\(Int(WallClock.now()))-\(getpid())", time: WallClock.rfc3339Now(), action: .emergencyRollback,
            callerUID: callerUID, from: before, to: after, result: .ok, error: nil, phasesMS: [:],
            totalMS: (ContinuousClock.now - started).milliseconds)
        do {
            try journal.append(entry)
            say("recorded in \(journal.historyPath)")
        } catch {
            say("warning: could not record it in \(journal.historyPath): \(error)")
        }

        let argv = restartCommand
        say("restarting: `\(argv.joined(separator: " "))`")
        let outcome: CommandOutcome
        do {
            outcome = try await CommandRunner.run(
                argv, environment: ProcessEnvironment.current(), timeout: .seconds(120),
                onOutputLine: { line in say("  | \(line)") })
        } catch {
            throw SwapError(.startFailed, "the binaries are exchanged, but the restart command could not start: \(error.description). Restart the service by hand.")
        }
        guard outcome.succeeded else {
            throw SwapError(.startFailed, "the binaries are exchanged, but `\(argv.joined(separator: " "))` \(outcome.timedOut ? "timed out" : outcome.status.description). Restart the service by hand.")
        }
        say("restarted: the service now runs the previous binary")
    }
}
