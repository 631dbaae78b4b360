#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import SupervisorCore
import SystemBindings

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List past swaps and rollbacks.",
        discussion: """
            Examples:
              supervisorctl --name myapp history
              supervisorctl --name myapp history --json | jq '.[-1].phases_ms'
              supervisorctl --name myapp history --limit 5
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print the entries as a JSON array on stdout.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Show only the newest N entries.", valueName: "n"))
    var limit: Int?

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
    }

    func run() throws {
        do {
            let client = ControlClient(socketPath: try connection.socketPath())
            let response = try client.get("/history")
            guard response.status == 200 else { throw ControlClient.failure(from: response) }
            if json {
                guard let limit else {
                    print(response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines))
                    return
                }
                // The newest `limit` entries, each exactly as the daemon wrote it.
                guard let all = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [Any],
                    let data = try? JSONSerialization.data(withJSONObject: Array(all.suffix(limit)), options: [.sortedKeys, .withoutEscapingSlashes])
                else {
                    throw CLIFailure(exitCode: 1, code: .unexpectedAnswer, message: "supervisord answered something that is not a history: \(response.bodyText)")
                }
                print(String(decoding: data, as: UTF8.self))
                return
            }
            guard var entries = try? JSONDecoder().decode([HistoryEntry].self, from: Data(response.body)) else {
                throw CLIFailure(exitCode: 1, code: .unexpectedAnswer, message: "supervisord answered something that is not a history: \(response.bodyText)")
            }
            if let limit { entries = Array(entries.suffix(limit)) }
            if entries.isEmpty {
                print("no swaps or rollbacks yet")
                return
            }
            // The backup column only once a swap took one (`SUPERVISOR_BACKUP_DIR`).
            let backups = entries.contains { $0.backup != nil }
            var rows = [["when", "who", "action", "from", "to", "result", "ms"] + (backups ? ["backup"] : [])]
            for entry in entries {
                let who = entry.callerUID.map { uid in UserDatabase.userName(uid: uid) ?? "uid \(uid)" } ?? "-"
                let result = entry.result.rawValue + (entry.error.map { " (\($0.code))" } ?? "")
                let backup = entry.backup.map { "\($0.path) (\(ByteCount.human($0.sizeBytes)))" } ?? "-"
                rows.append([entry.time, who, entry.action.rawValue, short(entry.from), short(entry.to), result, String(entry.totalMS)] + (backups ? [backup] : []))
            }
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces))
            }
        } catch let failure as CLIFailure {
            if json { failure.printJSON() }
            FileHandle.standardError.write(Data("supervisorctl: \(UntrustedText.escapedLines(failure.message))\n".utf8))
            throw ExitCode(failure.exitCode)
        }
    }

    func short(_ identity: BinaryIdentity) -> String {
        let sha = identity.sha256.map { String($0.prefix(8)) } ?? "?"
        return identity.version.map { "\(UntrustedText.escaped($0)) (\(sha))" } ?? sha
    }
}
