#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore
import SupervisorShared
import SystemBindings

/// What the wiring check found.
public enum WiringVerdict: Sendable, Equatable {
    /// The proxy's config sends traffic through the upstream file (how we know).
    case wired(String)
    /// It does not, or the proxy rejected its config: a config problem.
    case notWired(String)
    /// This setup cannot be checked (why): a warning, not a refusal.
    case notChecked(String)
    /// No upstream file to check (`none`, `caddy-api`).
    case notApplicable
}

/// Proves, the way `nginx -t` proves syntax, that the proxy config really
/// routes traffic through the upstream file, so a swap that writes it moves
/// traffic. `supervisord --check` and the daemon's start both run it.
///
/// - nginx: `nginx -T` (the validate command with `-T` for `-t`), whose dump
///   `NginxWiring` reads: the file included in an `upstream` block a
///   `proxy_pass` uses.
/// - caddy: `caddy adapt` run in a private mount namespace in which the
///   upstream file is replaced by one naming a port nothing else uses; a
///   `reverse_proxy` dialing that port can only have it from the file. Where
///   no mount namespace can be made (not root), the port the file names now
///   stands in for it.
public enum ProxyWiringCheck {
    public static func run(_ config: SupervisorConfig) async -> WiringVerdict {
        let proxy = config.proxy
        guard let upstreamPath = proxy.upstreamFile else { return .notApplicable }
        let upstream = UpstreamFile(path: upstreamPath, template: proxy.upstreamTemplate)
        switch proxy.kind {
        case .nginx: return await nginx(config, upstream: upstream)
        case .caddy: return await caddy(config, upstream: upstream)
        case .caddyAPI, .none: return .notApplicable
        }
    }

    /// Nginx's dump command: the validate command with `-T` for `-t` (and no `-q`).
    public static func nginxDumpCommand(validate: [String]) -> [String]? {
        guard validate.contains("-t") else { return nil }
        return validate.filter { $0 != "-q" }.map { $0 == "-t" ? "-T" : $0 }
    }

    static func nginx(_ config: SupervisorConfig, upstream: UpstreamFile) async -> WiringVerdict {
        let validate = NginxDriver(config: config).commands.validate
        guard let dump = nginxDumpCommand(validate: validate) else {
            return .notChecked("proxy.validate: `\(validate.joined(separator: " "))` has no -t to turn into -T, so whether nginx routes through \(upstream.path) was not checked")
        }
        createIfMissing(upstream, port: config.app.ports[0])
        let outcome = await ProxyCommands.run(dump)
        guard outcome.succeeded else {
            return .notWired("nginx rejected its config: \(outcome.failureDescription)")
        }
        if let problem = NginxWiring.problem(dump: outcome.output, upstreamFile: upstream.path) {
            return .notWired(problem)
        }
        let names = NginxWiring.wiredUpstreams(dump: outcome.output, upstreamFile: upstream.path)
        return .wired("nginx sends traffic through \(upstream.path) (upstream \(names.joined(separator: ", ")), checked with `\(dump.joined(separator: " "))`)")
    }

    static func caddy(_ config: SupervisorConfig, upstream: UpstreamFile) async -> WiringVerdict {
        guard let caddyfile = config.proxy.config else { return .notApplicable }
        createIfMissing(upstream, port: config.app.ports[0])
        let adapt = ["caddy", "adapt", "--config", caddyfile, "--adapter", "caddyfile"]

        // A port neither of the app's ports nor likely written by hand anywhere.
        var sentinel = Int.random(in: 20_000...60_000)
        while config.app.ports.contains(sentinel) { sentinel += 1 }
        var template = Array("/tmp/supervisor-wiring.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd >= 0 {
            let sentinelPath = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            defer { _ = unlink(sentinelPath) }
            let bytes = Array(upstream.render(port: sentinel).utf8)
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            fchmod(fd, 0o644)
            close(fd)
            if written == bytes.count {
                let script = #"mount --bind -- "$1" "$2" || exit 125; shift 2; exec "$@""#
                let outcome = await ProxyCommands.run(
                    ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "wiring", sentinelPath, upstream.path] + adapt)
                let namespaceFailed = outcome.status == .exited(code: 125) || outcome.output.hasPrefix("unshare:")
                if !namespaceFailed {
                    return caddyVerdict(outcome, port: sentinel, caddyfile: caddyfile, upstream: upstream, how: "caddy adapt with \(upstream.path) naming a port of its own")
                }
            }
        }
        // No mount namespace (not root): the port the file names now must be dialed.
        guard let port = config.app.ports.first(where: upstream.routes(to:)) else {
            return .notChecked("no mount namespace to check \(caddyfile) in, and \(upstream.path) names neither port \(config.app.ports.map(String.init).joined(separator: " nor ")): whether caddy routes through it was not checked (run the check as root)")
        }
        return caddyVerdict(await ProxyCommands.run(adapt), port: port, caddyfile: caddyfile, upstream: upstream, how: "caddy adapt, matched by the port \(upstream.path) names now")
    }

    static func caddyVerdict(_ outcome: CommandOutcome, port: Int, caddyfile: String, upstream: UpstreamFile, how: String) -> WiringVerdict {
        guard outcome.succeeded else {
            return .notWired("caddy rejected \(caddyfile): \(outcome.failureDescription)")
        }
        // stdout and stderr come together: the config is the line with "apps"
        // (caddy's own log lines are JSON objects too).
        let lines = outcome.output.split(separator: "\n")
        let adapted = lines.first { $0.hasPrefix("{") && !$0.hasPrefix("{\"level\"") }.map { Array($0.utf8) } ?? []
        if CaddyWiring.routes(adapted: adapted, toPort: port) {
            return .wired("caddy sends traffic through \(upstream.path) (a reverse_proxy of \(caddyfile) dials what it names; checked with \(how))")
        }
        let dials = CaddyWiring.reverseProxyDials(adapted: adapted)
        let found = dials.isEmpty ? "it has no reverse_proxy" : "its reverse_proxy dials \(Array(Set(dials)).sorted().joined(separator: ", ")), none from the file"
        return .notWired("\(caddyfile) does not route through \(upstream.path): \(found); put `import \(upstream.path)` inside the site's `reverse_proxy { … }` block")
    }

    /// "Creating the upstream file itself is fine": the proxy cannot load a
    /// config that imports a missing file, and the daemon writes it at start.
    static func createIfMissing(_ upstream: UpstreamFile, port: Int) {
        guard upstream.current() == nil, access(AtomicFile.directoryName(upstream.path), W_OK) == 0 else { return }
        try? upstream.write(port: port)
    }
}
