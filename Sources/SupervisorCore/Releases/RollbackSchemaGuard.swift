/// Decides whether a rollback may cross a schema change (`[health]
/// schema_field`): the release rolled back to ran on the schema it recorded;
/// the one serving may have migrated the database since. Pure.
public enum RollbackSchemaGuard {
    public enum Decision: Sendable, Equatable {
        case proceed
        /// `--restore-backup`: stop-start, with `[hooks] restore` given this backup.
        case restore(ReleaseLedger.Backup)
        case refuse(SupervisorError)
    }

    public static func decide(
        ledger: ReleaseLedger, schemaField: String?, serving: String?, target: String?, force: Bool, restoreBackup: Bool
    ) -> Decision {
        let from = ledger.release(serving), to = ledger.release(target)
        let toName = to.map(name) ?? "the previous release"
        if restoreBackup {
            guard let to, let backup = to.backup else {
                return .refuse(ControlError(.noBackup, "\(toName) has no backup to restore: no swap that replaced it left anything in its SUPERVISOR_BACKUP_DIR (a before_start hook writes it); roll back with --force, or without --restore-backup"))
            }
            return .restore(backup)
        }
        guard schemaField != nil, !force, let from, let to, let fromSchema = from.schema, let toSchema = to.schema, fromSchema != toSchema else {
            return .proceed
        }
        let backup = to.backup.map { "the backup taken before the swap that replaced it: \($0.path) (\(ByteCount.human($0.sizeBytes)))" }
            ?? "no backup was kept for it"
        return .refuse(
            ControlError(
                .schemaChanged,
                "\(name(to)) ran on schema \(UntrustedText.quoted(toSchema)) and \(name(from)), serving, on \(UntrustedText.quoted(fromSchema)): a rollback across that change would run the old code on the new schema; \(backup). Either `supervisorctl rollback --restore-backup` (stops \(name(from)), runs [hooks] restore with that backup, starts \(name(to)); requests wait meanwhile) or `--force` (\(name(to)) starts on the schema as it is). Nothing was changed"))
    }

    static func name(_ release: ReleaseLedger.Release) -> String {
        release.version.map { UntrustedText.escaped($0) } ?? "sha256 \(release.sha256.prefix(12))"
    }
}
