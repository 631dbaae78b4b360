#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

/// A real supervisord started by a test, with its own temp dir, ports and
/// socket. `stop()` (or deinit) kills only what this test started.
final class DaemonUnderTest {
    let directory = TemporaryDirectory("supervisord")
    let ports: [Int]
    let socket: String
    let configPath: String
    let logPath: String
    private(set) var process: TestProcess?
    /// Put in the daemon's environment, so every app instance it starts
    /// inherits it: `stop()` finds them all, even ones it never reported.
    let owner = "SUPERVISOR_TEST_OWNER=\(UUID().uuidString)"
    private var appPIDsSeen: Set<Int32> = []

    struct Options {
        /// The live binary; nil means demo-app itself.
        var binary: String? = nil
        var appArgs: [String] = []
        var appEnv: [String: String] = [:]
        var extraApp = ""
        var extraHealth = ""
        var extraControl = ""
        /// A whole `[proxy]` section (and anything after it).
        var proxySection = ""
        var drainTimeout = "5s"
        /// The two side ports; picked free when nil.
        var ports: [Int]? = nil
        var stopTimeout = "5s"
        var startTimeout = "10s"
        /// `[control] emergency_restart` really starts this daemon again (detached, into the
        /// same log): what `systemctl start` does for an emergency rollback under systemd.
        var emergencyRestartStartsDaemon = false
    }

    init(_ options: Options = Options(), handoff: Bool = false) {
        ports = options.ports ?? FreePort.pick(2)
        socket = directory.file("control.sock")
        logPath = directory.file("supervisord.log")
        let args = ((handoff ? [] : ["--port", "{port}"]) + options.appArgs).map { "\"\($0)\"" }.joined(separator: ", ")
        let env = options.appEnv.map { "\($0.key) = \"\($0.value)\"" }.joined(separator: ", ")
        var control = options.extraControl
        if options.emergencyRestartStartsDaemon {
            // Run by the CLI with its environment (the test passes `daemonEnvironment`): the new
            // daemon carries the owner mark, so `stop()` finds and kills it and its app.
            let script = directory.write(
                "start-again",
                """
                #!/bin/sh
                exec >> \(logPath) 2>&1 < /dev/null
                setsid \(Binaries.supervisord) --config \(directory.file("service.toml")) --log-level debug &
                echo "started supervisord again (pid $!)"
                """, mode: 0o755)
            control += "\nemergency_restart = [\"\(script)\"]"
        }
        configPath = directory.write(
            "service.toml",
            """
            name = "itest"
            state_dir = "\(directory.file("state"))"

            [app]
            binary = "\(options.binary ?? Binaries.demoApp)"
            args = [\(args)]
            env = { \(env) }
            \(handoff ? "" : "ports = [\(ports[0]), \(ports[1])]")
            stop_timeout = "\(options.stopTimeout)"
            \(options.extraApp)

            [health]
            interval = "50ms"
            start_timeout = "\(options.startTimeout)"
            \(options.extraHealth)

            [drain]
            timeout = "\(options.drainTimeout)"

            [control]
            socket = "\(socket)"
            \(control)

            \(options.proxySection)
            """)
    }

    deinit { stop() }

    /// Starts supervisord (`executable`: another copy of it) with `environment` added to this process's.
    func start(environment: [String: String] = [:], executable: String = Binaries.supervisord) throws {
        process = try TestProcess(executable, ["--config", configPath, "--log-level", "debug"], environment: daemonEnvironment(adding: environment), stdout: logPath)
    }

    var pid: Int32 { process?.pid ?? -1 }

    /// Status as JSON, or nil when the daemon does not answer.
    func status() -> [String: Any]? {
        // Exit 1 is a status too: the app does not serve right now (starting, backoff).
        guard let result = try? ctl(["status", "--json"]), result.exitCode == 0 || result.exitCode == 1 else { return nil }
        let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        if let pid = object?["pid"] as? Int { appPIDsSeen.insert(Int32(pid)) }
        return object
    }

    /// Waits until the app is running and healthy; returns its status.
    func waitUntilRunning(timeout: TimeInterval = 30) -> [String: Any]? {
        var last: [String: Any]?
        _ = eventually(timeout: timeout) {
            last = status()
            return last?["phase"] as? String == "running"
        }
        return last?["phase"] as? String == "running" ? last : nil
    }

    func ctl(_ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
        try Command.run(Binaries.supervisorctl, ["--socket", socket] + arguments, environment: environment, timeout: 30)
    }

    /// Sends `signal` and waits for the daemon to exit; returns its exit code.
    @discardableResult
    func terminate(_ signal: Int32 = SIGTERM, timeout: TimeInterval = 30) -> Int32? {
        guard let process else { return nil }
        guard process.isRunning else { return process.exitCode }
        process.signal(signal)
        guard process.waitForExit(timeout: timeout) else { return nil }
        return process.exitCode
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Stops the daemon as systemd would (SIGTERM: it stops its app), then
    /// kills anything left: the daemon and every app pid it ever reported.
    /// The app outlives a killed daemon by design, so this matters.
    func stop() {
        if let process, process.isRunning {
            _ = status()  // learn the current app pid
            process.stop(SIGTERM, grace: 15)
        }
        for pid in appPIDsSeen where processExists(pid) {
            kill(pid, SIGKILL)
        }
        for pid in processes(withEnvironment: owner) where pid != getpid() {
            kill(pid, SIGKILL)
        }
    }
}

/// Every live process whose environment has `entry`.
func processes(withEnvironment entry: String) -> [Int32] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return names.compactMap { Int32($0) }.filter { pid in
        guard let bytes = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        return bytes.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == entry }
    }
}
