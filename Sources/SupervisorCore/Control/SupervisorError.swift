/// The one error type of the supervisor, shaped like swift-subprocess's
/// `SubprocessError`: an extensible code a script can match and a message a
/// person can act on. A swap's failure, a refused control request and the
/// CLI's exit code all read the same value. Rendered in JSON as
/// `{"code":"…","message":"…"}` (plus `"phase"` for `busy`).
public struct SupervisorError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(from decoder: any Decoder) throws {
            rawValue = try decoder.singleValueContainer().decode(String.self)
        }
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }
        public var description: String { rawValue }

        // Stage
        public static let binaryNotFound = Code(rawValue: "binary_not_found")
        public static let binaryNotRegular = Code(rawValue: "binary_not_regular")
        public static let binaryNotExecutable = Code(rawValue: "binary_not_executable")
        public static let binaryEmpty = Code(rawValue: "binary_empty")
        /// The caller could not open the path with its own rights.
        public static let binaryNotReadable = Code(rawValue: "binary_not_readable")
        /// A path with a NUL, newline or other control character.
        public static let binaryPathInvalid = Code(rawValue: "binary_path_invalid")
        /// `restart`: the config file, read again, has problems.
        public static let configInvalid = Code(rawValue: "config_invalid")
        /// `<binary>.new` is not the file that was staged (someone replaced it).
        public static let stagedBinaryReplaced = Code(rawValue: "staged_binary_replaced")
        public static let stageFailed = Code(rawValue: "stage_failed")
        public static let noBackup = Code(rawValue: "no_backup")
        /// `rollback --to`: no kept release has that version or sha256 prefix.
        public static let unknownRelease = Code(rawValue: "unknown_release")
        /// `rollback --to`: several kept releases match.
        public static let ambiguousRelease = Code(rawValue: "ambiguous_release")
        /// A rollback would cross a change of `[health] schema_field` (needs --restore-backup or --force).
        public static let schemaChanged = Code(rawValue: "schema_changed")
        // Preflight / hooks
        public static let preflightFailed = Code(rawValue: "preflight_failed")
        public static let hookFailed = Code(rawValue: "hook_failed")
        // Start / health
        public static let portInUse = Code(rawValue: "port_in_use")
        public static let startFailed = Code(rawValue: "start_failed")
        public static let appExited = Code(rawValue: "app_exited")
        public static let healthTimeout = Code(rawValue: "health_timeout")
        // Switch
        public static let proxyWriteFailed = Code(rawValue: "proxy_write_failed")
        public static let proxyValidateFailed = Code(rawValue: "proxy_validate_failed")
        public static let proxyReloadFailed = Code(rawValue: "proxy_reload_failed")
        public static let proxyNotConfirmed = Code(rawValue: "proxy_not_confirmed")
        public static let proxyNotWired = Code(rawValue: "proxy_not_wired")
        // Drain: the new instance exited and the proxy could not be pointed back at the old one
        public static let switchBackFailed = Code(rawValue: "switch_back_failed")
        // Commit
        public static let commitFailed = Code(rawValue: "commit_failed")
        // Control requests
        public static let badRequest = Code(rawValue: "bad_request")
        public static let notFound = Code(rawValue: "not_found")
        public static let methodNotAllowed = Code(rawValue: "method_not_allowed")
        public static let forbidden = Code(rawValue: "forbidden")
        /// Another swap, rollback or flip holds the lock (exit 4).
        public static let busy = Code(rawValue: "busy")
        // Whole-swap
        public static let notRunning = Code(rawValue: "not_running")
        /// The state journal could not be written before a step acted: the swap was undone.
        public static let journalFailed = Code(rawValue: "journal_failed")
        /// supervisord is stopping (SIGTERM): a request that came after is refused.
        public static let shuttingDown = Code(rawValue: "shutting_down")
        /// supervisord stopped during the swap; recovery finished or undid it (history only).
        public static let interrupted = Code(rawValue: "interrupted")
        /// An emergency rollback that failed after its point of no return: the
        /// binaries are exchanged, but the restored one is not confirmed serving (exit 5).
        public static let emergencyIncomplete = Code(rawValue: "emergency_incomplete")
        // Found by supervisorctl itself, never answered by the daemon
        /// No daemon answers on the socket (exit 3).
        public static let unreachable = Code(rawValue: "unreachable")
        /// Several services run here and none was named (exit 2).
        public static let serviceAmbiguous = Code(rawValue: "service_ambiguous")
        /// The daemon's answer was not what the command expects (a version mismatch, a cut stream).
        public static let unexpectedAnswer = Code(rawValue: "unexpected_answer")

        /// Every code above: what docs and tests walk.
        public static let all: [Code] = [
            .binaryNotFound,
            .binaryNotRegular,
            .binaryNotExecutable,
            .binaryEmpty,
            .binaryNotReadable,
            .binaryPathInvalid,
            .configInvalid,
            .stagedBinaryReplaced,
            .stageFailed,
            .noBackup,
            .unknownRelease,
            .ambiguousRelease,
            .schemaChanged,
            .preflightFailed,
            .hookFailed,
            .portInUse,
            .startFailed,
            .appExited,
            .healthTimeout,
            .proxyWriteFailed,
            .proxyValidateFailed,
            .proxyReloadFailed,
            .proxyNotConfirmed,
            .proxyNotWired,
            .switchBackFailed,
            .commitFailed,
            .badRequest,
            .notFound,
            .methodNotAllowed,
            .forbidden,
            .busy,
            .notRunning,
            .journalFailed,
            .shuttingDown,
            .interrupted,
            .emergencyIncomplete,
            .unreachable,
            .serviceAmbiguous,
            .unexpectedAnswer,
        ]
    }

    public let code: Code
    public let message: String
    /// With `busy`: the phase the running operation is in.
    public let phase: String?

    public init(_ code: Code, _ message: String, phase: String? = nil) {
        self.code = code
        self.message = message
        self.phase = phase
    }

    public var description: String { "\(message) [\(code)]" }

    /// The HTTP status the control API answers this error with.
    public var httpStatus: Int {
        switch code {
        case .badRequest: 400
        case .forbidden: 403
        case .notFound: 404
        case .methodNotAllowed: 405
        case .busy, .noBackup, .notRunning, .shuttingDown: 409
        default: 422
        }
    }
}

/// A swap's failure (the same type: `SupervisorError`).
public typealias SwapError = SupervisorError
/// A refused control request (the same type: `SupervisorError`).
public typealias ControlError = SupervisorError
