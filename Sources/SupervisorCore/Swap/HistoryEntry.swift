/// A binary's identity in history and results.
public struct BinaryIdentity: Codable, Sendable, Equatable {
    public var sha256: String?
    public var version: String?

    public init(sha256: String?, version: String?) {
        self.sha256 = sha256
        self.version = version
    }
}

/// One line of `history.jsonl`: one swap or rollback.
public struct HistoryEntry: Codable, Sendable, Equatable {
    public enum Result: String, Codable, Sendable {
        case ok
        case failed
        case interrupted
    }

    public var id: String
    /// RFC 3339.
    public var time: String
    public var action: SwapAction
    public var callerUID: UInt32?
    public var from: BinaryIdentity
    public var to: BinaryIdentity
    public var result: Result
    public var error: SwapError?
    public var phasesMS: [String: Int64]
    public var totalMS: Int64
    /// The backup the swap's hooks took (`SUPERVISOR_BACKUP_DIR`), if any.
    public var backup: ReleaseLedger.Backup? = nil

    public init(
        id: String, time: String, action: SwapAction, callerUID: UInt32?, from: BinaryIdentity,
        to: BinaryIdentity, result: Result, error: SwapError?, phasesMS: [String: Int64], totalMS: Int64
    ) {
        self.id = id
        self.time = time
        self.action = action
        self.callerUID = callerUID
        self.from = from
        self.to = to
        self.result = result
        self.error = error
        self.phasesMS = phasesMS
        self.totalMS = totalMS
    }

    /// The history line of an operation's result; `suffix` tells apart
    /// entries that share a swap's id (a flip inside its warm hold).
    public init(result: SwapResult, suffix: String = "", callerUID: UInt32?, time: String) {
        self.init(
            id: result.id + suffix, time: time, action: result.action, callerUID: callerUID, from: result.from, to: result.to,
            result: result.ok ? .ok : .failed, error: result.error, phasesMS: result.phasesMS, totalMS: result.totalMS)
        backup = result.backup
    }

    enum CodingKeys: String, CodingKey {
        case id, time, action
        case callerUID = "caller_uid"
        case from, to, result, error, backup
        case phasesMS = "phases_ms"
        case totalMS = "total_ms"
    }
}

/// What `state.json` holds: the serving instance and, during a swap, the
/// phase it is in. Written before each phase acts.
public struct JournalState: Codable, Sendable, Equatable {
    public struct Instance: Codable, Sendable, Equatable {
        public var pid: Int32
        public var port: Int
        public var sha256: String?
        public var version: String?
        /// /proc start time (clock ticks after boot): tells a reused pid apart.
        public var startTime: UInt64?
        /// /proc/PID/exe once healthy (after any wrapper exec'ed); for people,
        /// not identity (a renamed file changes it).
        public var executable: String?
        /// The boot the start time counts from.
        public var bootID: String?

        public init(pid: Int32, port: Int, sha256: String?, version: String?, startTime: UInt64? = nil, executable: String? = nil, bootID: String? = nil) {
            self.pid = pid
            self.port = port
            self.sha256 = sha256
            self.version = version
            self.startTime = startTime
            self.executable = executable
            self.bootID = bootID
        }

        enum CodingKeys: String, CodingKey {
            case pid, port, sha256, version
            case startTime = "start_time"
            case executable
            case bootID = "boot_id"
        }
    }

    public struct SwapInProgress: Codable, Sendable, Equatable {
        public var id: String
        public var action: SwapAction
        public var phase: SwapPhase
        public var newPort: Int
        public var newPID: Int32?
        public var newStartTime: UInt64?
        public var stagedSHA256: String?
        /// The instance being replaced (its pid and start time, to stop it after a crash).
        public var old: Instance?
        /// `stop-start`: the old instance stops before the new one starts (nil: overlap).
        public var strategy: SwapStrategy?

        public init(
            id: String, action: SwapAction, phase: SwapPhase, newPort: Int, newPID: Int32?, stagedSHA256: String?,
            newStartTime: UInt64? = nil, old: Instance? = nil, strategy: SwapStrategy? = nil
        ) {
            self.strategy = strategy
            self.id = id
            self.action = action
            self.phase = phase
            self.newPort = newPort
            self.newPID = newPID
            self.stagedSHA256 = stagedSHA256
            self.newStartTime = newStartTime
            self.old = old
        }

        enum CodingKeys: String, CodingKey {
            case id, action, phase
            case newPort = "new_port"
            case newPID = "new_pid"
            case newStartTime = "new_start_time"
            case stagedSHA256 = "staged_sha256"
            case old, strategy
        }
    }

    public var serving: Instance?
    public var swap: SwapInProgress?

    public init(serving: Instance?, swap: SwapInProgress?) {
        self.serving = serving
        self.swap = swap
    }
}
