import Foundation
import SupervisorCore
import SupervisorDaemon
import Testing

/// The shipped examples stay valid as the config rules change.
@Suite struct ExamplesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test func exampleConfigIsValid() throws {
        let config = try ConfigLoader.parse(path: Self.root + "/examples/myapp.toml", environment: [:]).get()
        #expect(config.name == "myapp")
        #expect(config.proxy.kind == .caddy)
        #expect(config.app.ports == [8081, 8082])
        #expect(config.control.group == "deploy")
    }

    @Test func readmeConfigIsValid() throws {
        let readme = try String(contentsOfFile: Self.root + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: "```toml\n"))
        let end = try #require(readme.range(of: "```", range: start.upperBound..<readme.endIndex))
        let scratch = TemporaryDirectory()
        let path = scratch.write("readme.toml", String(readme[start.upperBound..<end.lowerBound]))
        _ = try ConfigLoader.parse(path: path, environment: [:]).get()
    }
}
