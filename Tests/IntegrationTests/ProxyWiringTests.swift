#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import SupervisorDaemon
import Testing

/// The parsers that read nginx's `-T` dump and Caddy's adapted JSON.
@Suite struct ProxyWiringParserTests {
    static let upstream = "/etc/nginx/upstreams/app.conf"

    static func dump(_ files: [(String, String)]) -> String {
        files.map { "# configuration file \($0.0):\n\($0.1)" }.joined(separator: "\n")
            + "\nnginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
    }

    static let wiredMain = """
        events {}
        http {
            upstream app {   # the supervisor's
                include /etc/nginx/upstreams/app.conf;
                keepalive 16;
            }
            server { location / { proxy_pass http://app/; } }
        }
        """

    @Test func theIncludeInAnUpstreamThatAProxyPassUsesIsWired() {
        let text = Self.dump([("/etc/nginx/nginx.conf", Self.wiredMain), (Self.upstream, "server 127.0.0.1:8081;\n")])
        #expect(NginxWiring.problem(dump: text, upstreamFile: Self.upstream) == nil)
        #expect(NginxWiring.verdict(dump: text, upstreamFile: Self.upstream) == .wired(["app"]))
    }

    @Test func relativeAndGlobIncludesAreExpandedLikeNginxDoes() {
        let main = "events {}\nhttp { include sites/*.conf; }\n"
        let site = "upstream \"app\" { include upstreams/*.conf; }\nserver { location / { proxy_pass http://app; } }\n"
        let text = Self.dump([("/etc/nginx/nginx.conf", main), ("/etc/nginx/sites/a.conf", site), (Self.upstream, "server 127.0.0.1:8081;\n")])
        #expect(NginxWiring.problem(dump: text, upstreamFile: Self.upstream) == nil)
    }

    @Test func aGlobMatchesLikeNginxsOneDirectoryDeepAndATemplateMayHoldTheWholeUpstream() {
        // nginx's glob: `*` does not cross a `/`.
        let deep = Self.dump([
            ("/etc/nginx/nginx.conf", "http { upstream app { include /etc/nginx/*.conf; } server { location / { proxy_pass http://app; } } }\n"),
            (Self.upstream, "server 127.0.0.1:8081;\n"),
        ])
        guard case .undecidable = NginxWiring.verdict(dump: deep, upstreamFile: Self.upstream) else {
            Issue.record("\(NginxWiring.verdict(dump: deep, upstreamFile: Self.upstream))")
            return
        }
        // upstream_template = "upstream app { server 127.0.0.1:{port}; }", included at http level.
        let whole = Self.dump([
            ("/etc/nginx/nginx.conf", "http { include /etc/nginx/upstreams/app.conf; server { location / { proxy_pass http://app; } } }\n"),
            (Self.upstream, "upstream app { server 127.0.0.1:8081; }\n"),
        ])
        #expect(NginxWiring.verdict(dump: whole, upstreamFile: Self.upstream) == .wired(["app"]))
    }

    @Test func aFileNginxNeverLoadsIsNamed() throws {
        let main = "events {}\nhttp { upstream app { server 127.0.0.1:8081; } server { location / { proxy_pass http://app; } } }\n"
        let problem = try #require(NginxWiring.problem(dump: Self.dump([("/etc/nginx/nginx.conf", main)]), upstreamFile: Self.upstream))
        #expect(problem.contains("nginx does not load \(Self.upstream)"), "\(problem)")
        #expect(problem.contains("it loads /etc/nginx/nginx.conf"), "\(problem)")
    }

    @Test func anIncludeOutsideAnUpstreamBlockIsNotWired() throws {
        let main = "events {}\nhttp { include /etc/nginx/upstreams/app.conf; server { location / { proxy_pass http://127.0.0.1:8081; } } }\n"
        let text = Self.dump([("/etc/nginx/nginx.conf", main), (Self.upstream, "# nothing\n")])
        let problem = try #require(NginxWiring.problem(dump: text, upstreamFile: Self.upstream))
        #expect(problem.contains("not inside an `upstream NAME { … }` block"), "\(problem)")
    }

    @Test func anUpstreamNoProxyPassUsesIsNotWired() throws {
        let main = "events {}\nhttp { upstream app { include /etc/nginx/upstreams/app.conf; } server { location / { proxy_pass http://other; } } }\n"
        let text = Self.dump([("/etc/nginx/nginx.conf", main), (Self.upstream, "server 127.0.0.1:8081;\n")])
        let problem = try #require(NginxWiring.problem(dump: text, upstreamFile: Self.upstream))
        #expect(problem.contains("upstream app includes \(Self.upstream), but no `proxy_pass` sends traffic to it"), "\(problem)")
    }

