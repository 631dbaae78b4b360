#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import SupervisorCore
import SupervisorShared

/// `rollback --emergency`: prints each step as it happens, then waits for
/// the started daemon to confirm the restored binary serves.
enum EmergencyRollbackPrinter {
    static func execute(configPath: String) async throws {
        let config: SupervisorConfig
        switch ConfigLoader.parse(path: configPath, environment: ProcessInfo.processInfo.environment) {
        case .success(let parsed): config = parsed
        case .failure(let problems):
            SwapStreamPrinter.stderr("supervisorctl: \(configPath) has problems:\n" + problems.problems.map { "  \($0)" }.joined(separator: "\n"))
            throw ExitCode(2)
        }
        SwapStreamPrinter.stderr("emergency rollback of \(config.name) (\(configPath)), without the daemon")
        let record: EmergencyRollbackRecord
        do {
            record = try await EmergencyRollback(config: config).run(callerUID: getuid()) { line in
                SwapStreamPrinter.stderr("  \(line)")
            }
        } catch {
            SwapStreamPrinter.stderr("failed: \(error.message) [\(error.code)]")
            // Past the exchange, "the previous version still serves" no longer holds: exit 5.
            throw ExitCode(error.code == .emergencyIncomplete ? 5 : 1)
        }
        switch await confirm(record, config: config) {
        case .success(let message):
            SwapStreamPrinter.stderr("  \(message)")
            SwapStreamPrinter.stderr("ok: rolled back; the restored binary serves")
        case .failure(let failure):
            SwapStreamPrinter.stderr("failed: \(failure.message) [\(failure.code)]")
            SwapStreamPrinter.stderr("The binaries are exchanged (\(config.app.binary) is the restored one); what serves is in the line above.")
            throw ExitCode(5)
        }
    }

    /// Asks the started daemon (over its control socket) until it says the
    /// emergency rollback is done and the restored binary serves, or failed,
    /// or the wait (the daemon's own start, one health gate, drain and stop,
    /// with room to spare) runs out.
    static func confirm(_ record: EmergencyRollbackRecord, config: SupervisorConfig) async -> Result<String, CLIFailure> {
        let limit = config.health.startTimeout * 2 + config.drain.timeout + config.app.stopTimeout + .seconds(30)
        let deadline = ContinuousClock.now + limit
        let client = ControlClient(socketPath: config.control.socket, timeout: .seconds(5))
        let restored = record.toSHA256.map { String($0.prefix(12)) } ?? "?"
        SwapStreamPrinter.stderr("  waiting for supervisord to confirm that the restored binary (sha256 \(restored)) serves (at most \(limit.humanReadable))")
        var lastSeen = "supervisord did not answer on \(config.control.socket)"
        var lastState: StatusReport.EmergencyRollbackStatus.State?
        while ContinuousClock.now < deadline {
            if let response = try? client.get("/status"), response.status == 200,
                let report = try? JSONDecoder().decode(StatusReport.self, from: Data(response.body))
            {
                lastSeen = "supervisord (pid \(report.supervisorPID)) says: phase \(report.phase), pid \(report.pid.map(String.init) ?? "-"), sha256 \(report.sha256.map { String($0.prefix(12)) } ?? "-")"
                if let emergency = report.emergencyRollback, emergency.id == record.id {
                    if emergency.state != lastState {
                        lastState = emergency.state
                        SwapStreamPrinter.stderr("  supervisord (pid \(report.supervisorPID)): \(emergency.state.rawValue)" + (emergency.message.map { ": \($0)" } ?? ""))
                    }
                    switch emergency.state {
                    case .ok where report.sha256 == record.toSHA256 && report.pid != nil:
                        return .success("confirmed: pid \(report.pid ?? 0) on port \(report.port.map(String.init) ?? "-") runs sha256 \(restored)")
                    case .ok:
                        return .failure(CLIFailure(exitCode: 5, code: .emergencyIncomplete, message: "supervisord says the emergency rollback is done, but \(lastSeen), not the restored binary (sha256 \(restored))"))
                    case .failed:
                        return .failure(CLIFailure(exitCode: 5, code: .emergencyIncomplete, message: "the files are exchanged, but supervisord could not move traffic to the restored binary: \(emergency.message ?? "no reason given"). Check `supervisorctl --name \(config.name) status` and the service log"))
                    case .pending, .moving:
                        break
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return .failure(CLIFailure(
            exitCode: 5, code: .emergencyIncomplete,
            message: "the files are exchanged and supervisord was started, but it did not confirm the restored binary serves within \(limit.humanReadable); last seen: \(lastSeen). Check `supervisorctl --name \(config.name) status` and the service log"))
    }
}
