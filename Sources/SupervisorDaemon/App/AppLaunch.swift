#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SupervisorCore
import SupervisorShared
import SystemBindings

/// How an app instance is started and when it counts as ready, in both
/// modes: proxy mode (its own port, HTTP health probes) and socket-handoff
/// mode (the supervisor's listening sockets as fds 3.. with LISTEN_FDS,
/// LISTEN_PID = the child's own pid, LISTEN_FDNAMES). With `[health] mode =
/// "notify"` each instance gets a NOTIFY_SOCKET of its own and is ready when
/// it sends READY=1 from its own pid.
public final class AppLaunch: Sendable {
    let config: SupervisorConfig
    /// Listening sockets held for socket-handoff mode (empty in proxy mode).
    public let listenDescriptors: [Int32]
    /// Who the app and its commands run as.
    public let runAs: RunAs
    /// Numbers the notify sockets of every launch in this process (a restart's
    /// launch too, whose sockets live next to the serving instance's).
    private static let counter = Mutex(0)

    public init(config: SupervisorConfig, listenDescriptors: [Int32], runAs: RunAs = .daemon) {
        self.config = config
        self.listenDescriptors = listenDescriptors
        self.runAs = runAs
    }

    public var isHandoff: Bool { !listenDescriptors.isEmpty }

    /// The same sockets and identities, with `[app]` from `config`.
    public func with(_ config: SupervisorConfig) -> AppLaunch {
        AppLaunch(config: config, listenDescriptors: listenDescriptors, runAs: runAs)
    }

    /// Opens the `[app] listen` sockets (reusing ones systemd passed in `inherited`).
    public static func openListeners(_ config: SupervisorConfig, inherited: [Int32]) throws -> [Int32] {
        if !inherited.isEmpty { return inherited }
        var fds: [Int32] = []
        for address in config.app.listen {
            do {
                fds.append(try ListeningSocket.open(address))
            } catch {
                throw StartError(description: "app.listen: cannot listen on \(address): \(String(cString: strerror(error.errno)))")
            }
        }
        return fds
    }

    /// A prepared start: the spawn request and, in notify mode, the socket READY=1 comes on.
    public struct Prepared: Sendable {
        public let request: SpawnRequest
        let receiver: NotifyReceiver?
    }

    public func prepare(executable: String, port: Int) throws(ProcessError) -> Prepared {
        var request = ProcessEnvironment.appSpawnRequest(executable: executable, config: config.app, port: port)
        request.credentials = runAs.app
        // Under journald each instance writes to a journal stream of its own,
        // named after the service: its last lines can be read back by pid.
        request.journalIdentifier = config.name
        // A login's HOME, USER and LOGNAME, unless [app] env names them.
        for (key, value) in runAs.app?.environment ?? [:] where config.app.env[key] == nil {
            request.environment[key] = value
        }
        if isHandoff {
            request.passedDescriptors = listenDescriptors
            request.setListenPID = true
            request.environment["LISTEN_FDS"] = String(listenDescriptors.count)
            request.environment["LISTEN_FDNAMES"] = listenDescriptors.indices.map { "app-\($0)" }.joined(separator: ":")
            request.environment["PORT"] = nil
        }
        var receiver: NotifyReceiver?
        if config.health.mode == .notify {
            let number = Self.counter.withLock { value in
                value += 1
                return value
            }
            // An app that is not root cannot reach into the state directory
            // (0750 root): its socket is then an abstract one, whose sender
            // is still checked by pid (SCM_CREDENTIALS), with a random part no
            // other local user can guess and take first.
            let path =
                runAs.app == nil
                ? "\(config.stateDirectory)/notify-\(getpid())-\(number).sock"
                : "@supervisor-\(config.name)-notify-\(getpid())-\(number)-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
            receiver = try NotifyReceiver(path: path)
            request.environment["NOTIFY_SOCKET"] = path
        }
        return Prepared(request: request, receiver: receiver)
    }

    /// Waits until the instance is ready: READY=1 in notify mode, else the
    /// HTTP health gate. `prepared` is nil for an adopted instance: in notify
    /// mode it already said READY=1 to a previous supervisor (and its
    /// identity matched), so it is ready.
    public func waitReady(_ prepared: Prepared?, process: ChildProcess, port: Int) async -> HealthGate.Result {
        if prepared == nil && config.health.mode == .notify {
            return .healthy(probes: 0)
        }
        guard let receiver = prepared?.receiver else {
            return await HealthGate(config: config.health).wait(port: port, process: process)
        }
        if await receiver.waitForReady(from: process, timeout: config.health.startTimeout) {
            return .healthy(probes: 1)
        }
        if let status = process.exitStatus { return .exited(status) }
        return .timedOut(lastProblem: "no READY=1 from pid \(process.pid) on its NOTIFY_SOCKET")
    }

    /// What to call the instance's address in messages.
    public func describe(port: Int) -> String {
        isHandoff ? "the supervisor's sockets (\(config.app.listen.joined(separator: ", ")))" : "port \(port)"
    }
}
