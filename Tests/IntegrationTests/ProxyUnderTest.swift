#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// Ways to break a proxy's part of a swap, for the conformance suite.
enum ProxyFault: String, CaseIterable, CustomTestStringConvertible {
    /// The proxy cannot be reached to reload (admin endpoint down, wrong pid file).
    case unreachable
    /// The proxy config no longer validates (someone broke it by hand).
    case configFailsValidation
    /// The reload command exits 0 but the proxy never applies the change.
    case reloadHasNoEffect
    /// The upstream object the supervisor should change does not exist.
    case unknownUpstreamID

    var testDescription: String { rawValue }
}

/// A real proxy started by a test, in a directory of its own, on free ports,
/// pointing at the app's first port. Killed (by pid) when the test ends.
protocol ProxyUnderTest: AnyObject {
    var name: String { get }
    var listenPort: Int { get }
    var environment: [String: String] { get }
    var log: String { get }
    func start() throws
    /// The `[proxy]` section of a supervisor config for this proxy, broken by `fault` if given.
    func proxySection(fault: ProxyFault?) -> String
    /// Applies the parts of `fault` that happen outside the supervisor's config.
    func inject(_ fault: ProxyFault) throws
    /// Routes to 127.0.0.1:port by hand, the way an operator would without us.
    func switchByHand(to port: Int) throws
    func stop()
}

extension ProxyUnderTest {
    /// The version string the app behind the proxy answers with.
    func servedVersion() -> String? { IntegrationTests.servedVersion(port: listenPort) }

    func inject(_ fault: ProxyFault) throws {}
}

enum ProxyKindUnderTest: String, CaseIterable, CustomTestStringConvertible {
    case caddy, caddyAPI = "caddy-api", nginx
    var testDescription: String { rawValue }

    var isInstalled: Bool {
        switch self {
        case .caddy, .caddyAPI: FileManager.default.isExecutableFile(atPath: "/usr/bin/caddy")
        case .nginx: FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx")
        }
    }

    /// The faults this proxy can show and the error code a swap must answer each with.
    var faults: [ProxyFault: String] {
        switch self {
        case .caddy, .nginx:
            [.unreachable: "proxy_reload_failed", .configFailsValidation: "proxy_validate_failed", .reloadHasNoEffect: "proxy_not_confirmed"]
        case .caddyAPI:
            [.unreachable: "proxy_reload_failed", .unknownUpstreamID: "proxy_reload_failed"]
        }
    }

    /// Faults in the daemon's own proxy settings that already stop its first
    /// start from pointing the proxy at the app (so it is never ready), not
    /// only a later swap: Caddy's admin API unreachable, an @id it lacks.
    /// nginx's first start needs no reload when the upstream already routes.
    func faultBlocksFirstStart(_ fault: ProxyFault) -> Bool {
        switch self {
        case .caddy: fault == .unreachable
        case .caddyAPI: fault == .unreachable || fault == .unknownUpstreamID
        case .nginx: false
        }
    }

    /// Every (proxy, fault) pair that applies.
    static var faultCases: [(ProxyKindUnderTest, ProxyFault)] {
        allCases.flatMap { kind in ProxyFault.allCases.filter { kind.faults[$0] != nil }.map { (kind, $0) } }
    }

    /// `caddyTryDuration`: the Caddyfile's `lb_try_duration` (how long Caddy holds a request no upstream takes).
    func make(initialUpstreamPort: Int, caddyTryDuration: String = "2s") -> any ProxyUnderTest {
        switch self {
        case .caddy: CaddyUnderTest(initialUpstreamPort: initialUpstreamPort, tryDuration: caddyTryDuration)
        case .caddyAPI: CaddyAPIUnderTest(initialUpstreamPort: initialUpstreamPort)
        case .nginx: NginxUnderTest(initialUpstreamPort: initialUpstreamPort)
        }
    }
}

/// Starts a long-running proxy process with its output in `log`.
func startBackground(_ executable: String, _ arguments: [String], environment: [String: String], log: String) throws -> TestProcess {
    try TestProcess(executable, arguments, environment: environment, stdout: log)
}

/// Stops a proxy the way its service manager would (SIGTERM: nginx's master
/// then stops its workers), SIGKILL if it lingers.
func stopBackground(_ process: TestProcess?) {
    process?.stop(SIGTERM, grace: 5)
}

/// Caddy from a Caddyfile that imports the upstream file the supervisor owns.
final class CaddyUnderTest: ProxyUnderTest {
    let directory = TemporaryDirectory("caddy")
    let listenPort: Int
    let adminPort: Int
    let caddyfile: String
    let upstreamFile: String
    private var process: TestProcess?

    var name: String { "caddy" }

