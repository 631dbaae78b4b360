import SupervisorCore
import SupervisorShared
import SystemBindings

/// Runs `[app] version_command` against a binary (as the app's user); its
/// first output line, control characters escaped, is the version.
enum VersionProbe {
    static func version(of binary: String, command: [String], timeout: Duration, as credentials: ProcessCredentials?) async -> String? {
        let argv = command.map { Placeholders.substitute($0, ["binary": binary]) }
        // Not a gate: a swap that no longer needs the version (its gate failed) cancels it.
        guard let outcome = try? await CommandRunner.run(argv, environment: ProcessEnvironment.current(), credentials: credentials, timeout: timeout, killedIfCancelled: true),
            outcome.succeeded
        else { return nil }
        let line = outcome.output.split(separator: "\n").first.map(String.init) ?? ""
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        // Shown in terminals, logs, JSON and metrics labels: no control characters.
        return trimmed.isEmpty ? nil : UntrustedText.escaped(String(trimmed.prefix(200)))
    }
}

extension String {
    func trimmingCharacters(in set: Set<Character>) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return String(slice)
    }
}

extension Set where Element == Character {
    static let whitespaces: Set<Character> = [" ", "\t", "\r", "\n"]
}
