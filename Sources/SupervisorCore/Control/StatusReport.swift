/// What `GET /status` answers and `supervisorctl status` shows.
public struct StatusReport: Codable, Sendable, Equatable {
    public var name: String
    /// `starting`, `running`, `backoff`, `restarting`, `stopping` …
    public var phase: String
    /// Same as `phase`; kept for scripts that read `state`.
    public var state: String
    public var pid: Int32?
    public var port: Int?
    public var binary: String
    public var sha256: String?
    public var version: String?
    /// RFC 3339, when the current instance started.
    public var startedAt: String?
    public var uptimeSeconds: Double?
    public var restarts: Int
    public var lastExit: String?
    public var proxy: String
    public var supervisorPID: Int32
    /// The supervisord that runs (`--version`; an in-place re-exec changes it).
    public var supervisorVersion: String?
    /// What `<binary>.bak` holds (a rollback goes there), if it exists.
    public var backup: BinaryIdentity?
    /// The most recent swap or rollback.
    public var lastSwap: LastSwap?
    /// sha256 of the file at `binary` now, when it is not what runs (the
    /// file was replaced on disk since the running instance started, by a
    /// package manager or a deploy tool): a swap of `binary` applies it.
    /// nil when they match, while a swap moves files, or when unknown.
    public var binaryOnDiskSHA256: String?
    /// An emergency rollback this daemon is finishing or finished since it started.
    public var emergencyRollback: EmergencyRollbackStatus?
    /// Why the first start is not over although the app is healthy (the proxy
    /// could not be pointed at it; retried with backoff, READY=1 waits).
    public var problem: String?
    /// Whether the app serves now: the first start is over and an instance
    /// is running and healthy (during a swap, the old one until the switch).
    /// Decided by the daemon; `status` exits 1 when false.
    public var serving: Bool?

    public struct EmergencyRollbackStatus: Codable, Sendable, Equatable {
        public enum State: String, Codable, Sendable {
            /// Found at start; decided once the app is adopted or started.
            case pending
            /// Moving traffic from the rolled-away instance to the restored binary.
            case moving
            case ok
            case failed
        }

        public var id: String
        public var state: State
        public var message: String?

        public init(id: String, state: State, message: String? = nil) {
            self.id = id
            self.state = state
            self.message = message
        }
    }

    public struct LastSwap: Codable, Sendable, Equatable {
        public var time: String
        public var action: SwapAction
        public var result: HistoryEntry.Result
        public var to: BinaryIdentity
        public var totalMS: Int64
        public var errorCode: String?

        public init(_ entry: HistoryEntry) {
            time = entry.time
            action = entry.action
            result = entry.result
            to = entry.to
            totalMS = entry.totalMS
            errorCode = entry.error?.code.rawValue
        }

        enum CodingKeys: String, CodingKey {
            case time, action, result, to
            case totalMS = "total_ms"
            case errorCode = "error_code"
        }
    }

    public init(
        name: String, phase: String, pid: Int32?, port: Int?, binary: String, sha256: String?,
        version: String?, startedAt: String?, uptimeSeconds: Double?, restarts: Int,
        lastExit: String?, proxy: String, supervisorPID: Int32
    ) {
        self.name = name
        self.phase = phase
        self.state = phase
        self.pid = pid
        self.port = port
        self.binary = binary
        self.sha256 = sha256
        self.version = version
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.restarts = restarts
        self.lastExit = lastExit
        self.proxy = proxy
        self.supervisorPID = supervisorPID
    }

    enum CodingKeys: String, CodingKey {
        case name, phase, state, pid, port, binary, sha256, version
        case startedAt = "started_at"
        case uptimeSeconds = "uptime_seconds"
        case restarts
        case lastExit = "last_exit"
        case proxy
        case supervisorPID = "supervisor_pid"
        case supervisorVersion = "supervisor_version"
        case backup
        case lastSwap = "last_swap"
        case binaryOnDiskSHA256 = "binary_on_disk_sha256"
        case emergencyRollback = "emergency_rollback"
        case problem, serving
    }
}
