import SupervisorCore
import SystemBindings

/// Who the daemon's children run as: the app with its preflight and version
/// commands as `[app] user`/`[app] group`, hooks as `[hooks] user` (default:
/// the app's). Nil is the daemon's own identity (root). Proxy commands are
/// the daemon's own work and run as root.
public struct RunAs: Sendable, Equatable {
    public let app: ProcessCredentials?
    public let hooks: ProcessCredentials?

    public static let daemon = RunAs(app: nil, hooks: nil)

    public init(app: ProcessCredentials?, hooks: ProcessCredentials?) {
        self.app = app
        self.hooks = hooks
    }

    /// Looks the users and groups up in the user database.
    public static func resolve(_ config: SupervisorConfig) throws(RunAsError) -> RunAs {
        let app: ProcessCredentials?
        do {
            app = try ProcessCredentials.resolve(user: config.app.user, group: config.app.group)
        } catch {
            switch error {
            case .noSuchUser: throw RunAsError(key: "app.user", reason: error)
            case .noSuchGroup, .groupWithoutUser: throw RunAsError(key: "app.group", reason: error)
            }
        }
        guard let hooksUser = config.hooks.user else { return RunAs(app: app, hooks: app) }
        do {
            return RunAs(app: app, hooks: try ProcessCredentials.resolve(user: hooksUser, group: nil))
        } catch {
            throw RunAsError(key: "hooks.user", reason: error)
        }
    }
}

public struct RunAsError: Error, Sendable, CustomStringConvertible {
    public let key: String
    public let reason: CredentialsError
    public var description: String { "\(key): \(reason)" }
}