    init(initialUpstreamPort: Int, tryDuration: String = "2s") {
        let ports = FreePort.pick(2)
        listenPort = ports[0]
        adminPort = ports[1]
        upstreamFile = directory.write("upstreams/app", "to 127.0.0.1:\(initialUpstreamPort)\n")
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
            		lb_try_duration \(tryDuration)
            		lb_try_interval 50ms
            	}
            }
            """)
    }

    deinit { stop() }

    var environment: [String: String] { Caddy.environment(in: directory) }

    func proxySection(fault: ProxyFault?) -> String {
        let admin = fault == .unreachable ? "http://127.0.0.1:\(FreePort.pick()[0])" : "http://127.0.0.1:\(adminPort)"
        let reload = fault == .reloadHasNoEffect ? "reload = [\"/bin/true\"]" : ""
        return """
            [proxy]
            kind = "caddy"
            upstream_file = "\(upstreamFile)"
            config = "\(caddyfile)"
            admin = "\(admin)"
            \(reload)
            """
    }

    func inject(_ fault: ProxyFault) throws {
        if fault == .configFailsValidation {
            let broken = try String(contentsOfFile: caddyfile, encoding: .utf8) + "\nnot_a_directive {\n"
            try broken.write(toFile: caddyfile, atomically: true, encoding: .utf8)
        }
    }

    func start() throws {
        process = try Caddy.start(["run", "--config", caddyfile, "--adapter", "caddyfile"], in: directory, adminPort: adminPort)
    }

    func switchByHand(to port: Int) throws {
        try "to 127.0.0.1:\(port)\n".write(toFile: upstreamFile, atomically: true, encoding: .utf8)
        let reload = try Command.run("/usr/bin/caddy", ["reload", "--config", caddyfile, "--adapter", "caddyfile", "--address", "127.0.0.1:\(adminPort)"], environment: environment)
        #expect(reload.exitCode == 0, "\(reload.stderr)")
    }

    var log: String { Caddy.log(in: directory) }

    func stop() { stopBackground(process) }
}

/// Caddy from JSON config; the supervisor changes the upstream with the admin API.
final class CaddyAPIUnderTest: ProxyUnderTest {
    let directory = TemporaryDirectory("caddy-api")
    let listenPort: Int
    let adminPort: Int
    let configFile: String
    static let upstreamID = "app-upstream"
    private var process: TestProcess?

    var name: String { "caddy-api" }

    init(initialUpstreamPort: Int) {
        let ports = FreePort.pick(2)
        listenPort = ports[0]
        adminPort = ports[1]
        configFile = directory.write(
            "caddy.json",
            """
            {"admin": {"listen": "127.0.0.1:\(adminPort)"},
             "apps": {"http": {"grace_period": "2s", "servers": {"app": {
               "listen": [":\(listenPort)"],
               "automatic_https": {"disable": true},
               "routes": [{"handle": [{
                 "handler": "reverse_proxy",
                 "upstreams": [{"@id": "\(Self.upstreamID)", "dial": "127.0.0.1:\(initialUpstreamPort)"}],
                 "load_balancing": {"try_duration": "2s", "try_interval": "50ms"}
               }]}]
             }}}}}
            """)
    }

    deinit { stop() }

    var environment: [String: String] { Caddy.environment(in: directory) }

    func proxySection(fault: ProxyFault?) -> String {
        let admin = fault == .unreachable ? "http://127.0.0.1:\(FreePort.pick()[0])" : "http://127.0.0.1:\(adminPort)"
        return """
            [proxy]
            kind = "caddy-api"
            admin = "\(admin)"
            upstream_id = "\(fault == .unknownUpstreamID ? "no-such-upstream" : Self.upstreamID)"
            """
    }

    func start() throws {
        process = try Caddy.start(["run", "--config", configFile], in: directory, adminPort: adminPort)
    }

    func switchByHand(to port: Int) throws {
        let result = try Command.run("/usr/bin/curl", ["-s", "-f", "-X", "PATCH", "-H", "Content-Type: application/json", "-d", "\"127.0.0.1:\(port)\"", "http://127.0.0.1:\(adminPort)/id/\(Self.upstreamID)/dial"])
        #expect(result.exitCode == 0, "\(result.stderr)")
    }

    var log: String { Caddy.log(in: directory) }

    func stop() { stopBackground(process) }
}

/// nginx under a private prefix, its upstream block including the file the supervisor owns.
final class NginxUnderTest: ProxyUnderTest {
    let directory = TemporaryDirectory("nginx")
    let listenPort: Int
    let conf: String
    let upstreamFile: String
    let pidFile: String
    private var process: TestProcess?

    var name: String { "nginx" }

    init(initialUpstreamPort: Int) {
        listenPort = FreePort.pick()[0]
        upstreamFile = directory.write("upstream.conf", "server 127.0.0.1:\(initialUpstreamPort);\n")
        pidFile = directory.file("nginx.pid")
        for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            try? FileManager.default.createDirectory(atPath: directory.file("tmp/\(temp)"), withIntermediateDirectories: true)
        }
        chmod(directory.file("tmp"), 0o777)
        let d = directory.path
        conf = directory.write(
            "nginx.conf",
            """
            daemon off;
            master_process on;
            worker_processes 2;
            pid \(pidFile);
            error_log \(d)/error.log notice;
            worker_shutdown_timeout 10s;
            events { worker_connections 1024; }
            http {
                access_log off;
                client_body_temp_path \(d)/tmp/body;
                proxy_temp_path \(d)/tmp/proxy;
                fastcgi_temp_path \(d)/tmp/fastcgi;
                uwsgi_temp_path \(d)/tmp/uwsgi;
                scgi_temp_path \(d)/tmp/scgi;
                upstream app {
                    include \(upstreamFile);
                    keepalive 16;
                }
                server {
                    listen 127.0.0.1:\(listenPort);
                    location / {
                        proxy_pass http://app;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_next_upstream error timeout;
                    }
                }
            }
            """)
    }

    deinit { stop() }

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    var commandPrefix: [String] { ["/usr/sbin/nginx", "-p", directory.path, "-c", conf, "-e", directory.file("error.log")] }

    func proxySection(fault: ProxyFault?) -> String {
        func argv(_ words: [String]) -> String { "[" + words.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        // No `reload`: the driver signals the master itself (SIGHUP, as `nginx -s reload`
        // does), the way an operator's default config runs. Unreachable: the pid file names no master.
        var pid = pidFile
        var reload = ""
        switch fault {
        case .unreachable?: pid = directory.file("elsewhere/nginx.pid")
        case .reloadHasNoEffect?: reload = "reload = [\"/bin/true\"]"
        default: break
        }
        return """
            [proxy]
            kind = "nginx"
            upstream_file = "\(upstreamFile)"
            config = "\(conf)"
            pid_file = "\(pid)"
            validate = \(argv(commandPrefix + ["-t", "-q"]))
            \(reload)
            """
    }

    func inject(_ fault: ProxyFault) throws {
        if fault == .configFailsValidation {
            let broken = try String(contentsOfFile: conf, encoding: .utf8) + "\nnot_a_directive on;\n"
            try broken.write(toFile: conf, atomically: true, encoding: .utf8)
        }
    }

    func start() throws {
        process = try startBackground(commandPrefix[0], Array(commandPrefix.dropFirst()), environment: environment, log: directory.file("nginx.out"))
        let up = eventually(timeout: 20) { isListening(port: self.listenPort) && FileManager.default.fileExists(atPath: self.pidFile) }
        if !up { Issue.record("nginx did not start; log:\n\(log)") }
    }

    func switchByHand(to port: Int) throws {
        try "server 127.0.0.1:\(port);\n".write(toFile: upstreamFile, atomically: true, encoding: .utf8)
        let reload = try Command.run(commandPrefix[0], Array(commandPrefix.dropFirst()) + ["-s", "reload"])
        #expect(reload.exitCode == 0, "\(reload.stderr)")
        // As the hand-run guides do: give the old workers a moment.
        usleep(200_000)
    }

    var log: String {
        ((try? String(contentsOfFile: directory.file("error.log"), encoding: .utf8)) ?? "")
            + ((try? String(contentsOfFile: directory.file("nginx.out"), encoding: .utf8)) ?? "")
    }

    func stop() { stopBackground(process) }
}

/// What both Caddy fixtures share: private data dirs, start and wait for the admin API, the log.
enum Caddy {
    static func environment(in directory: TemporaryDirectory) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["XDG_DATA_HOME"] = directory.file("data")
        env["XDG_CONFIG_HOME"] = directory.file("config")
        env["HOME"] = directory.path
        return env
    }

    static func start(_ arguments: [String], in directory: TemporaryDirectory, adminPort: Int) throws -> TestProcess {
        let process = try startBackground("/usr/bin/caddy", arguments, environment: environment(in: directory), log: directory.file("caddy.log"))
        let up = eventually(timeout: 20) {
            (try? Command.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(adminPort)/config/"], timeout: 5))?.stdout == "200"
        }
        if !up { Issue.record("caddy did not start; log:\n\(log(in: directory))") }
        return process
    }

    static func log(in directory: TemporaryDirectory) -> String {
        (try? String(contentsOfFile: directory.file("caddy.log"), encoding: .utf8)) ?? ""
    }
}
