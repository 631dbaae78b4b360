#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// The man pages: silent under `man -l`, the sections operators look for,
/// every subcommand and option the parsers have, and supervisor.toml(5) as
/// generated from docs/configuration.md.
@Suite struct ManPageTests {
    static let pages = ["supervisord.1", "supervisorctl.1", "supervisor.toml.5", "supervisor-emergency-rollback.8"]

    static func page(_ name: String) throws -> String {
        try String(contentsOfFile: Repository.path("docs/man/\(name)"), encoding: .utf8)
    }

    @Test(arguments: pages)
    func manPrintsNoWarning(_ name: String) throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/man"), "man-db is not installed: run scripts/test.sh, which installs it")
        let environment = ProcessInfo.processInfo.environment.merging(["LC_ALL": "C.UTF-8", "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"]) { _, new in new }
        let result = try Command.run("/usr/bin/man", ["--warnings", "-l", Repository.path("docs/man/\(name)")], environment: environment)
        #expect(result.exitCode == 0)
        #expect(result.stderr.isEmpty, "\(name): \(result.stderr)")
        #expect(result.stdout.count > 1000, "\(name) rendered: \(result.stdout.prefix(200))")
    }

    @Test func theCommandPagesHaveTheSectionsOperatorsLookFor() throws {
        for name in ["supervisord.1", "supervisorctl.1"] {
            let text = try Self.page(name)
            for section in ["SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "FILES", "SIGNALS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"] {
                #expect(text.contains(".Sh \(section)\n"), "\(name) has no \(section) section")
            }
        }
        #expect(try Self.page("supervisor.toml.5").contains(".Sh FILES\n"))
        #expect(!FileManager.default.fileExists(atPath: Repository.path("docs/man/supervisord.help.1")), "supervisord has no help subcommand")
    }

    /// Every subcommand and long option of each binary's parser is in its page.
    @Test(arguments: ["supervisord", "supervisorctl"])
    func everyOptionOfTheParserIsInThePage(_ tool: String) throws {
        let binary = tool == "supervisord" ? Binaries.supervisord : Binaries.supervisorctl
        let dump = try Command.run(binary, ["--experimental-dump-help"])
        let root = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        let text = try Self.page("\(tool).1")
        var subcommands: [String] = [], options = Set<String>()
        func walk(_ command: [String: Any], top: Bool) {
            let name = command["commandName"] as? String ?? ""
            if !top && name != "help" { subcommands.append(name) }
            for argument in command["arguments"] as? [[String: Any]] ?? [] {
                for entry in argument["names"] as? [[String: Any]] ?? [] where entry["kind"] as? String == "long" {
                    options.insert(entry["name"] as? String ?? "")
                }
            }
            for child in command["subcommands"] as? [[String: Any]] ?? [] { walk(child, top: false) }
        }
        walk(try #require(root["command"] as? [String: Any]), top: true)
        #expect(tool == "supervisord" || subcommands.count == 6, "\(subcommands)")
        for subcommand in subcommands {
            #expect(text.contains(".Cm \(subcommand)"), "\(tool).1 does not describe the \(subcommand) command")
        }
        for option in options.sorted() {
            #expect(text.contains("Fl -\(option) ") || text.contains("Fl -\(option)\n"), "\(tool).1 does not describe --\(option)")
        }
    }

    /// supervisor.toml(5) is what scripts/generate-manual.sh makes of docs/configuration.md.
    @Test func theConfigPageIsGeneratedFromTheReference() throws {
        let committed = try Self.page("supervisor.toml.5")
        let date = try #require(committed.split(separator: "\n").first { $0.hasPrefix(".Dd ") }).dropFirst(4)
        let generated = try Command.run("/usr/bin/python3", [Repository.path("scripts/man/toml5.py"), Repository.path("docs/configuration.md"), String(date)])
        #expect(generated.exitCode == 0, "\(generated.stderr)")
        #expect(generated.stdout == committed, "docs/man/supervisor.toml.5 is out of date: run scripts/generate-manual.sh")
        #expect(committed.contains(".It Cm upstream_file") && committed.contains(".It Cm listen"))
    }
}
