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
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print the entries as a JSON array on stdout.")
    var json = false

    func run() throws {
        do {
            let client = ControlClient(socketPath: try connection.socketPath())
            let response = try client.get("/history")
            guard response.status == 200 else { throw ControlClient.failure(from: response) }
            if json {
                print(response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines))
                return
            }
            guard let entries = try? JSONDecoder().decode([HistoryEntry].self, from: Data(response.body)) else {
                throw CLIFailure(exitCode: 1, message: "supervisord answered something that is not a history: \(response.bodyText)")
            }
            if entries.isEmpty {
                print("no swaps or rollbacks yet")
                return
            }
            var rows = [["when", "who", "action", "from", "to", "result", "ms"]]
            for entry in entries {
                let who = entry.callerUID.map { uid in UserDatabase.userName(uid: uid) ?? "uid \(uid)" } ?? "-"
                let result = entry.result.rawValue + (entry.error.map { " (\($0.code))" } ?? "")
                rows.append([entry.time, who, entry.action.rawValue, short(entry.from), short(entry.to), result, String(entry.totalMS)])
            }
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
            }
        } catch let failure as CLIFailure {
            FileHandle.standardError.write(Data("supervisorctl: \(failure.message)\n".utf8))
            throw ExitCode(failure.exitCode)
        }
    }

    func short(_ identity: BinaryIdentity) -> String {
        let sha = identity.sha256.map { String($0.prefix(8)) } ?? "?"
        return identity.version.map { "\(UntrustedText.escaped($0)) (\(sha))" } ?? sha
    }
}
