#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import SupervisorCore
import SupervisorShared

/// `rollback --emergency`: prints each step as it happens.
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
        do {
            try await EmergencyRollback(config: config).run(callerUID: getuid()) { line in
                SwapStreamPrinter.stderr("  \(line)")
            }
            SwapStreamPrinter.stderr("ok: rolled back; check it with: supervisorctl --name \(config.name) status")
        } catch {
            SwapStreamPrinter.stderr("failed: \(error.message) [\(error.code)]")
            throw ExitCode(1)
        }
    }
}
