import Foundation
import SupervisorCore
import SupervisorShared
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

/// Every error code's messages, read where they are written (each
/// `SwapError(.code, "…")`, `ControlError(.code, "…")` and
/// `CLIFailure(…, code: .code, message: "…")` in Sources, and every hint
/// the CLI prints after a failure): each code has at least one, and no
/// message has a placeholder an operator would have to fill in, or the
/// words of a library instead of ours. Interpolated values are left out
/// (a `strerror` reads well); the literal words are checked.
@Suite struct ErrorMessageWordingTests {
    struct Message { let file: String; let code: String; let text: String }

    static let sources: [(path: String, text: String)] = {
        let root = Repository.path("Sources")
        let files = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        return files.sorted().compactMap { file in
            (try? String(contentsOfFile: root + "/" + file, encoding: .utf8)).map { ("Sources/" + file, $0) }
        }
    }()

    /// `proxyNotWired` → `proxy_not_wired`.
    static func snakeCase(_ name: String) -> String {
        name.reduce(into: "") { result, character in
            if character.isUppercase { result += "_" + character.lowercased() } else { result.append(character) }
        }
    }

    /// A string literal with its interpolations taken out.
    static func literalWords(_ literal: String) -> String {
        var result = "", depth = 0
        var characters = literal[...]
        while let character = characters.popFirst() {
            if depth == 0, character == "\\", characters.first == "(" {
                characters.removeFirst()
                depth = 1
                continue
            }
            if depth > 0 {
                if character == "(" { depth += 1 } else if character == ")" { depth -= 1 }
                if depth == 0 { result += "…" }
                continue
            }
            result.append(character)
        }
        return result
    }

    static let messages: [Message] = {
        let pattern = #"(?:SwapError|ControlError|CLIFailure)\(\s*(?:exitCode: *\d+, *code: *)?\.(\w+),\s*(?:message: *)?"((?:[^"\\]|\\.)*)""#
        let regex = try! NSRegularExpression(pattern: pattern)
        return sources.flatMap { source in
            let range = NSRange(source.text.startIndex..., in: source.text)
            return regex.matches(in: source.text, range: range).map { match in
                let code = String(source.text[Range(match.range(at: 1), in: source.text)!])
                let text = String(source.text[Range(match.range(at: 2), in: source.text)!])
                return Message(file: source.path, code: snakeCase(code), text: literalWords(text))
            }
        }
    }()

    /// The hints `supervisorctl` prints after "Next:".
    static let hints: [String] = {
        guard let swap = sources.first(where: { $0.path.hasSuffix("supervisorctl/SwapCommand.swift") })?.text,
            let start = swap.range(of: "static func hint(for code")
        else { return [] }
        let body = swap[start.upperBound...].components(separatedBy: "\n    }\n").first ?? ""
        return body.components(separatedBy: "return \"").dropFirst().map { literalWords(String($0.prefix { $0 != "\n" })) }
    }()

    static let forbidden = [
        "NAME", "FILE", "{port}", "{binary}", "{name}", "{config}", "libcurl", "CURLE", "curl_", "Optional(", "NIO", "(null)",
        "Error Domain", "TODO", "FIXME", "XXX", "errno", "Swift.", "fatal error",
    ]

    @Test func everyCodeHasAMessageWrittenSomewhere() {
        let written = Set(Self.messages.map(\.code))
        #expect(Self.messages.count > 60, "the scan finds the messages: \(Self.messages.count)")
        for code in SupervisorError.Code.all.map(\.rawValue) {
            #expect(written.contains(code), "no message is written for \(code)")
        }
    }

    @Test func noMessageHasAPlaceholderOrALibrarysWords() {
        for message in Self.messages {
            for word in Self.forbidden {
                #expect(!message.text.contains(word), "\(message.file): \(message.code): \"\(message.text)\" has \"\(word)\"")
            }
            #expect(!message.text.isEmpty && !message.text.hasPrefix(" "), "\(message.file): \(message.code)")
            // One mention of the phase: the CLI adds none of its own to a daemon's message.
            #expect(message.text.components(separatedBy: "phase").count <= 2, "\(message.file): \(message.code): \"\(message.text)\"")
        }
    }

    @Test func noHintHasAPlaceholder() {
        #expect(Self.hints.count >= 10, "the scan finds the hints: \(Self.hints)")
        for hint in Self.hints {
            for word in Self.forbidden {
                #expect(!hint.contains(word), "hint \"\(hint)\" has \"\(word)\"")
            }
        }
    }
}
