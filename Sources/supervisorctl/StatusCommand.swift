#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import SupervisorCore

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running version, pid, port, restarts.",
        discussion: """
            Exit code 0 when the app serves (running, or a swap or rollback in
            progress while the old instance serves); 1 when it does not
            (starting, restarting after a crash, in backoff, stopped): the
            status is printed either way; 3 when supervisord is unreachable.

            Examples:
              supervisorctl --name myapp status
              supervisorctl --socket /run/supervisor/myapp.sock status --json | jq .pid
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print the status object as JSON on stdout.")
    var json = false

    func run() throws {
        do {
            let client = ControlClient(socketPath: try connection.socketPath())
            let response = try client.get("/status")
            guard response.status == 200 else { throw ControlClient.failure(from: response) }
            guard let report = try? JSONDecoder().decode(StatusReport.self, from: Data(response.body)) else {
                throw CLIFailure(exitCode: 1, code: .unexpectedAnswer, message: "supervisord answered something that is not a status: \(response.bodyText)")
            }
            if json {
                print(response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines))
            } else {
                print(StatusView.render(report))
            }
            // The daemon decides; one from before `serving` existed is judged by its phase.
            if !(report.serving ?? (report.phase == "running")) { throw ExitCode(1) }
        } catch let failure as CLIFailure {
            if json { failure.printJSON() }
            FileHandle.standardError.write(Data("supervisorctl: \(UntrustedText.escapedLines(failure.message))\n".utf8))
            throw ExitCode(failure.exitCode)
        }
    }
}

enum StatusView {
    static func render(_ report: StatusReport) -> String {
        var lines: [(String, String)] = []
        lines.append(("service", report.name))
        lines.append(("phase", report.phase))
        lines.append(("version", report.version.map(UntrustedText.escaped) ?? "-"))
        lines.append(("pid", report.pid.map(String.init) ?? "-"))
        lines.append(("port", report.port.map(String.init) ?? "-"))
        if let uptime = report.uptimeSeconds, report.pid != nil {
            lines.append(("uptime", formatUptime(uptime) + (report.startedAt.map { " (since \($0))" } ?? "")))
        }
        lines.append(("binary", report.binary))
        lines.append(("sha256", report.sha256 ?? "-"))
        if let problem = report.problem {
            lines.append(("problem", UntrustedText.escaped(problem)))
        }
        if let onDisk = report.binaryOnDiskSHA256 {
            lines.append(("on disk", "\(report.binary) is sha256 \(onDisk.prefix(12)), not what runs (\(report.sha256.map { "sha256 \($0.prefix(12))" } ?? "unknown")); `supervisorctl swap \(report.binary)` applies it"))
        }
        lines.append(("restarts", String(report.restarts) + (report.lastExit.map { " (last: \($0))" } ?? "")))
        if let last = report.lastSwap {
            let what = "\(last.action.rawValue) \(last.result.rawValue)" + (last.errorCode.map { " (\($0))" } ?? "")
            lines.append(("last swap", "\(what) to \(describe(last.to)) at \(last.time), \(last.totalMS) ms"))
        } else {
            lines.append(("last swap", "none yet"))
        }
        lines.append(("previous", report.backup.map { "\(describe($0)) (\(report.binary).bak; supervisorctl rollback)" } ?? "none (no \(report.binary).bak)"))
        if let emergency = report.emergencyRollback {
            lines.append(("emergency", "rollback \(emergency.id): \(emergency.state.rawValue)" + (emergency.message.map { ": \($0)" } ?? "")))
        }
        lines.append(("proxy", report.proxy))
        lines.append(("supervisor", "pid \(report.supervisorPID)" + (report.supervisorVersion.map { ", supervisord \(UntrustedText.escaped($0))" } ?? "")))
        let width = lines.map(\.0.count).max() ?? 0
        return lines.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }

    static func describe(_ identity: BinaryIdentity) -> String {
        let sha = identity.sha256.map { "sha256 \($0.prefix(12))" } ?? "unknown"
        return identity.version.map { "\(UntrustedText.escaped($0)) (\(sha))" } ?? sha
    }

    static func formatUptime(_ seconds: Double) -> String {
        let total = Int(seconds)
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m \(total % 60)s" }
        if total < 86_400 { return "\(total / 3600)h \(total % 3600 / 60)m" }
        return "\(total / 86_400)d \(total % 86_400 / 3600)h"
    }
}
