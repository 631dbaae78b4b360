import SupervisorCore
import SupervisorShared
import SystemBindings

/// Runs `[hooks]` commands in order, each with a timeout and the
/// `SUPERVISOR_*` environment describing the swap; their output lines are
/// handed to `onLine` (the swap's progress). Stops at the first failure.
struct HookRunner: Sendable {
    enum Kind: String, Sendable {
        case beforeStart = "before_start"
        case restore
        case afterSwitch = "after_switch"
        case onFailure = "on_failure"
        case onRollback = "on_rollback"
    }

    /// What the hooks are told about the swap.
    struct Facts: Sendable {
        var action: SwapAction
        var phase: SwapPhase
        var oldBinary: String
        var newBinary: String?
        var oldSHA256: String?
        var newSHA256: String?
        var oldVersion: String?
        var newVersion: String?
        var error: SwapError?
        /// This swap's `SUPERVISOR_BACKUP_DIR` (under the state directory).
        var backupDirectory: String? = nil
        /// `rollback --restore-backup`: the backup `[hooks] restore` puts back after `before_start`.
        var restoreBackup: String? = nil
    }

    let config: SupervisorConfig
    /// Who hooks run as (`[hooks] user`, default the app's user; nil: root).
    let credentials: ProcessCredentials?

    func commands(_ kind: Kind) -> [[String]] {
        switch kind {
        case .beforeStart: config.hooks.beforeStart
        case .restore: config.hooks.restore
        case .afterSwitch: config.hooks.afterSwitch
        case .onFailure: config.hooks.onFailure
        case .onRollback: config.hooks.onRollback
        }
    }

    func environment(_ facts: Facts) -> [String: String] {
        var environment = ProcessEnvironment.current()
        environment["SUPERVISOR_NAME"] = config.name
        environment["SUPERVISOR_ACTION"] = facts.action.rawValue
        environment["SUPERVISOR_PHASE"] = facts.phase.rawValue
        environment["SUPERVISOR_OLD_BINARY"] = facts.oldBinary
        environment["SUPERVISOR_NEW_BINARY"] = facts.newBinary ?? ""
        environment["SUPERVISOR_OLD_SHA256"] = facts.oldSHA256 ?? ""
        environment["SUPERVISOR_NEW_SHA256"] = facts.newSHA256 ?? ""
        environment["SUPERVISOR_OLD_VERSION"] = facts.oldVersion ?? ""
        environment["SUPERVISOR_NEW_VERSION"] = facts.newVersion ?? ""
        if let backup = facts.backupDirectory { environment["SUPERVISOR_BACKUP_DIR"] = backup }
        if let restore = facts.restoreBackup { environment["SUPERVISOR_RESTORE_BACKUP"] = restore }
        if let error = facts.error {
            environment["SUPERVISOR_ERROR"] = "\(error.code.rawValue): \(error.message)"
        }
        return environment
    }

    /// Nil when every command exited 0 in time; else the error naming the one that did not.
    func run(_ kind: Kind, _ facts: Facts, onLine: @escaping @Sendable (String) -> Void) async -> SwapError? {
        let environment = environment(facts)
        for argv in commands(kind) {
            onLine("\(kind.rawValue) hook: `\(argv.joined(separator: " "))`")
            let outcome: CommandOutcome
            do {
                outcome = try await CommandRunner.run(
                    argv, environment: environment, workingDirectory: config.app.workingDirectory,
                    credentials: credentials, timeout: config.hooks.timeout, onOutputLine: { line in onLine("  | \(UntrustedText.escaped(line))") })
            } catch {
                return SwapError(.hookFailed, "\(kind.rawValue) hook could not start: \(error.description)")
            }
            guard outcome.succeeded else {
                let what = outcome.timedOut ? "timed out after \(config.hooks.timeout.humanReadable)" : outcome.status.description
                return SwapError(.hookFailed, "\(kind.rawValue) hook `\(argv.joined(separator: " "))` \(what)")
            }
        }
        return nil
    }
}
