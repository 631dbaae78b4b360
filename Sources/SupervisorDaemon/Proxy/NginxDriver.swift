#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore
import SupervisorShared
import SystemBindings

/// `kind = "nginx"`: the nginx config includes the upstream file inside
/// `upstream NAME { include …; keepalive …; }`. A switch writes the file,
/// runs `nginx -T` (the test, plus a dump that must show the file still
/// included where a `proxy_pass` sends traffic), reloads, and confirms from
/// /proc. Unless `[proxy] reload` overrides it, the reload is what
/// `nginx -s reload` does, done here: SIGHUP to the master named by the pid
/// file, without spawning a second nginx that parses the config again.
///
/// A reload only signals the master (`nginx -s reload` exits 0 even when
/// applying fails), and old workers keep accepting for ~100–150 ms after it. So the
/// switch counts as confirmed when the master has forked a new generation of
/// workers *and* every worker that existed before the reload has exited; no
/// new workers within the timeout means the reload did not take: revert.
public struct NginxDriver: ProxyDriver {
    let upstream: UpstreamFile
    let configPath: String?
    let pidFile: String
    let commands: ProxyCommands
    let switchCommands: ProxyCommands
    /// Whether `[proxy] reload` is the default (then the driver signals the master itself).
    let signalsMaster: Bool
    let confirmTimeout: Duration

    public init(config: SupervisorConfig) {
        let proxy = config.proxy
        upstream = UpstreamFile(path: proxy.upstreamFile ?? "", template: proxy.upstreamTemplate)
        configPath = proxy.config
        let configFlag = proxy.config.map { ["-c", $0] } ?? []
        let values = ["config": proxy.config ?? "", "admin": ""]
        commands = ProxyCommands(
            validate: (proxy.validate ?? ["nginx"] + configFlag + ["-t", "-q"]).map { Placeholders.substitute($0, values) },
            reload: (proxy.reload ?? ["nginx"] + configFlag + ["-s", "reload"]).map { Placeholders.substitute($0, values) })
        // A switch validates with `-T`: the same test, plus the dump that
        // shows whether the config still routes through the upstream file.
        switchCommands = ProxyCommands(
            validate: ProxyWiringCheck.nginxDumpCommand(validate: commands.validate) ?? commands.validate,
            reload: commands.reload)
        pidFile = proxy.pidFile ?? Self.pidFile(fromConfig: proxy.config) ?? "/run/nginx.pid"
        signalsMaster = proxy.reload == nil
        confirmTimeout = max(config.drain.timeout, .seconds(2))
    }

    public var summary: String { "nginx (\(configPath ?? "default config"), upstream file \(upstream.path))" }

    public func switchUpstream(to port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
        var change = FileSwitch(proxyName: "nginx", upstream: upstream, validate: switchCommands.validate, reload: reload)
        if switchCommands.validate != commands.validate {
            let path = upstream.path
            change.inspectValidation = { outcome in outcome.truncated ? nil : NginxWiring.problem(dump: outcome.output, upstreamFile: path) }
        }
        try await change.perform(
            port: port, log: log,
            prepare: { () -> (master: Int32, workers: Set<Int32>)? in
                guard let master = masterPID() else { return nil }
                return (master, ProcessTable.children(of: master))
            },
            confirm: { before in
                guard let before else { return "no running nginx master (pid file \(pidFile))" }
                return await confirmNewGeneration(master: before.master, oldWorkers: before.workers, log: log)
            })
    }

    public func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
        if upstream.routes(to: port) {
            log("nginx upstream file already routes to 127.0.0.1:\(port)")
            return
        }
        try await switchUpstream(to: port, log: log)
    }

    /// The reload a switch does: SIGHUP to the master, or `[proxy] reload`.
    var reload: ProxyReload {
        guard signalsMaster else { return .command(commands.reload) }
        let pidFile = self.pidFile
        return ProxyReload(
            description: { "SIGHUP to the nginx master in \(pidFile) (what `nginx -s reload` does)" },
            apply: {
                guard let master = masterPID() else {
                    return .failed("no running nginx master (pid file \(pidFile) missing, unreadable or naming no process)")
                }
                // The daemon is root: never signal what a stale pid file names now.
                let title = ProcessIdentity.readText("/proc/\(master)/cmdline") ?? ""
                guard title.hasPrefix("nginx: master process") else {
                    return .failed("pid \(master) in \(pidFile) is not an nginx master (its command line: \(UntrustedText.quoted(String(title.prefix(80)))))")
                }
                guard kill(master, SIGHUP) == 0 else {
                    return .failed("cannot signal the nginx master (pid \(master)): \(String(cString: strerror(errno)))")
                }
                return .applied
            })
    }

    func masterPID() -> Int32? {
        guard let bytes = AtomicFile.read(pidFile),
            let pid = Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)),
            pid > 0, kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    /// Nil once a new generation runs and the old one is gone; else what is missing.
    func confirmNewGeneration(master: Int32, oldWorkers: Set<Int32>, log: @Sendable (String) -> Void) async -> String? {
        let deadline = ContinuousClock.now + confirmTimeout
        var sawNew = false
        var lastChildren: Set<Int32> = []
        while ContinuousClock.now < deadline {
            let children = ProcessTable.children(of: master)
            lastChildren = children
            let fresh = children.subtracting(oldWorkers)
            let lingering = children.intersection(oldWorkers)
            if !fresh.isEmpty && !sawNew {
                sawNew = true
                log("nginx master \(master) started \(fresh.count) new worker\(fresh.count == 1 ? "" : "s")")
            }
            if sawNew && lingering.isEmpty {
                log("nginx's previous workers have exited: the new upstream is the only one in use")
                return nil
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        if !sawNew {
            return "the master (pid \(master)) started no new workers within \(confirmTimeout.humanReadable): the reload did not take (see nginx's error log)"
        }
        return "old workers \(lastChildren.intersection(oldWorkers).sorted()) still running after \(confirmTimeout.humanReadable) (raise worker_shutdown_timeout's bound or [drain] timeout)"
    }

    /// The `pid` directive of an nginx config, if it has one at top level.
    static func pidFile(fromConfig path: String?) -> String? {
        guard let path, let bytes = AtomicFile.read(path) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ";" })
            if words.count >= 2, words[0] == "pid" { return String(words[1]) }
        }
        return nil
    }
}
