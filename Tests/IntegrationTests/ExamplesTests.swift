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

    /// Every path the README's layout table names exists in the tree (paths
    /// in the first column; files and folders named in the second one that
    /// look like paths of the tree), and every source folder is named.
    @Test func readmeLayoutTableMatchesTheTree() throws {
        let readme = try String(contentsOfFile: Repository.path("README.md"), encoding: .utf8)
        let section = try #require(readme.components(separatedBy: "## Layout").last)
        let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `") }
        #expect(rows.count > 10)
        var named: [String] = []
        for row in rows {
            let first = row.split(separator: "|", omittingEmptySubsequences: true).first ?? ""
            let paths = first.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.map { $0.element.hasSuffix("/") ? String($0.element.dropLast()) : $0.element }
            for path in paths {
                // `Sources/SupervisorDaemon/Control/`, `Daemon/`: a short name sits beside the row's first path.
                let beside = (paths[0].components(separatedBy: "/").dropLast() + [path]).joined(separator: "/")
                let full = FileManager.default.fileExists(atPath: Repository.path(path)) ? path : beside
                named.append(full)
                #expect(FileManager.default.fileExists(atPath: Repository.path(full)), "README layout names \(path), which does not exist")
            }
        }
        let sources = try FileManager.default.contentsOfDirectory(atPath: Repository.path("Sources"))
        for target in sources {
            #expect(named.contains { $0 == "Sources/\(target)" || $0.hasPrefix("Sources/\(target)/") }, "README layout does not name Sources/\(target)")
        }
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
