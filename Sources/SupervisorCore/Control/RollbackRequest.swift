/// The body of `POST /rollback` (none at all: back to `<binary>.bak`).
public struct RollbackRequest: Codable, Sendable, Equatable {
    /// A kept release: its version or a sha256 prefix.
    public var to: String?
    /// Cross a schema change without restoring anything.
    public var force: Bool?
    /// Restore the backup kept with the release rolled back to (`[hooks] restore`).
    public var restoreBackup: Bool?

    public init(to: String? = nil, force: Bool? = nil, restoreBackup: Bool? = nil) {
        self.to = to
        self.force = force
        self.restoreBackup = restoreBackup
    }

    enum CodingKeys: String, CodingKey {
        case to, force
        case restoreBackup = "restore_backup"
    }
}
