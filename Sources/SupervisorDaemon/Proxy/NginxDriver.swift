#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import SupervisorCore
import Synchronization
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
/// applying fails). The master forks a new generation of workers only once it
/// has loaded the new config, so new workers confirm the switch; none within
/// the timeout means the reload did not take: revert. nginx's master lets
/// the previous workers accept for another 100 ms (it sleeps that long
/// before telling them to stop); when it signalled the master itself, the
/// driver tells them at once. What they still send the old instance is for
/// the drain to wait for (`awaitPreviousConfigRetired`), not the switch: the
/// new version serves from the new generation on.
public struct NginxDriver: ProxyDriver {
    let upstream: UpstreamFile
    let configPath: String?
    let pidFile: String
    let commands: ProxyCommands
    let switchCommands: ProxyCommands
    /// Whether `[proxy] reload` is the default (then the driver signals the master itself).
    let signalsMaster: Bool
    /// The master and the workers it ran before the last reload.
    private let previousGeneration = WorkerGeneration()
    let confirmTimeout: Duration

    public init(config: SupervisorConfig) {
        let proxy = config.proxy
        upstream = UpstreamFile(path: proxy.upstreamFile ?? "", template: proxy.upstreamTemplate, fallbackStyle: .nginxBackup)
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

    public func switchUpstream(to port: Int, fallback: Int?, log: @Sendable (String) -> Void) async throws(SwapError) {
        var change = FileSwitch(proxyName: "nginx", upstream: upstream, validate: switchCommands.validate, reload: reload)
        if switchCommands.validate != commands.validate {
            let path = upstream.path
            change.inspectValidation = { outcome in outcome.truncated ? nil : NginxWiring.problem(dump: outcome.output, upstreamFile: path) }
        }
        try await change.perform(
            port: port, fallback: fallback, log: log,
            prepare: { () -> (master: Int32, workers: Set<Int32>, since: UInt64)? in
                guard let master = masterPID() else { return nil }
                return (master, Self.acceptingWorkers(of: master), ProcessTable.ticksSinceBoot())
            },
            confirm: { before, _ in
                guard let before else { return "no running nginx master (pid file \(pidFile))" }
                let problem = await confirmNewGeneration(master: before.master, oldWorkers: before.workers, since: before.since, log: log)
                // Only a reload that took leaves a generation to wait for.
                if problem == nil { previousGeneration.record((before.master, before.workers)) }
                return problem
            })
    }

    public func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
        if upstream.routes(to: port) {
            log("nginx upstream file already routes to 127.0.0.1:\(port)")
            upstream.dropFallback(port: port, log: log)
            return
        }
        try await switchUpstream(to: port, log: log)
    }

