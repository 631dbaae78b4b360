#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore
import SupervisorShared

/// What `--check` and the daemon's start say about rights (and wiring that
/// loses traffic, as a warning): users and groups
/// that must exist and a control socket directory only root can change are
/// problems (the daemon refuses to start, exit 2); an app that runs as root
/// and a binary directory others can write are warnings.
public struct PrivilegeCheck: Sendable {
    public var problems: [String] = []
    public var warnings: [String] = []

    /// `runAs`: the identities already looked up (the daemon's start has them); nil: look them up.
    public init(_ config: SupervisorConfig, runAs resolved: RunAs? = nil, socketFromSystemd: Bool = false) {
        do throws(RunAsError) {
            let runAs = if let resolved { resolved } else { try RunAs.resolve(config) }
            if runAs.app == nil || runAs.app?.uid == 0 {
                let why = config.app.user == nil ? "not set, so" : "is root:"
                warnings.append("app.user: \(why) the app, its preflight and version commands and the hooks run as root; set [app] user to an unprivileged user")
            } else if runAs.hooks == nil || runAs.hooks?.uid == 0 {
                warnings.append("hooks.user: hooks run as root")
            }
        } catch {
            problems.append(error.description)
        }
        if !socketFromSystemd, let problem = SocketDirectory.problem(socketPath: config.control.socket) {
            problems.append("control.socket: \(problem)")
        }
        if config.proxy.kind == .none && config.app.listen.isEmpty {
            warnings.append("proxy.kind: \"none\" without [app] listen: every swap moves the app to the other port of \(config.app.ports.map(String.init).joined(separator: "/")) and nothing follows it, so whatever sends traffic to the old port gets errors; set a [proxy] table, or [app] listen for socket handoff")
        }
        let directory = AtomicFile.directoryName(config.app.binary)
        var info = stat()
        if stat(directory, &info) == 0, info.st_uid != 0 || info.st_mode & 0o022 != 0 {
            let who = info.st_uid != 0 ? "owned by uid \(info.st_uid)" : "writable by others (mode \(String(info.st_mode & 0o7777, radix: 8)))"
            warnings.append("app.binary: \(directory) is \(who): whoever can write it can replace \(config.app.binary) or its staged copy; make it root's, 0755")
        }
    }
}
