import Foundation
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ConfigCheckTests {
    @Test func brokenConfigListsEveryProblemAndExits2WithoutASocket() throws {
        let directory = TemporaryDirectory()
        let socket = directory.file("control.sock")
        let config = directory.write(
            "broken.toml",
            """
            name = "broken"
            [app]
            binary = "relative/path"
            ports = [8081, 8081]
            stop_timeout = "soon"
            [health]
            healthy_after = 0
            intervall = "1s"
            [proxy]
            kind = "apache"
            [control]
            socket = "\(socket)"
            """)
        for arguments in [["--config", config, "--check"], ["--config", config]] {
            let result = try Command.run(Binaries.supervisord, arguments)
            #expect(result.exitCode == 2, "\(arguments): \(result.stderr)")
            for expected in [
                "app.binary: must be an absolute path",
                "app.ports: the two ports must differ",
                "app.stop_timeout: \"soon\" is not a duration",
                "health.healthy_after: must be between 1 and 1000",
                "health.intervall: unknown key; did you mean \"interval\"?",
                "proxy.kind: must be one of",
            ] {
                #expect(result.stderr.contains(expected), "missing \"\(expected)\" in:\n\(result.stderr)")
            }
            #expect(result.stderr.contains("6 problems"))
            #expect(!FileManager.default.fileExists(atPath: socket))
        }
    }

    @Test func invalidTOMLSaysWhere() throws {
        let directory = TemporaryDirectory()
        let config = directory.write("bad.toml", "name = \"x\"\n[app\nbinary = 3\n")
        let result = try Command.run(Binaries.supervisord, ["--config", config, "--check"])
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("is not valid TOML (line 2"), "\(result.stderr)")
    }

    @Test func missingFileAndMissingBinaryAreConfigErrors() throws {
        let directory = TemporaryDirectory()
        let none = try Command.run(Binaries.supervisord, ["--config", directory.file("absent.toml"), "--check"])
        #expect(none.exitCode == 2)
        #expect(none.stderr.contains("cannot read"))

        let notExecutable = directory.write("app", "#!/bin/sh\n", mode: 0o644)
        let config = directory.write(
            "c.toml",
            """
            name = "x"
            [app]
            binary = "\(notExecutable)"
            ports = [8081, 8082]
            [control]
            socket = "\(directory.file("c.sock"))"
            group = "no-such-group-here"
            """)
        let result = try Command.run(Binaries.supervisord, ["--config", config, "--check"])
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("app.binary: \(notExecutable) is not executable"), "\(result.stderr)")
        #expect(result.stderr.contains("control.group: no group named \"no-such-group-here\""))
    }

    @Test func validConfigChecksClean() throws {
        let daemon = DaemonUnderTest()
        let result = try Command.run(Binaries.supervisord, ["--config", daemon.configPath, "--check"])
        #expect(result.exitCode == 0, "\(result.stderr)")
        #expect(result.stdout.contains("ok"))
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }

    @Test func usersGroupsAndTheSocketDirectoryAreChecked() throws {
        let directory = TemporaryDirectory()
        let app = directory.write("app", "#!/bin/sh\n", mode: 0o755)
        func check(app extra: String, socket: String) throws -> CommandResult {
            try Self.check(in: directory, binary: app, app: extra, socket: socket)
        }
        let asRoot = try check(app: "", socket: directory.file("c.sock"))
        #expect(asRoot.exitCode == 0, "\(asRoot.stderr)")
        #expect(asRoot.stdout.contains("warning: app.user: not set"), "\(asRoot.stdout)")

        let unknown = try check(app: "user = \"no-such-user-here\"", socket: directory.file("c.sock"))
        #expect(unknown.exitCode == 2)
        #expect(unknown.stderr.contains("app.user: no user \"no-such-user-here\""), "\(unknown.stderr)")
        let badGroup = try check(app: "user = \"nobody\"\ngroup = \"no-such-group-here\"", socket: directory.file("c.sock"))
        #expect(badGroup.exitCode == 2)
        #expect(badGroup.stderr.contains("app.group: no group \"no-such-group-here\""), "\(badGroup.stderr)")

        let fine = try check(app: "user = \"nobody\"", socket: directory.file("c.sock"))
        #expect(fine.exitCode == 0, "\(fine.stderr)")
        #expect(!fine.stdout.contains("warning: app."), "\(fine.stdout)")

        // A socket directory others can write: refused by --check and at start.
        let open = directory.file("open")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        chmod(open, 0o777)
        let unsafe = try check(app: "user = \"nobody\"", socket: open + "/c.sock")
        #expect(unsafe.exitCode == 2)
        #expect(unsafe.stderr.contains("control.socket:") && unsafe.stderr.contains("writable by others"), "\(unsafe.stderr)")
        let started = try Command.run(Binaries.supervisord, ["--config", directory.file("c.toml")], timeout: 20)
        #expect(started.exitCode == 2, "\(started.stderr)")
        #expect(started.stderr.contains("writable by others"), "\(started.stderr)")
        #expect(!FileManager.default.fileExists(atPath: open + "/c.sock"))

        // The binary's directory writable by others is a warning.
        let shared = directory.file("shared")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false)
        chmod(shared, 0o777)
        _ = directory.write("shared/app", "#!/bin/sh\n", mode: 0o755)
        let config = directory.write(
            "d.toml",
            """
            name = "x"
            [app]
            binary = "\(shared)/app"
            ports = [8081, 8082]
            user = "nobody"
            [control]
            socket = "\(directory.file("d.sock"))"
            """)
        let warned = try Command.run(Binaries.supervisord, ["--config", config, "--check"])
        #expect(warned.exitCode == 0)
        #expect(warned.stdout.contains("warning: app.binary: \(shared) is writable by others"), "\(warned.stdout)")
    }

    @Test func proxyPathsMustExistAndAProxylessPortSwapIsAWarning() throws {
        let directory = TemporaryDirectory()
        let app = directory.write("app", "#!/bin/sh\n", mode: 0o755)
        let caddyfile = directory.write("Caddyfile", ":80 {\n\treverse_proxy {\n\t\timport \(directory.file("upstream"))\n\t}\n}\n")
        func check(_ proxy: String) throws -> CommandResult {
            try Self.check(in: directory, binary: app, app: "user = \"nobody\"\n\(proxy)", socket: directory.file("c.sock"))
        }
        let typo = try check("[proxy]\nkind = \"caddy\"\nconfig = \"\(directory.file("Cadyfile"))\"\nupstream_file = \"\(directory.file("upstream"))\"")
        #expect(typo.exitCode == 2)
        #expect(typo.stderr.contains("proxy.config: \(directory.file("Cadyfile")): No such file or directory"), "\(typo.stderr)")

        let missingDirectory = try check("[proxy]\nkind = \"caddy\"\nconfig = \"\(caddyfile)\"\nupstream_file = \"\(directory.file("upstreams/app"))\"")
        #expect(missingDirectory.exitCode == 2)
        #expect(missingDirectory.stderr.contains("proxy.upstream_file: the directory \(directory.file("upstreams")) does not exist"), "\(missingDirectory.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("upstreams")), "--check created the directory")

        let fine = try check("[proxy]\nkind = \"caddy\"\nconfig = \"\(caddyfile)\"\nupstream_file = \"\(directory.file("upstream"))\"")
        #expect(fine.exitCode == 0, "\(fine.stderr)")
        #expect(!fine.stdout.contains("warning"), "\(fine.stdout)")

        let proxyless = try check("")
        #expect(proxyless.exitCode == 0)
        #expect(proxyless.stdout.contains("warning: proxy.kind: \"none\" without [app] listen"), "\(proxyless.stdout)")
    }

    /// `supervisord --check` on a small config: `app` lines (and any tables
    /// after them) under [app], then the control socket.
    /// `strategy = "stop-start"`: Caddy must hold requests long enough (warned), nginx cannot (refused), a warm hold has nothing to keep.
    @Test func stopStartSaysWhatHoldsTheRequests() throws {
        let directory = TemporaryDirectory()
        let app = directory.write("app", "#!/bin/sh\n", mode: 0o755)
        let upstream = directory.write("upstream", "to 127.0.0.1:8081\n")
        func check(_ tail: String, caddy retries: String) throws -> CommandResult {
            let caddyfile = directory.write("Caddyfile", ":80 {\n\treverse_proxy {\n\t\timport \(upstream)\n\(retries)\t}\n}\n")
            return try Self.check(
                in: directory, binary: app,
                app: "user = \"nobody\"\nstrategy = \"stop-start\"\n[health]\nstart_timeout = \"20s\"\n\(tail)\n[proxy]\nkind = \"caddy\"\nconfig = \"\(caddyfile)\"\nupstream_file = \"\(upstream)\"",
                socket: directory.file("c.sock"))
        }
        let none = try check("", caddy: "")
        #expect(none.exitCode == 0, "\(none.stderr)")
        #expect(none.stdout.contains("warning: proxy.config: no lb_try_duration in"), "\(none.stdout)")
        #expect(none.stdout.contains("add `lb_try_duration 20s`"), "\(none.stdout)")
        let short = try check("", caddy: "\t\tlb_try_duration 5s\n")
        #expect(short.stdout.contains("warning: proxy.config: lb_try_duration 5s is shorter than [health] start_timeout (20s)"), "\(short.stdout)")
        let enough = try check("watch = \"30s\"", caddy: "\t\tlb_try_duration 30s\n\t\tlb_try_interval 50ms\n")
        #expect(enough.exitCode == 0, "\(enough.stderr)")
        #expect(!enough.stdout.contains("lb_try_duration"), "\(enough.stdout)")
        #expect(enough.stdout.contains("warning: health.watch: has no effect with app.strategy = \"stop-start\""), "\(enough.stdout)")

        let nginx = try Self.check(
            in: directory, binary: app,
            app: "user = \"nobody\"\nstrategy = \"stop-start\"\n[proxy]\nkind = \"nginx\"\nupstream_file = \"\(upstream)\"", socket: directory.file("c.sock"))
        #expect(nginx.exitCode == 2)
        #expect(nginx.stderr.contains("app.strategy: \"stop-start\" cannot run behind proxy.kind = \"nginx\""), "\(nginx.stderr)")
    }

    static func check(in directory: TemporaryDirectory, binary: String, app: String, socket: String) throws -> CommandResult {
        let config = directory.write(
            "c.toml",
            """
            name = "x"
            [app]
            binary = "\(binary)"
            ports = [8081, 8082]
            \(app)
            [control]
            socket = "\(socket)"
            """)
        return try Command.run(Binaries.supervisord, ["--config", config, "--check"])
    }
}