    public func dropFallback(port: Int, log: @Sendable (String) -> Void) {
        upstream.dropFallback(port: port, log: log)
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
                // The daemon is root: never signal what a stale pid file names now. The
                // pidfd pins the process whose command line is read: a pid reused in
                // between makes the signal fail instead of reaching another process.
                let pidfd = csup_pidfd_open(master)
                guard pidfd >= 0 else { return .failed("cannot open the nginx master (pid \(master)): \(String(cString: strerror(errno)))") }
                defer { close(pidfd) }
                let title = ProcessIdentity.readText("/proc/\(master)/cmdline") ?? ""
                guard Self.isMaster(commandLine: title) else {
                    return .failed("pid \(master) in \(pidFile) is not an nginx master (its command line: \(UntrustedText.quoted(String(title.prefix(80)))))")
                }
                guard csup_pidfd_send_signal(pidfd, SIGHUP) == 0 else {
                    return .failed("cannot signal the nginx master (pid \(master)): \(String(cString: strerror(errno)))")
                }
                return .applied
            })
    }

    /// nginx (and OpenResty) title their master `nginx: master process …`.
    static func isMaster(commandLine: String) -> Bool { commandLine.hasPrefix("nginx: master process") }

    func masterPID() -> Int32? {
        guard let bytes = AtomicFile.read(pidFile),
            let pid = Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)),
            pid > 0, kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    /// Nil once the master runs a generation of workers forked after the
    /// reload; else what is missing.
    func confirmNewGeneration(master: Int32, oldWorkers: Set<Int32>, since: UInt64, log: @Sendable (String) -> Void) async -> String? {
        let deadline = ContinuousClock.now + confirmTimeout
        while ContinuousClock.now < deadline {
            let fresh = Self.workers(of: master).subtracting(oldWorkers)
            if !fresh.isEmpty {
                log("nginx master \(master) runs the new config: \(fresh.count) new worker\(fresh.count == 1 ? "" : "s")")
                if signalsMaster {
                    // nginx's master lets the previous workers accept for another 100 ms
                    // before it tells them to finish: traffic for the old upstream. Tell
                    // them now, once the new generation is all there (at most 50 ms) and
                    // had a moment to reach its accept loop (a connection arriving in
                    // between waits in the listen backlog).
                    let whole = ContinuousClock.now + .milliseconds(50)
                    while Self.workers(of: master).subtracting(oldWorkers).count < oldWorkers.count, ContinuousClock.now < whole {
                        try? await Task.sleep(for: .milliseconds(2))
                    }
                    try? await Task.sleep(for: .milliseconds(5))
                    let told = Self.finishPreviousWorkers(master: master, oldWorkers: oldWorkers, startedBy: since)
                    if told > 0 {
                        log("told nginx's \(told) previous worker\(told == 1 ? "" : "s") to finish what \(told == 1 ? "it has" : "they have") and exit (SIGQUIT, which the master sends 100 ms later)")
                    }
                }
                return nil
            }
            // /proc has no event for a fork by a process that is not ours: look every 2 ms.
            try? await Task.sleep(for: .milliseconds(2))
        }
        return "the master (pid \(master)) started no new workers within \(confirmTimeout.humanReadable): the reload did not take (see nginx's error log)"
    }

    /// SIGQUIT (nginx's graceful stop) to the master's workers from before the
    /// reload, each checked through a pidfd to be an nginx worker; how many.
    /// A pid that started after `startedBy` (clock ticks since boot) is not one
    /// of them, whatever it reuses.
    static func finishPreviousWorkers(master: Int32, oldWorkers: Set<Int32>, startedBy: UInt64) -> Int {
        var told = 0
        for pid in workers(of: master).intersection(oldWorkers) {
            let pidfd = csup_pidfd_open(pid)
            guard pidfd >= 0 else { continue }
            defer { close(pidfd) }
            guard Self.isAcceptingWorker(pid), let stat = ProcessTable.stat(of: pid), stat.parent == master, stat.startTime <= startedBy
            else { continue }
            if csup_pidfd_send_signal(pidfd, SIGQUIT) == 0 { told += 1 }
        }
        return told
    }

    /// The master's workers that accept connections: titled `nginx: worker
    /// process` (not a cache manager or loader, not one from an earlier reload
    /// that is already shutting down).
    static func acceptingWorkers(of master: Int32) -> Set<Int32> {
        workers(of: master).filter(isAcceptingWorker)
    }

    static func isAcceptingWorker(_ pid: Int32) -> Bool {
        let title = ProcessIdentity.readText("/proc/\(pid)/cmdline") ?? ""
        return title.hasPrefix("nginx: worker process") && !title.hasPrefix("nginx: worker process is shutting down")
    }

    /// The master's children: its main thread's `children` file (one read;
    /// nginx forks from that thread), or a scan of /proc where that file is missing.
    static func workers(of master: Int32) -> Set<Int32> {
        guard let text = ProcessIdentity.readText("/proc/\(master)/task/\(master)/children") else {
            return ProcessTable.children(of: master)
        }
        return Set(text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
    }

    /// The `pid` directive of an nginx config, if it has one at top level.
    static func pidFile(fromConfig path: String?) -> String? {
        guard let path, let bytes = AtomicFile.read(path) else { return nil }
        return ProxyConfigText.firstValue(of: "pid", in: bytes)
    }
}

/// The master and the workers it ran before the last reload (the driver is a
/// value shared by its copies; this is what they share).
private final class WorkerGeneration: Sendable {
    private let storage = Mutex<(master: Int32, workers: Set<Int32>)?>(nil)
    func record(_ generation: (master: Int32, workers: Set<Int32>)) { storage.withLock { $0 = generation } }
    var last: (master: Int32, workers: Set<Int32>)? { storage.withLock { $0 } }
    /// Forgets `generation` once it is gone (unless a later reload replaced it meanwhile).
    func clear(_ generation: (master: Int32, workers: Set<Int32>)) {
        storage.withLock { if $0?.master == generation.master && $0?.workers == generation.workers { $0 = nil } }
    }
}
