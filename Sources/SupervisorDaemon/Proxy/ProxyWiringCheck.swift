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
    /// Its config, as the proxy itself parsed it, bypasses the file: a config problem.
    case notWired(String)
    /// The proxy's own tool failed or timed out (a config it rejects, a name
    /// that does not resolve yet at boot): said loudly, but not a reason to
    /// keep the service down, since swaps check it again.
    case proxyFailed(String)
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
///   `reverse_proxy` dialing that port can only have it from the file.
///
/// What cannot be checked here (not root, a validate command that is not
/// nginx itself, a proxy that is not installed, an upstream chosen by a
/// variable) is a warning, never a refusal.
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

    /// Nginx's dump command: the validate command with `-T` for `-t` (and no
    /// `-q`), when that command is nginx itself (not `sudo`, `docker exec -t`, …,
    /// whose `-t` means something else and whose paths may not be ours).
    public static func nginxDumpCommand(validate: [String]) -> [String]? {
        guard let program = validate.first?.split(separator: "/").last, ["nginx", "openresty"].contains(String(program)),
            validate.contains("-t")
        else { return nil }
        return validate.filter { $0 != "-q" }.map { $0 == "-t" ? "-T" : $0 }
    }

    static func nginx(_ config: SupervisorConfig, upstream: UpstreamFile) async -> WiringVerdict {
        let validate = NginxDriver(config: config).commands.validate
        guard let dump = nginxDumpCommand(validate: validate) else {
            return .notChecked("proxy.validate: `\(validate.joined(separator: " "))` is not `nginx … -t`, so whether nginx routes through \(upstream.path) was not checked")
        }
        guard geteuid() == 0 else {
            return .notChecked("whether nginx routes through \(upstream.path) was not checked: `nginx -T` reads files only root may (run the check as root)")
        }
        createIfMissing(upstream, port: config.app.ports[0])
        let outcome = await ProxyCommands.run(dump, outputLimit: ProxyCommands.dumpLimit)
        if outcome.status == .exited(code: 127) || outcome.status == .exited(code: 126) {
            return .notChecked("whether nginx routes through \(upstream.path) was not checked: \(outcome.failureDescription)")
        }
        guard outcome.succeeded else {
            return .proxyFailed("nginx rejected its config, so whether it routes through \(upstream.path) was not checked: \(outcome.failureDescription)")
        }
        if outcome.truncated {
            return .notChecked("`\(dump.joined(separator: " "))` printed more than \(ProxyCommands.dumpLimit >> 20) MiB: whether nginx routes through \(upstream.path) was not checked")
        }
        switch NginxWiring.verdict(dump: outcome.output, upstreamFile: upstream.path) {
        case .wired(let names):
            return .wired("nginx sends traffic through \(upstream.path) (upstream \(names.joined(separator: ", ")), checked with `\(dump.joined(separator: " "))`)")
        case .notWired(let problem):
            return .notWired(problem)
        case .undecidable(let why):
            return .notChecked("\(why): whether traffic goes through it was not checked")
        }
    }

    static func caddy(_ config: SupervisorConfig, upstream: UpstreamFile) async -> WiringVerdict {
        guard let caddyfile = config.proxy.config else { return .notApplicable }
        guard geteuid() == 0 else {
            return .notChecked("whether caddy routes through \(upstream.path) was not checked: the check replaces the file in a private mount namespace, which needs root (run the check as root)")
        }
        // The caddy the switch runs (a custom build with plugins may live elsewhere).
        let validate = CaddyFileDriver(config: config).commands.validate
        guard let program = validate.first, program.split(separator: "/").last == "caddy" else {
            return .notChecked("proxy.validate: `\(validate.joined(separator: " "))` is not caddy itself, so whether caddy routes through \(upstream.path) was not checked")
        }
        createIfMissing(upstream, port: config.app.ports[0])
        let adapt = [program, "adapt", "--config", caddyfile, "--adapter", "caddyfile"]

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
                let notStarted = outcome.status == .exited(code: 126) || outcome.status == .exited(code: 127)
                if !namespaceFailed && !notStarted {
                    return caddyVerdict(outcome, port: sentinel, caddyfile: caddyfile, upstream: upstream, how: "caddy adapt with \(upstream.path) naming a port of its own")
                }
                return .notChecked("whether caddy routes through \(upstream.path) was not checked: \(outcome.failureDescription)")
            }
        }
        return .notChecked("whether caddy routes through \(upstream.path) was not checked: no temporary file for the check (\(String(cString: strerror(errno))))")
    }

    static func caddyVerdict(_ outcome: CommandOutcome, port: Int, caddyfile: String, upstream: UpstreamFile, how: String) -> WiringVerdict {
        guard outcome.succeeded else {
            return .proxyFailed("caddy rejected \(caddyfile), so whether it routes through \(upstream.path) was not checked: \(outcome.failureDescription)")
        }
        // stdout and stderr come together: the config is the line with "apps"
        // (caddy's own log lines are JSON objects too).
        let lines = outcome.output.split(separator: "\n")
        let adapted = lines.first { $0.hasPrefix("{") && !$0.hasPrefix("{\"level\"") }.map { Array($0.utf8) } ?? []
        if CaddyWiring.routes(adapted: adapted, toPort: port) {
            let others = CaddyWiring.otherDials(adapted: adapted, besidePort: port)
            if !others.isEmpty {
                return .notWired("the reverse_proxy of \(caddyfile) that imports \(upstream.path) also dials \(Array(Set(others)).sorted().joined(separator: ", ")): caddy would go on sending traffic there after a swap; leave only the import")
            }
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
