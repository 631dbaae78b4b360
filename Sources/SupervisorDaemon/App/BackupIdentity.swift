import SupervisorCore
import SupervisorShared

/// What `<binary>.bak` holds: the `from` of the last committed swap when its
/// sha256 still matches the file, else the file's own sha256 (and a version
/// from history if one is known for it).
enum BackupIdentity {
    static func of(binary: String, history: [HistoryEntry]) -> BinaryIdentity? {
        let path = BinaryCommitter.backupPath(for: binary)
        guard let sha = FileDigest.sha256(path: path) else { return nil }
        if let last = history.last(where: { $0.result == .ok }), last.from.sha256 == sha {
            return last.from
        }
        let version = history.first { $0.to.sha256 == sha }?.to.version ?? history.first { $0.from.sha256 == sha }?.from.version
        return BinaryIdentity(sha256: sha, version: version)
    }
}
