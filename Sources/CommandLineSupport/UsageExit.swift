#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

extension ParsableCommand {
    /// Parses and runs, with command-line errors exiting 2 (DESIGN.md's code
    /// for "found before contacting the daemon") rather than sysexits' 64.
    public static func mainExitingTwoOnUsageErrors() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                let message = fullMessage(for: error)
                var line = message + "\n"
                line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}
