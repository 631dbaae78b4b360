#if canImport(Glibc)
import Glibc
#endif

/// What an in-place re-exec hands the new image, through its environment:
/// `SUPERVISOR_REEXEC_FDS=lock:4,control:9,app-0:10` (the descriptors stay
/// open across execve) and `SUPERVISOR_REEXEC_FROM=<version>` (the image
/// that exec'd it). The new image takes them once at start, makes them
/// close-on-exec again and removes the variables, so no child sees them.
public enum ReexecHandover {
    static let prefix = "SUPERVISOR_REEXEC_"
    static let descriptorsKey = "SUPERVISOR_REEXEC_FDS"
    static let fromKey = "SUPERVISOR_REEXEC_FROM"

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

        public func fd(_ name: String) -> Int32? { descriptors.first { $0.name == name }?.fd }
        public var app: [Int32] { descriptors.filter { $0.name.hasPrefix("app-") }.map(\.fd) }
    }

    static func environment(_ descriptors: [Descriptor], from version: String) -> [String: String] {
        [descriptorsKey: descriptors.map { "\($0.name):\($0.fd)" }.joined(separator: ","), fromKey: version]
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
        unsetenv(descriptorsKey)
        unsetenv(fromKey)
        guard let descriptors = parse(value) else {
            throw StartError(description: "\(descriptorsKey)=\(value) is not a list of name:fd")
        }
        for descriptor in descriptors {
            guard fcntl(descriptor.fd, F_SETFD, FD_CLOEXEC) == 0 else {
                throw StartError(description: "the previous image handed over fd \(descriptor.fd) (\(descriptor.name)), which is not open")
            }
        }
        return Received(descriptors: descriptors, from: from)
    }
}
