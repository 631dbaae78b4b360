#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// The README's sample outputs come from the real binaries: the same
/// commands run here against a real Caddy, and every sample line has the
/// shape of a line they print (paths, numbers, hashes, quoted names and
/// times masked; column padding ignored).
@Suite(.timeLimit(.minutes(3)))
struct ReadmeSampleTests {
    /// A line with what changes from run to run masked.
    static func shape(_ line: String) -> String {
        var text = line
        for (pattern, replacement) in [
            (#"\d{4}-\d\d-\d\dT[0-9:.]+Z"#, "T"),
            // The service's name (the README's is myapp).
            (#"supervisor@[\w.-]+"#, "supervisor@S"),
            (#""[^"]*""#, "Q"),
            (#"(?<![\w.])/[^\s,;)]*"#, "P"),
            // Hashes, wherever they are (one of only digits included).
            (#"sha256(\s+)[0-9a-f]{8,}\b"#, "sha256$1H"),
            (#"\([0-9a-f]{8}\)"#, "(H)"),
            (#"\b(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"#, "H"),
            (#"\d+"#, "N"),
            (#"\s+"#, " "),
        ] {
            text = text.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression)
        }
        // How many idle keep-alive connections the drain saw depends on traffic.
        if text.hasPrefix(" drain ") { return " drain …" }
        return text.trimmingCharacters(in: .whitespaces)
    }

    /// The lines the README shows after `$ <command>` (up to the next prompt or the block's end).
    static func sample(after command: String) throws -> [String] {
        let readme = try String(contentsOfFile: Repository.path("README.md"), encoding: .utf8)
        let blocks = readme.components(separatedBy: "```console\n").dropFirst().map { $0.components(separatedBy: "\n```").first ?? "" }
        for block in blocks {
            let lines = block.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let start = lines.firstIndex(where: { $0.hasPrefix("$ ") && $0.contains(command) }) else { continue }
            return Array(lines[(start + 1)...].prefix { !$0.hasPrefix("$ ") }).filter { !$0.isEmpty && $0 != "…" }
        }
        Issue.record("README.md has no console sample of `\(command)`")
        return []
    }

    /// Every sample line has the shape of a real line, and every real line
    /// (but warnings) is shown.
    static func expectSameShape(_ command: String, sample: [String], real: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let shown = sample.map(shape), printed = real.filter { !$0.hasPrefix("warning:") }.map(shape)
        #expect(!shown.isEmpty, "no sample for \(command)", sourceLocation: sourceLocation)
        for (line, masked) in zip(sample, shown) where !printed.contains(masked) {
            Issue.record("README's `\(command)` shows a line the binaries do not print: \(line)\nreal output:\n\(real.joined(separator: "\n"))", sourceLocation: sourceLocation)
        }
        for (line, masked) in zip(real, real.map(shape)) where !line.hasPrefix("warning:") && !shown.contains(masked) {
            Issue.record("README's `\(command)` does not show this line of the real output: \(line)", sourceLocation: sourceLocation)
        }
    }

    static func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    @Test func theReadmesSamplesHaveTheShapeOfTheRealOutput() throws {
        try #require(ProxyKindUnderTest.caddy.isInstalled, "caddy is not installed: run scripts/test.sh, which installs it")
        let stack = try ProxyStack(.caddy)
        #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")

        let check = try Command.run(Binaries.supervisord, ["--config", stack.daemon.configPath, "--check"])
        Self.expectSameShape("--check", sample: try Self.sample(after: "myapp.toml --check"), real: Self.lines(check.stdout))

        // status: the same fields in the same order.
        let status = try stack.daemon.ctl(["status"])
        let fields = { (lines: [String]) in lines.map { String($0.prefix { $0 != " " }) } }
        #expect(fields(try Self.sample(after: "status")) == fields(Self.lines(status.stdout)), "\(status.stdout)")

        let swap = try stack.daemon.ctl(["swap", stack.version("v2")])
        #expect(swap.exitCode == 0, "\(swap.stderr)")
        Self.expectSameShape("swap", sample: try Self.sample(after: "swap /tmp/myapp-v2"), real: Self.lines(swap.stderr))

        #expect(try stack.daemon.ctl(["rollback"]).exitCode == 0)
        let history = try stack.daemon.ctl(["history"])
        Self.expectSameShape("history", sample: try Self.sample(after: "history"), real: Self.lines(history.stdout))

        let failed = try stack.daemon.ctl(["swap", stack.version("broken", flags: ["--crash-at-start"])])
        let failure = Self.lines(failed.stderr).drop { !$0.hasPrefix("failed:") }
        #expect(!failure.isEmpty, "\(failed.stderr)")
        Self.expectSameShape("a failed swap", sample: try Self.sample(after: "swap /tmp/broken"), real: Array(failure))
    }

    @Test func theBrokenConfigSampleIsWhatCheckSays() throws {
        let directory = TemporaryDirectory("readme")
        let app = directory.write("app", "#!/bin/sh\n", mode: 0o755)
        let broken = directory.write(
            "broken.toml",
            """
            name = "myapp"
            [app]
            binary = "\(app)"
            ports = [8081, 8081]
            [health]
            intervall = "1s"
            [proxy]
            kind = "apache"
            """)
        // As the README runs it: from the file's directory, by a relative name.
        let check = try Command.run("/bin/sh", ["-c", "cd \"$1\" && exec \"$2\" --config broken.toml --check", "sh", directory.path, Binaries.supervisord])
        #expect(broken.hasSuffix("/broken.toml"))
        #expect(check.exitCode == 2)
        Self.expectSameShape("broken.toml --check", sample: try Self.sample(after: "broken.toml --check"), real: Self.lines(check.stderr))
    }
}
