import SupervisorCore
import SupervisorShared
import SystemBindings

/// Runs a driver's validate and reload commands (argv, with a timeout).
struct ProxyCommands: Sendable {
    let validate: [String]
    let reload: [String]

    /// A config dump (`nginx -T`) may be large: read it whole, up to this.
    static let dumpLimit = 64 << 20

    static func run(_ argv: [String], timeout: Duration = .seconds(30), outputLimit: Int = 1 << 20) async -> CommandOutcome {
        do {
            return try await CommandRunner.run(argv, environment: ProcessEnvironment.current(), timeout: timeout, outputLimit: outputLimit)
        } catch {
            return CommandOutcome(argv: argv, status: .exited(code: 127), output: error.description, timedOut: false)
        }
    }
}

/// How a switch applies the upstream file it wrote: by running the reload
/// command, or, where the operator did not override that command, by doing
/// in process what it does (Caddy's `/load`, nginx's SIGHUP to its master),
/// which saves spawning the proxy's CLI on every switch.
struct ProxyReload: Sendable {
    enum Outcome: Sendable, Equatable {
        case applied
        /// The proxy refused the config and kept the one it runs.
        case rejected(String)
        case failed(String)
    }

    /// What the log says was done (`nginx -s reload`, `SIGHUP to nginx's master (pid 12)`).
    let description: @Sendable () -> String
    let apply: @Sendable () async -> Outcome

    static func command(_ argv: [String], timeout: Duration = .seconds(30)) -> ProxyReload {
        ProxyReload(description: { "`\(argv.joined(separator: " "))`" }, apply: {
            let outcome = await ProxyCommands.run(argv, timeout: timeout)
            return outcome.succeeded ? .applied : .failed(outcome.failureDescription)
        })
    }
}

/// The file-based switch every file driver shares: write, validate, reload,
/// confirm; on any failure put the old file back (and reload again when the
/// proxy may already have loaded the new one).
struct FileSwitch: Sendable {
    let proxyName: String
    let upstream: UpstreamFile
    /// Run before the reload; nil when the reload validates by itself (Caddy's `/load`).
    let validate: [String]?
    let reload: ProxyReload
    /// Reads what the validation printed (nginx's `-T` dump): nil when the
    /// config routes through the upstream file, else what is wrong.
    var inspectValidation: @Sendable (CommandOutcome) -> String? = { _ in nil }

    /// `prepare` runs just before the reload (nginx records its workers);
    /// `confirm` returns nil when the proxy runs the new upstream, else why not;
    /// it gets the ports the previous file named and the new one does not.
    /// With `fallback`, the file names that port as the proxy's second choice
    /// (see `UpstreamFile`); a proxy that refuses the fallback is switched without it.
    func perform<Token: Sendable>(
        port: Int, fallback: Int? = nil, log: @Sendable (String) -> Void,
        prepare: () async -> Token,
        confirm: (Token, _ gone: [Int]) async -> String?
    ) async throws(SwapError) {
        let previous = upstream.current()
        let plain = upstream.render(port: port)
        var content = fallback.flatMap { upstream.render(port: port, fallback: $0) } ?? plain
        try write(content, port: port, fallback: fallback, previous: previous, log: log)

        if let validate {
            var validated = await ProxyCommands.run(validate, outputLimit: ProxyCommands.dumpLimit)
            if !validated.succeeded, content != plain {
                let refusal = validated.failureDescription
                content = plain
                try write(content, port: port, fallback: nil, previous: previous, log: log)
                validated = await ProxyCommands.run(validate, outputLimit: ProxyCommands.dumpLimit)
                if validated.succeeded { log("\(proxyName) refused the fallback line (\(refusal)); switching without one") }
            }
            guard validated.succeeded else {
                upstream.restore(previous)
                throw SwapError(.proxyValidateFailed, "\(proxyName) rejected the config: \(validated.failureDescription); upstream file restored")
            }
            if let problem = inspectValidation(validated) {
                upstream.restore(previous)
                throw SwapError(.proxyNotWired, "\(problem); upstream file restored, \(proxyName) not reloaded")
            }
            log("validated: `\(validate.joined(separator: " "))`")
        }

        let token = await prepare()
        var applied = await reload.apply()
        if case .rejected(let refusal) = applied, content != plain {
            content = plain
            try write(content, port: port, fallback: nil, previous: previous, log: log)
            applied = await reload.apply()
            if applied == .applied { log("\(proxyName) refused the fallback lines (\(refusal)); switched without them") }
        }
        switch applied {
        case .applied:
            break
        case .rejected(let problem):
            // The proxy kept the config it runs: only the file needs putting back.
            upstream.restore(previous)
            throw SwapError(.proxyValidateFailed, "\(proxyName) rejected the config: \(problem); it keeps the one it runs, upstream file restored")
        case .failed(let problem):
            upstream.restore(previous)
            let again = await reload.apply()
            throw SwapError(.proxyReloadFailed, "\(proxyName) reload failed: \(problem); upstream file restored\(again == .applied ? " and reloaded" : " (reloading it failed too: is \(proxyName) running?)")")
        }
        log("reloaded: \(reload.description())")

        let before = previous.map { upstream.ports(in: String(decoding: $0, as: UTF8.self)) } ?? []
        let now = upstream.ports(in: content)
        if let problem = await confirm(token, before.filter { !now.contains($0) }) {
            upstream.restore(previous)
            let again = await reload.apply()
            throw SwapError(.proxyNotConfirmed, "\(proxyName) did not confirm the switch to 127.0.0.1:\(port): \(problem); upstream file restored\(again == .applied ? " and reloaded" : "")")
        }
    }

    /// Writes the file; a failed write puts back what was there.
    private func write(_ content: String, port: Int, fallback: Int?, previous: [UInt8]?, log: @Sendable (String) -> Void) throws(SwapError) {
        do {
            try upstream.write(content)
        } catch {
            upstream.restore(previous)
            throw error
        }
        let primary = upstream.render(port: port).trimmingCharacters(in: .whitespacesAndNewlines)
        if let fallback, content != upstream.render(port: port) {
            log("wrote \(upstream.path): \(primary), then port \(fallback) as the fallback while that instance lives")
        } else {
            log("wrote \(upstream.path): \(primary)")
        }
    }
}
