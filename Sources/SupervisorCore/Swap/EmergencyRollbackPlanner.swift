/// What a daemon does, once the app is adopted or started, about an
/// emergency rollback done while no daemon ran (`supervisorctl rollback
/// --emergency` or `emergency-rollback.sh`): they exchanged `<binary>` and
/// `<binary>.bak` and restarted the daemon. Pure: the daemon gathers the
/// facts (sha256 of what serves and of both files).
///
/// | what serves | the files | decision |
/// |---|---|---|
/// | started fresh from `<binary>`, the restored binary | any | done: the restored binary serves |
/// | adopted, runs the restored binary | any | done |
/// | adopted, runs the rolled-away binary (or unknown) | `<binary>` restored, `.bak` rolled-away (as the exchange left them) | move: trade the files back (so they name what runs), then a rollback: side port, health, switch, drain, stop |
/// | adopted, runs the rolled-away binary (or unknown) | `<binary>` rolled-away, `.bak` restored (traded back by an earlier daemon) | move: the rollback only |
/// | anything else | | failed: say what serves and what the files hold |
public enum EmergencyRollbackPlanner {
    public struct Facts: Sendable, Equatable {
        /// The instance serving now was started by this daemon (from `<binary>`), not adopted.
        public var startedFresh: Bool
        /// What the serving instance runs, when known.
        public var servingSHA256: String?
        public var binarySHA256: String?
        public var backupSHA256: String?

        public init(startedFresh: Bool, servingSHA256: String?, binarySHA256: String?, backupSHA256: String?) {
            self.startedFresh = startedFresh
            self.servingSHA256 = servingSHA256
            self.binarySHA256 = binarySHA256
            self.backupSHA256 = backupSHA256
        }
    }

    public enum Decision: Sendable, Equatable {
        /// The restored binary serves: nothing to move.
        case done(String)
        /// Move traffic to the restored binary; first trade the files back when asked.
        case move(exchangeBack: Bool)
        case failed(String)
    }

    public static func decide(_ record: EmergencyRollbackRecord, _ facts: Facts) -> Decision {
        let restored = record.toSHA256, rolledAway = record.fromSHA256
        func short(_ sha: String?) -> String { sha.map { String($0.prefix(12)) } ?? "unknown" }
        if facts.startedFresh {
            if facts.binarySHA256 == restored {
                return .done("the rolled-away instance was not running: the restored binary (sha256 \(short(restored))) was started")
            }
            return .failed("the app was started from the binary, which is sha256 \(short(facts.binarySHA256)), not the restored one (sha256 \(short(restored))): it changed after the emergency rollback")
        }
        if let serving = facts.servingSHA256, serving == restored {
            return .done("the restored binary (sha256 \(short(restored))) already serves")
        }
        guard facts.servingSHA256 == nil || facts.servingSHA256 == rolledAway else {
            return .failed("the running instance is sha256 \(short(facts.servingSHA256)), neither the rolled-away binary (\(short(rolledAway))) nor the restored one (\(short(restored))); nothing moved")
        }
        if facts.binarySHA256 == restored && facts.backupSHA256 == rolledAway {
            return .move(exchangeBack: true)
        }
        if facts.binarySHA256 == rolledAway && facts.backupSHA256 == restored {
            return .move(exchangeBack: false)
        }
        return .failed("the files changed after the emergency rollback (the binary is sha256 \(short(facts.binarySHA256)), .bak \(short(facts.backupSHA256)); expected \(short(restored)) and \(short(rolledAway))); nothing moved, the running instance keeps serving")
    }
}

/// `<state_dir>/emergency-rollback.json`: written by an emergency rollback
/// (the CLI or the sh fallback) right after it exchanged the files, read by
/// the daemon it then starts, removed once that daemon has decided.
public struct EmergencyRollbackRecord: Codable, Sendable, Equatable {
    public var id: String
    public var time: String
    public var callerUID: UInt32?
    /// What `<binary>` held before the exchange: the version rolled away from (it may still run).
    public var fromSHA256: String?
    /// What `<binary>.bak` held before the exchange: the version restored.
    public var toSHA256: String?

    public init(id: String, time: String, callerUID: UInt32?, fromSHA256: String?, toSHA256: String?) {
        self.id = id
        self.time = time
        self.callerUID = callerUID
        self.fromSHA256 = fromSHA256
        self.toSHA256 = toSHA256
    }

    enum CodingKeys: String, CodingKey {
        case id, time
        case callerUID = "caller_uid"
        case fromSHA256 = "from_sha256"
        case toSHA256 = "to_sha256"
    }
}
