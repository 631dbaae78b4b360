import Foundation
import SupervisorCore
import Testing

/// The error codes scripts match on are the ones the docs list: every code
/// the daemon can answer has a row in operations.md's troubleshooting table,
/// and every code the docs cite exists.
@Suite struct ErrorCodeDocsTests {
    static func backticked(_ text: Substring) -> [String] {
        text.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
    }

    @Test func everyCodeHasATroubleshootingRowAndEveryRowIsACode() throws {
        let operations = try String(contentsOfFile: Repository.path("docs/operations.md"), encoding: .utf8)
        let section = try #require(operations.components(separatedBy: "## Troubleshooting by error code").last?.components(separatedBy: "\n## ").first)
        let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `") }
        let documented = Set(rows.flatMap { row in Self.backticked(row.split(separator: "|").first ?? "") })
        let codes = Set(SupervisorError.Code.all.map(\.rawValue))
        #expect(codes.subtracting(documented).isEmpty, "codes without a row: \(codes.subtracting(documented).sorted())")
        #expect(documented.subtracting(codes).isEmpty, "rows for codes that do not exist: \(documented.subtracting(codes).sorted())")
    }

    @Test func theCodesFleetMdCitesExist() throws {
        let fleet = try String(contentsOfFile: Repository.path("docs/fleet.md"), encoding: .utf8).replacingOccurrences(of: "\n", with: " ")
        let start = try #require(fleet.range(of: "A refusal's `error.code` ("))
        let end = try #require(fleet.range(of: ")", range: start.upperBound..<fleet.endIndex))
        let cited = Self.backticked(fleet[start.upperBound..<end.lowerBound]).filter { $0 != "…" && !$0.contains("/") }
        #expect(!cited.isEmpty)
        let codes = Set(SupervisorError.Code.all.map(\.rawValue))
        for code in cited {
            #expect(codes.contains(code), "docs/fleet.md cites \(code), which is not an error code")
        }
    }

    @Test func versionFileMatchesTheBinaries() throws {
        let file = try String(contentsOfFile: Repository.path("VERSION"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(file == SupervisorVersion.current)
        for binary in [Binaries.supervisord, Binaries.supervisorctl] {
            let result = try Command.run(binary, ["--version"])
            #expect(result.exitCode == 0 && result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == file, "\(binary): \(result.stdout) \(result.stderr)")
        }
    }
}
