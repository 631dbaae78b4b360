#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import SupervisorCore
import SystemBindings

struct ReleasesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "releases",
        abstract: "List the releases kept for `rollback --to`, newest first.",
        discussion: """
            The daemon keeps the last [app] keep_releases binaries that served
            (under its state directory, by sha256), each with its version, the
            schema its health answer named ([health] schema_field), when it began
            to serve, who swapped it in, and the backup taken by the swap that
            replaced it (SUPERVISOR_BACKUP_DIR). The one serving and the one in
            <binary>.bak are never pruned.

            Examples:
              supervisorctl --name myapp releases
              supervisorctl --name myapp releases --json | jq '.releases[0].release.backup'
              supervisorctl --name myapp rollback --to v1.4.2
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print the releases as one JSON object on stdout.")
    var json = false

    func run() throws {
        do {
            let client = ControlClient(socketPath: try connection.socketPath())
            let response = try client.get("/releases")
            guard response.status == 200 else { throw ControlClient.failure(from: response) }
            guard let report = try? JSONDecoder().decode(ReleasesReport.self, from: Data(response.body)) else {
                throw CLIFailure(exitCode: 1, code: .unexpectedAnswer, message: "supervisord answered something that is not a list of releases: \(response.bodyText)")
            }
            if json {
                print(response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines))
                return
            }
            if report.releases.isEmpty {
                print("no releases kept yet (each swap that commits records one; keep_releases = \(report.keep))")
                return
            }
            var rows = [["", "version", "sha256", "schema", "served since", "by", "backup"]]
            for entry in report.releases {
                let release = entry.release
                let mark = entry.serving ? "serving" : entry.backupFile ? ".bak" : ""
                let who = release.callerUID.map { uid in UserDatabase.userName(uid: uid) ?? "uid \(uid)" } ?? "-"
                let backup = release.backup.map { "\($0.path) (\(ByteCount.human($0.sizeBytes)))" } ?? "-"
                rows.append([
                    mark, release.version.map { UntrustedText.escaped($0) } ?? "?", String(release.sha256.prefix(12)),
                    release.schema.map { UntrustedText.escaped($0) } ?? "-", release.servedAt, who, backup,
                ])
            }
            let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
            }
            print("keep_releases = \(report.keep); roll back to one with `supervisorctl rollback --to VERSION|SHA256-PREFIX`")
        } catch let failure as CLIFailure {
            if json { failure.printJSON() }
            FileHandle.standardError.write(Data("supervisorctl: \(UntrustedText.escapedLines(failure.message))\n".utf8))
            throw ExitCode(failure.exitCode)
        }
    }
}
