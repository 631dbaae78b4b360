import SupervisorCore
import SupervisorShared
import SystemBindings

/// Runs a driver's validate and reload commands (argv, with a timeout).
struct ProxyCommands: Sendable {
    let validate: [String]
    let reload: [String]
    var timeout: Duration = .seconds(30)

    func runReload() async -> CommandOutcome { await run(reload) }

    func run(_ argv: [String]) async -> CommandOutcome { await Self.run(argv, timeout: timeout) }

    /// A config dump (`nginx -T`) may be large: read it whole, up to this.
    static let dumpLimit = 64 << 20

    func runValidate(outputLimit: Int) async -> CommandOutcome { await Self.run(validate, timeout: timeout, outputLimit: outputLimit) }

    static func run(_ argv: [String], timeout: Duration = .seconds(30), outputLimit: Int = 1 << 20) async -> CommandOutcome {
        do {
            return try await CommandRunner.run(argv, environment: ProcessEnvironment.current(), timeout: timeout, outputLimit: outputLimit)
        } catch {
            return CommandOutcome(argv: argv, status: .exited(code: 127), output: error.description, timedOut: false)
        }
    }
}

/// The file-based switch every file driver shares: write, validate, reload,
/// confirm; on any failure put the old file back (and reload again when the
/// proxy may already have loaded the new one).
struct FileSwitch: Sendable {
    let proxyName: String
    let upstream: UpstreamFile
    let commands: ProxyCommands
    /// Reads what the validation printed (nginx's `-T` dump): nil when the
    /// config routes through the upstream file, else what is wrong.
    var inspectValidation: @Sendable (CommandOutcome) -> String? = { _ in nil }

    /// `prepare` runs just before the reload (nginx records its workers);
    /// `confirm` returns nil when the proxy runs the new upstream, else why not.
    func perform<Token: Sendable>(
        port: Int, log: @Sendable (String) -> Void,
        prepare: () async -> Token,
        confirm: (Token) async -> String?
    ) async throws(SwapError) {
        let previous = upstream.current()
        try upstream.write(port: port)
        log("wrote \(upstream.path): \(upstream.render(port: port).trimmingCharacters(in: .whitespacesAndNewlines))")

        let validated = await commands.runValidate(outputLimit: ProxyCommands.dumpLimit)
        guard validated.succeeded else {
            upstream.restore(previous)
            throw SwapError(.proxyValidateFailed, "\(proxyName) rejected the config: \(validated.failureDescription); upstream file restored")
        }
        if let problem = inspectValidation(validated) {
            upstream.restore(previous)
            throw SwapError(.proxyNotWired, "\(problem); upstream file restored, \(proxyName) not reloaded")
        }
        log("validated: `\(commands.validate.joined(separator: " "))`")

        let token = await prepare()
        let reloaded = await commands.runReload()
        guard reloaded.succeeded else {
            upstream.restore(previous)
            let again = await commands.runReload()
            throw SwapError(.proxyReloadFailed, "\(proxyName) reload failed: \(reloaded.failureDescription); upstream file restored\(again.succeeded ? " and reloaded" : " (reloading it failed too: is \(proxyName) running?)")")
        }
        log("reloaded: `\(commands.reload.joined(separator: " "))`")

        if let problem = await confirm(token) {
            upstream.restore(previous)
            let again = await commands.runReload()
            throw SwapError(.proxyNotConfirmed, "\(proxyName) did not confirm the switch to 127.0.0.1:\(port): \(problem); upstream file restored\(again.succeeded ? " and reloaded" : "")")
        }
    }
}
