#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// A real Caddy (the Debian package) started by a test: its own Caddyfile,
/// admin port, listen port and data dirs, importing an upstream file the
/// supervisor owns. Killed (by pid) when the test ends.
final class CaddyUnderTest {
    let directory = TemporaryDirectory("caddy")
    let listenPort: Int
    let adminPort: Int
    let caddyfile: String
    let upstreamFile: String
    private var process: Process?

    static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/caddy") }

    init(initialUpstreamPort: Int) {
        let ports = FreePort.pick(2)
        listenPort = ports[0]
        adminPort = ports[1]
        upstreamFile = directory.file("upstreams/app")
        try? FileManager.default.createDirectory(atPath: directory.file("upstreams"), withIntermediateDirectories: true)
        _ = directory.write("upstreams/app", "to 127.0.0.1:\(initialUpstreamPort)\n")
        caddyfile = directory.write(
            "Caddyfile",
            """
            {
            	admin 127.0.0.1:\(adminPort)
            	auto_https off
            	grace_period 2s
            }

            :\(listenPort) {
            	reverse_proxy {
            		import \(upstreamFile)
            		lb_try_duration 2s
            		lb_try_interval 50ms
            	}
            }
            """)
    }

    deinit { stop() }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["XDG_DATA_HOME"] = directory.file("data")
        env["XDG_CONFIG_HOME"] = directory.file("config")
        env["HOME"] = directory.path
        return env
    }

    /// The `[proxy]` section a supervisor config uses for this Caddy.
    func proxySection(admin: String? = nil) -> String {
        """
        [proxy]
        kind = "caddy"
        upstream_file = "\(upstreamFile)"
        config = "\(caddyfile)"
        admin = "\(admin ?? "http://127.0.0.1:\(adminPort)")"
        """
    }

    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/caddy")
        process.arguments = ["run", "--config", caddyfile, "--adapter", "caddyfile"]
        process.environment = environment
        let log = directory.file("caddy.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        let up = eventually(timeout: 20) {
            (try? Command.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(adminPort)/config/"], timeout: 5))?.stdout == "200"
        }
        if !up { Issue.record("caddy did not start; log:\n\(self.log)") }
    }

    /// `caddy reload --force`: a reload that changes nothing, for comparison.
    func forceReload() throws {
        let result = try Command.run("/usr/bin/caddy", ["reload", "--force", "--config", caddyfile, "--adapter", "caddyfile", "--address", "127.0.0.1:\(adminPort)"], environment: environment)
        #expect(result.exitCode == 0, "caddy reload: \(result.stderr)")
    }

    var log: String { (try? String(contentsOfFile: directory.file("caddy.log"), encoding: .utf8)) ?? "" }

    /// The version string the app behind Caddy answers with.
    func servedVersion() -> String? {
        guard let answer = httpGet(port: listenPort), answer.status == 200 else { return nil }
        return answer.body.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: " ").last
    }

    func stop() {
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
