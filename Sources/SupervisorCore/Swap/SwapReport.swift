/// One NDJSON progress line of `/swap` and `/rollback`.
public struct SwapProgress: Codable, Sendable, Equatable {
    public var phase: SwapPhase
    public var message: String
    public var elapsedMS: Int64

    public init(phase: SwapPhase, message: String, elapsedMS: Int64) {
        self.phase = phase
        self.message = message
        self.elapsedMS = elapsedMS
    }

    enum CodingKeys: String, CodingKey {
        case phase, message
        case elapsedMS = "elapsed_ms"
    }
}

/// The last NDJSON line of `/swap` and `/rollback`, and `--json`'s output.
public struct SwapResult: Codable, Sendable, Equatable {
    public var ok: Bool
    public var id: String
    public var action: SwapAction
    public var from: BinaryIdentity
    public var to: BinaryIdentity
    /// The instance serving after this operation.
    public var pid: Int32?
    public var port: Int?
    public var error: SwapError?
    /// With an error: the phase that failed.
    public var failedPhase: SwapPhase?
    public var phasesMS: [String: Int64]
    /// From the request until the operation is over (the old instance drained and stopped, the files committed).
    public var totalMS: Int64
    /// From the request until the new version serves (the proxy confirmed the
    /// switch, or the flip); nil when it never did. The drain and stop of the
    /// old instance come after it and only hold the command's return.
    public var servingMS: Int64? = nil
    /// What this swap's hooks left in its `SUPERVISOR_BACKUP_DIR` (nil: nothing).
    public var backup: ReleaseLedger.Backup? = nil

    public init(
        ok: Bool, id: String, action: SwapAction, from: BinaryIdentity, to: BinaryIdentity, pid: Int32?,
        port: Int?, error: SwapError?, failedPhase: SwapPhase?, phasesMS: [String: Int64], totalMS: Int64
    ) {
        self.ok = ok
        self.id = id
        self.action = action
        self.from = from
        self.to = to
        self.pid = pid
        self.port = port
        self.error = error
        self.failedPhase = failedPhase
        self.phasesMS = phasesMS
        self.totalMS = totalMS
    }

    enum CodingKeys: String, CodingKey {
        case ok, id, action, from, to, pid, port, error
        case backup
        case failedPhase = "failed_phase"
        case phasesMS = "phases_ms"
        case totalMS = "total_ms"
        case servingMS = "serving_ms"
    }
}

/// A line of the `/swap` stream: progress or the result.
public enum SwapStreamLine: Sendable, Equatable {
    case progress(SwapProgress)
    case result(SwapResult)
}
