import Foundation
import SupervisorCore
import SupervisorDaemon
import SupervisorShared
import Testing

/// The shipped examples stay valid as the config rules change.
@Suite struct ExamplesTests {
    @Test func exampleConfigIsValid() throws {
        let config = try ConfigLoader.parse(path: Repository.path("examples/myapp.toml"), environment: [:]).get()
        #expect(config.name == "myapp")
        #expect(config.proxy.kind == .caddy)
        #expect(config.app.ports == [8081, 8082])
        #expect(config.control.group == "deploy")
    }

    @Test func readmeConfigIsValid() throws {
        let readme = try String(contentsOfFile: Repository.path("README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "```toml\n"))
        let end = try #require(readme.range(of: "```", range: start.upperBound..<readme.endIndex))
        let scratch = TemporaryDirectory()
        let path = scratch.write("readme.toml", String(readme[start.upperBound..<end.lowerBound]))
        _ = try ConfigLoader.parse(path: path, environment: [:]).get()
    }

    /// Caddy itself accepts Caddyfile.example (both sites: the upstream file
    /// supervisord owns, and the fixed upstream of socket-handoff mode).
    @Test func caddyfileExampleAdapts() throws {
        let caddy = "/usr/bin/caddy"
        try #require(FileManager.default.isExecutableFile(atPath: caddy), "caddy: run scripts/test.sh")
        let scratch = TemporaryDirectory()
        let upstream = scratch.write("upstreams/myapp", "to 127.0.0.1:8081\n")
        let text = try String(contentsOfFile: Repository.path("Caddyfile.example"), encoding: .utf8)
            .replacingOccurrences(of: "/etc/caddy/upstreams/myapp", with: upstream)
        let file = scratch.write("Caddyfile", text)
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = scratch.path
        let result = try Command.run(caddy, ["adapt", "--config", file, "--adapter", "caddyfile"], environment: environment)
        #expect(result.exitCode == 0, "\(result.stderr)")
        #expect(result.stdout.contains("127.0.0.1:8081") && result.stdout.contains("127.0.0.1:8080"), "\(result.stdout)")
    }
}