    @Test func commentsAndQuotesDoNotConfuseTheParser() {
        let main = """
            events {}
            # upstream decoy { include /etc/nginx/upstreams/app.conf; }
            http {
                log_format main '$remote_addr { "quoted ; brace" }';
                upstream app { include "/etc/nginx/upstreams/app.conf"; }
                server { location / { proxy_pass http://app; } }
            }
            """
        let text = Self.dump([("/etc/nginx/nginx.conf", main), (Self.upstream, "server 127.0.0.1:8081;\n")])
        #expect(NginxWiring.problem(dump: text, upstreamFile: Self.upstream) == nil)
    }

    @Test func theDumpCommandComesFromTheValidateCommand() {
        #expect(ProxyWiringCheck.nginxDumpCommand(validate: ["nginx", "-c", "/x.conf", "-t", "-q"]) == ["nginx", "-c", "/x.conf", "-T"])
        #expect(ProxyWiringCheck.nginxDumpCommand(validate: ["/usr/local/bin/check-nginx"]) == nil)
        // Another program's -t is not nginx's: never rewritten.
        #expect(ProxyWiringCheck.nginxDumpCommand(validate: ["docker", "exec", "-t", "web", "nginx", "-t"]) == nil)
        #expect(ProxyWiringCheck.nginxDumpCommand(validate: ["sudo", "nginx", "-t", "-q"]) == nil)
        #expect(ProxyWiringCheck.nginxDumpCommand(validate: ["/usr/sbin/nginx", "-p", "/srv", "-t"]) == ["/usr/sbin/nginx", "-p", "/srv", "-T"])
    }

    @Test func anUpstreamChosenByAVariableCannotBeToldAndIsNotRefused() {
        let main = "events {}\nhttp { upstream app { include /etc/nginx/upstreams/app.conf; } server { set $b app; location / { proxy_pass http://$b; } } }\n"
        let text = Self.dump([("/etc/nginx/nginx.conf", main), (Self.upstream, "server 127.0.0.1:8081;\n")])
        guard case .undecidable = NginxWiring.verdict(dump: text, upstreamFile: Self.upstream) else {
            Issue.record("\(NginxWiring.verdict(dump: text, upstreamFile: Self.upstream))")
            return
        }
        #expect(NginxWiring.problem(dump: text, upstreamFile: Self.upstream) == nil)
    }

    @Test func anotherServerBesideTheIncludeIsNamedABackupIsFine() throws {
        func text(_ extra: String) -> String {
            let main = "events {}\nhttp { upstream App { include /etc/nginx/upstreams/app.conf; \(extra) } server { location / { proxy_pass http://app:80/x; } } }\n"
            return Self.dump([("/etc/nginx/nginx.conf", main), (Self.upstream, "server 127.0.0.1:8081;\n")])
        }
        let problem = try #require(NginxWiring.problem(dump: text("server 127.0.0.1:9000;"), upstreamFile: Self.upstream))
        #expect(problem.contains("also lists `server 127.0.0.1:9000`"), "\(problem)")
        #expect(NginxWiring.verdict(dump: text("server 127.0.0.1:9000 backup;"), upstreamFile: Self.upstream) == .wired(["app"]))
    }

    @Test func aStrayBraceOrAQuoteInsideAWordDoesNotEndTheParse() {
        let main = """
            events {}
            }
            http {
                add_header X-Note don't;
                upstream app { include /etc/nginx/upstreams/app.conf; }
                server { location / { proxy_pass http://app; } }
            }
            """
        let text = Self.dump([("/etc/nginx/nginx.conf", main), (Self.upstream, "server 127.0.0.1:8081;\n")])
        #expect(NginxWiring.verdict(dump: text, upstreamFile: Self.upstream) == .wired(["app"]))
    }

