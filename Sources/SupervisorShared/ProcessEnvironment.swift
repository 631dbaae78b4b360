#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore
import SystemBindings

public enum ProcessEnvironment {
    /// How an app instance is started: the daemon's environment without
    /// systemd's per-process variables (they describe the daemon, not the
    /// app), plus `[app] env` and `PORT`.
    public static func appSpawnRequest(executable: String, config: AppConfig, port: Int) -> SpawnRequest {
        var environment = current()
        for key in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            environment[key] = nil
        }
        environment.merge(config.env) { $1 }
        environment["PORT"] = String(port)
        return SpawnRequest(
            executable: executable, arguments: config.arguments(port: port),
            environment: environment, workingDirectory: config.workingDirectory)
    }

    public static func current() -> [String: String] {
        var environment: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return environment
    }
}
