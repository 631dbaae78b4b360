/// The binaries that served, newest first (`releases.json` in the state
/// directory; the files themselves are `releases/<sha256>`). Pure: the
/// daemon's `ReleaseStore` reads and writes it and moves the files.
public struct ReleaseLedger: Codable, Sendable, Equatable {
    /// What a swap's `before_start` hooks left in its `SUPERVISOR_BACKUP_DIR`.
    public struct Backup: Codable, Sendable, Equatable {
        public var path: String
        public var sizeBytes: Int64
        /// The swap that took it (before it started the next release).
        public var swapID: String

        public init(path: String, sizeBytes: Int64, swapID: String) {
            self.path = path
            self.sizeBytes = sizeBytes
            self.swapID = swapID
        }

        enum CodingKeys: String, CodingKey {
            case path
            case sizeBytes = "size_bytes"
            case swapID = "swap_id"
        }
    }

    public struct Release: Codable, Sendable, Equatable {
        public var sha256: String
        public var version: String?
        /// `[health] schema_field` as the release's health answer gave it.
        public var schema: String?
        /// When it began to serve (RFC 3339).
        public var servedAt: String
        /// Who put it there (the caller of the swap; nil: the daemon itself).
        public var callerUID: UInt32?
        /// The backup taken before the swap that replaced it: what a rollback to it restores.
        public var backup: Backup?

        public init(sha256: String, version: String?, schema: String? = nil, servedAt: String, callerUID: UInt32?, backup: Backup? = nil) {
            self.sha256 = sha256
            self.version = version
            self.schema = schema
            self.servedAt = servedAt
            self.callerUID = callerUID
            self.backup = backup
        }

        enum CodingKeys: String, CodingKey {
            case sha256, version, schema
            case servedAt = "served_at"
            case callerUID = "caller_uid"
            case backup
        }
    }

    /// Newest first.
    public private(set) var releases: [Release]

    public init(releases: [Release] = []) {
        self.releases = releases
    }

    /// `release` serves now: it goes first (a release seen before moves up,
    /// keeping the backup and schema it had unless new ones are given).
    public mutating func served(_ release: Release) {
        var entry = release
        if let index = releases.firstIndex(where: { $0.sha256 == release.sha256 }) {
            let previous = releases.remove(at: index)
            entry.schema = entry.schema ?? previous.schema
            entry.version = entry.version ?? previous.version
            entry.backup = entry.backup ?? previous.backup
        }
        releases.insert(entry, at: 0)
    }

    /// The backup a swap took before replacing `sha256`.
    public mutating func attach(_ backup: Backup, to sha256: String) {
        guard let index = releases.firstIndex(where: { $0.sha256 == sha256 }) else { return }
        releases[index].backup = backup
    }

    public mutating func recordSchema(_ schema: String, for sha256: String) {
        guard let index = releases.firstIndex(where: { $0.sha256 == sha256 }) else { return }
        releases[index].schema = schema
    }

    public func release(_ sha256: String?) -> Release? {
        guard let sha256 else { return nil }
        return releases.first { $0.sha256 == sha256 }
    }

    /// Keeps the newest `keep` releases and every protected one (what serves,
    /// what `.bak` holds); returns what was dropped, whose files go too.
    public mutating func prune(keep: Int, protecting protected: Set<String>) -> [Release] {
        var kept: [Release] = []
        var dropped: [Release] = []
        for release in releases {
            if kept.count < keep || protected.contains(release.sha256) {
                kept.append(release)
            } else {
                dropped.append(release)
            }
        }
        releases = kept
        return dropped
    }

    public enum Selection: Sendable, Equatable {
        case found(Release)
        /// Several match: the candidates, for the refusal.
        case ambiguous([Release])
        /// None matches: what there is.
        case unknown([Release])
    }

    /// `rollback --to`: an exact version, else a sha256 prefix (at least 4 hex digits).
    public func select(_ selector: String) -> Selection {
        let byVersion = releases.filter { $0.version == selector }
        if byVersion.count == 1 { return .found(byVersion[0]) }
        if byVersion.count > 1 { return .ambiguous(byVersion) }
        let lower = selector.lowercased()
        guard lower.count >= 4, lower.allSatisfy(\.isHexDigit) else { return .unknown(releases) }
        let byHash = releases.filter { $0.sha256.hasPrefix(lower) }
        switch byHash.count {
        case 1: return .found(byHash[0])
        case 0: return .unknown(releases)
        default: return .ambiguous(byHash)
        }
    }
}

/// `GET /releases` and `supervisorctl releases --json`: the ledger, with
/// which release serves and which one `.bak` holds.
public struct ReleasesReport: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var release: ReleaseLedger.Release
        public var serving: Bool
        public var backupFile: Bool

        enum CodingKeys: String, CodingKey {
            case release, serving
            case backupFile = "bak"
        }
    }

    public var releases: [Entry]
    /// `[app] keep_releases`.
    public var keep: Int

    public init(ledger: ReleaseLedger, serving: String?, backup: String?, keep: Int) {
        releases = ledger.releases.map { Entry(release: $0, serving: $0.sha256 == serving, backupFile: $0.sha256 == backup) }
        self.keep = keep
    }
}
