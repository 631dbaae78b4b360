#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import SupervisorShared
import Synchronization

/// What an in-place re-exec hands the new image, through its environment:
/// `SUPERVISOR_REEXEC_FDS=lock:4,control:9,app-0:10,previous:12` (the
/// descriptors stay open across execve; `previous` is the image that exec'd
/// this one, run again should this one not start), `SUPERVISOR_REEXEC_FROM`
/// (that image's version), `SUPERVISOR_REEXEC_ARGV` (its arguments, for that
/// fallback) and, in an image run again that way, `SUPERVISOR_REEXEC_FAILED`
/// (why the new one did not start). The image takes them once at start,
/// makes the descriptors close-on-exec again and removes the variables, so
/// no child sees them.
public enum ReexecHandover {
    static let prefix = "SUPERVISOR_REEXEC_"
    static let descriptorsKey = "SUPERVISOR_REEXEC_FDS"
    static let fromKey = "SUPERVISOR_REEXEC_FROM"
    static let argvKey = "SUPERVISOR_REEXEC_ARGV"
    static let failedKey = "SUPERVISOR_REEXEC_FAILED"
    /// What `supervisord --handover-protocol` prints: the handover this binary
    /// takes. A running daemon re-executes only into a binary that prints it
    /// (an older one, without it, would find the lock held and not start).
    public static let protocolVersion = "1"

    /// Set once this image has started (its services run): from then on a failure
    /// is this image's own, and the previous one is never run again.
    static let started = Atomic<Bool>(false)

    /// Separates the arguments in `SUPERVISOR_REEXEC_ARGV` (ASCII unit separator).
    static let separator: Character = "\u{1F}"

    public struct Descriptor: Sendable, Equatable {
        /// `lock`, `control` (bound by the daemon: its path is ours to unlink),
        /// `control-systemd` (socket activation), `app-N`.
        public let name: String
        public let fd: Int32
    }

    /// What the previous image handed over.
    public struct Received: Sendable {
        public var descriptors: [Descriptor]
        /// The version of the image that exec'd this one.
        public var from: String
        /// Its arguments.
        public var arguments: [String]
        /// Set in an image run again because the new one could not start: why.
        public var failed: String?

        public func fd(_ name: String) -> Int32? { descriptors.first { $0.name == name }?.fd }
        public var app: [Int32] { descriptors.filter { $0.name.hasPrefix("app-") }.map(\.fd) }

        /// The new image could not start: run the previous one again (same pid, the
        /// same descriptors, its own arguments), telling it why. Returns only when
        /// there is no previous image or execve failed.
        public func runPreviousImage(because reason: String) {
            guard let previous = fd("previous"), !ReexecHandover.started.load(ordering: .acquiring) else { return }
            let kept = descriptors.filter { $0.name != "previous" }
            _ = csup_cloexec_from(3)
            for descriptor in kept { _ = fcntl(descriptor.fd, F_SETFD, 0) }
            var environment = ReexecHandover.environment(kept, from: from, arguments: arguments)
            environment[failedKey] = String(reason.prefix(500).map { $0 == "\n" ? " " : $0 })
            let envp = ProcessEnvironment.current().filter { !$0.key.hasPrefix(ReexecHandover.prefix) }.merging(environment) { _, new in new }
                .map { "\($0.key)=\($0.value)" }
            withCStrings(arguments) { argv in
                withCStrings(envp) { env in
                    _ = csup_fexecve(previous, argv, env)
                }
            }
            for descriptor in kept { _ = fcntl(descriptor.fd, F_SETFD, FD_CLOEXEC) }
        }
    }

    static func environment(_ descriptors: [Descriptor], from version: String, arguments: [String]) -> [String: String] {
        [
            descriptorsKey: descriptors.map { "\($0.name):\($0.fd)" }.joined(separator: ","), fromKey: version,
            argvKey: arguments.joined(separator: String(separator)),
        ]
    }

    /// Parses `SUPERVISOR_REEXEC_FDS`; pure, for tests.
    static func parse(_ value: String) -> [Descriptor]? {
        var descriptors: [Descriptor] = []
        for item in value.split(separator: ",") {
            let parts = item.split(separator: ":")
            guard parts.count == 2, let fd = Int32(parts[1]), fd > 2, !parts[0].isEmpty else { return nil }
            descriptors.append(Descriptor(name: String(parts[0]), fd: fd))
        }
        return descriptors
    }

    /// Takes the handover, if this image was exec'd by a previous one: each
    /// named descriptor must be open; they become close-on-exec again.
    /// Throws when the variables are there but do not make sense.
    public static func take() throws -> Received? {
        guard let raw = getenv(descriptorsKey) else { return nil }
        let value = String(cString: raw)
        let from = getenv(fromKey).map { String(cString: $0) } ?? "unknown"
        let arguments = getenv(argvKey).map { String(cString: $0).split(separator: separator, omittingEmptySubsequences: false).map(String.init) } ?? []
        let failed = getenv(failedKey).map { String(cString: $0) }
        for key in [descriptorsKey, fromKey, argvKey, failedKey] { unsetenv(key) }
        guard let descriptors = parse(value) else {
            throw StartError(description: "\(descriptorsKey)=\(value) is not a list of name:fd")
        }
        for descriptor in descriptors {
            guard fcntl(descriptor.fd, F_SETFD, FD_CLOEXEC) == 0 else {
                throw StartError(description: "the previous image handed over fd \(descriptor.fd) (\(descriptor.name)), which is not open")
            }
        }
        return Received(descriptors: descriptors, from: from, arguments: arguments.isEmpty ? CommandLine.arguments : arguments, failed: failed)
    }
}