    @Test func caddyDialsAreFoundInNestedRoutesOfHTTPServers() {
        let adapted = #"""
            {"apps":{"http":{"servers":{"srv0":{"listen":[":80"],"routes":[{"handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:41234"}]}]}]}]}]}}}}}
            """#
        #expect(CaddyWiring.routes(adapted: Array(adapted.utf8), toPort: 41234))
        #expect(!CaddyWiring.routes(adapted: Array(adapted.utf8), toPort: 8081))
        #expect(CaddyWiring.reverseProxyDials(adapted: Array(#"{"apps":{}}"#.utf8)).isEmpty)
        let twoDials = #"{"apps":{"http":{"servers":{"s":{"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:41234"},{"dial":"127.0.0.1:8081"}]}]}]}}}}}"#
        #expect(CaddyWiring.otherDials(adapted: Array(twoDials.utf8), besidePort: 41234) == ["127.0.0.1:8081"])
        #expect(CaddyWiring.otherDials(adapted: Array(adapted.utf8), besidePort: 41234).isEmpty)
    }
}

/// `supervisord --check` and the daemon's start against the real nginx and Caddy.
@Suite(.timeLimit(.minutes(3)))
struct ProxyWiringCheckTests {
    /// The proxy's config, made to route elsewhere than the upstream file.
    static func unwire(_ kind: ProxyKindUnderTest, _ proxy: any ProxyUnderTest, port: Int) throws {
        switch proxy {
        case let nginx as NginxUnderTest:
            let conf = try String(contentsOfFile: nginx.conf, encoding: .utf8)
                .replacingOccurrences(of: "include \(nginx.upstreamFile);", with: "server 127.0.0.1:\(port);")
            try conf.write(toFile: nginx.conf, atomically: true, encoding: .utf8)
        case let caddy as CaddyUnderTest:
            let file = try String(contentsOfFile: caddy.caddyfile, encoding: .utf8)
                .replacingOccurrences(of: "import \(caddy.upstreamFile)", with: "to 127.0.0.1:\(port)")
            try file.write(toFile: caddy.caddyfile, atomically: true, encoding: .utf8)
        default:
            Issue.record("\(kind) has no upstream file")
        }
    }

    func config(_ directory: TemporaryDirectory, _ proxy: any ProxyUnderTest) -> String {
        directory.write(
            "c.toml",
            """
            name = "wiring"
            state_dir = "\(directory.file("state"))"
            [app]
            binary = "\(Binaries.demoApp)"
            ports = [\(FreePort.pick(2).map(String.init).joined(separator: ", "))]
            user = "nobody"
            [control]
            socket = "\(directory.file("c.sock"))"
            \(proxy.proxySection(fault: nil))
            """)
    }

    @Test(arguments: [ProxyKindUnderTest.nginx, .caddy])
    func aProxyConfigThatBypassesTheUpstreamFileIsRefusedByCheckAndAtStart(_ kind: ProxyKindUnderTest) throws {
        try #require(kind.isInstalled, "\(kind) is not installed: run scripts/test.sh, which installs it")
        let directory = TemporaryDirectory("wiring")
        let proxy = kind.make(initialUpstreamPort: 8081)
        let path = config(directory, proxy)

        let wired = try Command.run(Binaries.supervisord, ["--config", path, "--check"])
        #expect(wired.exitCode == 0, "\(wired.stderr)")
        #expect(wired.stdout.contains("proxy: \(kind.rawValue) sends traffic through"), "\(wired.stdout)")

        try Self.unwire(kind, proxy, port: 8081)
        let check = try Command.run(Binaries.supervisord, ["--config", path, "--check"])
        #expect(check.exitCode == 2, "\(check.stdout)")
        let expected = kind == .nginx ? "nginx does not load" : "does not route through"
        #expect(check.stderr.contains("proxy.config: ") && check.stderr.contains(expected), "\(check.stderr)")

        // The daemon refuses the same way, before it starts anything.
        let start = try Command.run(Binaries.supervisord, ["--config", path], timeout: 30)
        #expect(start.exitCode == 2, "\(start.stderr)")
        #expect(start.stderr.contains(expected) && start.stderr.contains("nothing was started"), "\(start.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("c.sock")))
        #expect(!isListening(port: 8081))
    }

    /// The proxy's own tool failing (a config it rejects, a name that does not
    /// resolve yet at boot) is said loudly but keeps nothing down: swaps check again.
    @Test func aCaddyfileThatDoesNotParseIsAWarning() throws {
        try #require(ProxyKindUnderTest.caddy.isInstalled, "caddy is not installed: run scripts/test.sh, which installs it")
        let directory = TemporaryDirectory("wiring")
        let proxy = CaddyUnderTest(initialUpstreamPort: 8081)
        let path = config(directory, proxy)
        try (String(contentsOfFile: proxy.caddyfile, encoding: .utf8) + "\nnot_a_directive {\n").write(toFile: proxy.caddyfile, atomically: true, encoding: .utf8)
        let check = try Command.run(Binaries.supervisord, ["--config", path, "--check"])
        #expect(check.exitCode == 0, "\(check.stderr)")
        #expect(check.stdout.contains("warning: caddy rejected \(proxy.caddyfile), so whether it routes through"), "\(check.stdout)")
    }
}

extension UnderLoad {
    /// Forced past the check (the config changed under a running daemon):
    /// the swap notices before or at the switch, and nothing fails.
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct ProxyUnwiredWhileRunningTests {
        @Test(arguments: [ProxyKindUnderTest.nginx, .caddy])
        func aSwapIntoAnUnwiredProxyFailsAndTheOldVersionServes(_ kind: ProxyKindUnderTest) throws {
            try #require(kind.isInstalled && LoadGenerator.isInstalled, "\(kind) and wrk: run scripts/test.sh")
            let stack = try ProxyStack(kind)
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let port = try #require(before["port"] as? Int)
            #expect(stack.serves("v1"))

            // The operator edits the proxy config to name the port by hand, and reloads it.
            try ProxyWiringCheckTests.unwire(kind, stack.proxy, port: port)
            try stack.proxy.reloadByHand()
            #expect(stack.serves("v1"))

            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (result, json) = try stack.swap(stack.version("v2"))
            let report = load.finish()
            let code = (json?["error"] as? [String: Any])?["code"] as? String
            #expect(result.exitCode == 1, "\(result.stderr)")
            #expect(code == (kind == .nginx ? "proxy_not_wired" : "proxy_not_confirmed"), "\(result.stdout)\n\(result.stderr)")
            #expect(result.stderr.contains("previous version is still serving"), "\(result.stderr)")
            // nginx is never reloaded; Caddy is, twice (the switch and its undo).
            report.expectNothingFailed("\(kind) swap into an unwired proxy", through: kind, caddyReloads: 2)
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(stack.daemon.status()?["pid"] as? Int == before["pid"] as? Int)
            stack.expectNothingStray()
        }
    }
}

extension UnderLoad {
    /// `[proxy] check_url`: a request through the proxy must reach the new
    /// instance (a connection on its port the switch opened), else the
    /// switch is undone.
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct RouteCheckTests {
        @Test(arguments: [ProxyKindUnderTest.nginx, .caddy])
        func aRequestThroughTheProxyConfirmsTheSwitch(_ kind: ProxyKindUnderTest) throws {
            try #require(kind.isInstalled && LoadGenerator.isInstalled, "\(kind) and wrk: run scripts/test.sh")
            let stack = try ProxyStack(kind, checkURL: { "http://127.0.0.1:\($0)/health" })
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (result, _) = try stack.swap(stack.version("v2"))
            load.finish().expectNothingFailed("\(kind) swap confirmed through check_url", through: kind, caddyReloads: 1)
            #expect(result.exitCode == 0, "\(result.stderr)")
            #expect(result.stderr.contains("confirmed end to end: GET http://127.0.0.1:\(stack.proxy.listenPort)/health answered HTTP 200, and the new instance"), "\(result.stderr)")
            #expect(stack.proxy.servedVersion() == "v2")
        }

        @Test(arguments: [ProxyKindUnderTest.nginx, .caddy])
        func aCheckURLThatDoesNotReachTheNewInstanceUndoesTheSwitch(_ kind: ProxyKindUnderTest) throws {
            try #require(kind.isInstalled, "\(kind): run scripts/test.sh")
            // Something else answers the check URL: a demo-app the proxy does not route to.
            let strayPort = FreePort.pick()[0]
            let scratch = TemporaryDirectory("stray")
            let stray = try TestProcess(Binaries.demoApp, ["--port", String(strayPort), "--version-tag", "stray"], stdout: scratch.file("out"))
            defer { stray.stop(SIGKILL, grace: 0) }
            #expect(eventually(timeout: 10) { isListening(port: strayPort) })
            let stack = try ProxyStack(kind, options: { $0.drainTimeout = "2s" }, checkURL: { _ in "http://127.0.0.1:\(strayPort)/health" })
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")

            // No load here: any request through the proxy that reaches the new
            // instance is evidence too (the positive test runs under wrk).
            let (result, json) = try stack.swap(stack.version("v2"))
            #expect(result.exitCode == 1, "\(result.stderr)")
            #expect((json?["error"] as? [String: Any])?["code"] as? String == "proxy_not_confirmed", "\(result.stdout)")
            #expect(result.stderr.contains("no connection reached the new instance's port"), "\(result.stderr)")
            #expect(result.stderr.contains("the proxy points at the old instance again"), "\(result.stderr)")
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(stack.daemon.status()?["pid"] as? Int == before["pid"] as? Int)
            stack.expectNothingStray()
        }
    }
}

extension ProxyUnderTest {
    /// The operator's own reload after editing the proxy's config.
    func reloadByHand() throws {
        let result: CommandResult
        switch self {
        case let nginx as NginxUnderTest:
            result = try Command.run(nginx.commandPrefix[0], Array(nginx.commandPrefix.dropFirst()) + ["-s", "reload"])
            usleep(500_000)  // nginx's new workers take over
        case let caddy as CaddyUnderTest:
            result = try Command.run("/usr/bin/caddy", ["reload", "--config", caddy.caddyfile, "--adapter", "caddyfile", "--address", "127.0.0.1:\(caddy.adminPort)"], environment: caddy.environment)
        default:
            return
        }
        #expect(result.exitCode == 0, "\(result.stderr)")
    }
}
