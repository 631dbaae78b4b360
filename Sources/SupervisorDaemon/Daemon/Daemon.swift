#if canImport(Glibc)
import Glibc
#endif
import Logging
import ServiceLifecycle
import SupervisorCore
import SupervisorShared
import SystemBindings

/// The supervisor daemon: binds the control socket, starts and supervises the
/// app, and on SIGTERM/SIGINT stops the app and exits.
public struct Daemon: Sendable {
    public let config: SupervisorConfig
    let logger: Logger
    let notifier: Notifier
    /// The config file: `supervisorctl restart` reads it again.
    let configPath: String?
    /// What the previous image handed over, when a SIGHUP exec'd this one.
    let handover: ReexecHandover.Received?

    public init(
        config: SupervisorConfig, logger: Logger, notifier: Notifier = Notifier(), configPath: String? = nil, handover: ReexecHandover.Received? = nil
    ) {
        self.handover = handover
        self.config = config
        self.configPath = configPath
        self.logger = logger
        self.notifier = notifier
    }

    /// Runs until a shutdown signal. Throws only when it cannot start.
    public func run() async throws {
        SignalPolicy.install(logger: logger)
        // An image that a SIGHUP exec'd: the lock, the control socket and the app's sockets come from it.
        let journal = StateJournal(directory: config.stateDirectory)
        do {
            try journal.prepare()
        } catch {
            throw StartError(description: "state_dir: \(error)")
        }
        let lockFD: Int32
        if let fd = handover?.fd("lock") {
            try InstanceLock.adopt(fd: fd, stateDirectory: config.stateDirectory)
            lockFD = fd
        } else {
            lockFD = try InstanceLock.acquire(stateDirectory: config.stateDirectory)
        }
        if let handover, let failed = handover.failed {
            logger.critical("the new supervisord could not start (\(failed)); this one (\(SupervisorVersion.current), pid \(getpid())) runs again and re-adopts the app")
        } else if let handover {
            logger.notice("re-executed in place (pid \(getpid())): supervisord \(handover.from) → \(SupervisorVersion.current); re-adopting the app")
        }
        do {
            // `rollback --emergency` finds this daemon's lock and journal through it.
            try DaemonLock.publish(stateDirectory: config.stateDirectory, controlSocket: config.control.socket)
        } catch {
            logger.warning("cannot write \(DaemonLock.pointerPath(controlSocket: config.control.socket)): \(error); `rollback --emergency` will look in the config's state_dir")
        }
        let driver = ProxyDrivers.make(for: config)
        let logger = self.logger
        // Like `--check`: a proxy config that does not route through the
        // upstream file would make every swap "succeed" into errors.
        switch await ProxyWiringCheck.run(config) {
        case .wired(let evidence): logger.info("proxy: \(evidence)")
        case .notWired(let problem): throw StartRefused(description: "proxy.config: \(problem); nothing was started")
        case .proxyFailed(let why): logger.error("proxy: \(why)")
        case .notChecked(let why): logger.warning("proxy: \(why)")
        case .notApplicable: break
        }
        let (previous, recovery) = Self.recover(config: config, journal: journal, logger: logger)
        recovery.prepare()
        await recovery.stopBeforeStart()
        let emergency = journal.emergencyRollback()
        if let emergency {
            logger.notice("an emergency rollback (\(emergency.id)) exchanged \(config.app.binary) and its .bak while no supervisor ran; once the app is adopted, traffic moves to the restored binary the way a rollback does")
        }
        // Sockets from systemd: the control socket (socket activation) and the
        // app's listening sockets (its socket unit, or our own FD store).
        let inherited = SystemdListenFDs.take()
        let controlFD = handover.map { $0.fd("control") ?? $0.fd("control-systemd") } ?? inherited.first { $0.name == "control" }?.fd
        let controlOwned = handover?.fd("control") != nil
        let appFDs = config.app.listen.isEmpty ? [] : handover.map(\.app) ?? inherited.filter { $0.name.hasPrefix("app") }.map(\.fd)
        let runAs: RunAs
        do {
            runAs = try RunAs.resolve(config)
        } catch {
            throw StartRefused(description: "\(error); nothing was started")
        }
        if let app = runAs.app { logger.info("the app runs as \(app)") }
        for warning in PrivilegeCheck(config, runAs: runAs, socketFromSystemd: controlFD != nil).warnings + StrategyCheck.warnings(config) {
            logger.warning("\(warning)")
        }
        let launch = AppLaunch(config: config, listenDescriptors: try AppLaunch.openListeners(config, inherited: appFDs), runAs: runAs)
        var start = recovery.start
        if start.adopting == nil, !launch.isHandoff {
            start.port = try StartPort.choose(preferred: start.port, ports: config.app.ports, logger: logger)
        }
        if launch.isHandoff {
            logger.info("socket handoff: holding \(config.app.listen.joined(separator: ", ")) for the app\(appFDs.isEmpty ? "" : handover != nil ? " (sockets from the previous image)" : " (sockets from systemd)")")
            if appFDs.isEmpty {
                for (index, fd) in launch.listenDescriptors.enumerated() { notifier.store(fd: fd, name: "app-\(index)") }
            }
        }
        // Carried across a re-exec: the lock (never released in between), and the
        // sockets below; the app's are the ones it accepts on.
        var carried = [ReexecHandover.Descriptor(name: "lock", fd: lockFD)]
        for (index, fd) in launch.listenDescriptors.enumerated() {
            carried.append(.init(name: "app-\(index)", fd: fd))
        }
        let supervisor = Supervisor(
            config: config, logger: logger, notifier: notifier, journal: journal, initialState: previous, launch: launch, driver: driver,
            emergency: emergency, configPath: configPath
        ) { port in
            // First start: make sure the proxy points at the instance we run,
            // then clean up whatever a previous supervisor left half done.
            do throws(SwapError) {
                try await driver.ensureUpstream(port: port) { message in logger.info("proxy: \(message)") }
            } catch {
                return "proxy: could not point \(driver.summary) at port \(port): \(error.message) [\(error.code)]"
            }
            // Instances recovery stops may still get requests from the proxy's previous config.
            await driver.awaitPreviousConfigRetired { message in logger.info("proxy: \(message)") }
            await recovery.finish()
            return nil
        }
        let api = ControlAPI(supervisor: supervisor, journal: journal, proxySummary: driver.summary)
        let server: ControlServer
        if let controlFD {
            server = try await ControlServer.adopt(
                fd: controlFD, path: config.control.socket, groupName: config.control.group, handler: api, logger: logger, ownsPath: controlOwned)
            if handover == nil { logger.info("control socket from systemd (socket activation)") }
        } else {
            server = try await ControlServer.bind(path: config.control.socket, groupName: config.control.group, handler: api, logger: logger)
        }
        logger.info("control socket ready", metadata: ["socket": "\(config.control.socket)"])
        carried.append(.init(name: server.ownsPath ? "control" : "control-systemd", fd: server.fd))
        if let failed = handover?.failed {
            await supervisor.reexecFailed("the new supervisord could not start: \(failed); the previous one runs again")
        }
        if let configPath {
            await supervisor.enableReexec(InPlaceReexec(arguments: handover?.arguments ?? CommandLine.arguments, configPath: configPath, carried: carried))
            SignalPolicy.onHangup { supervisor.hangup() }
        }
        supervisor.metrics.setDaemon(version: SupervisorVersion.current)

        var services: [any Service] = [
            WatchdogService(notifier: notifier),
            ControlService(server: server),
        ]
        if let address = config.metrics.listen {
            do {
                let metrics = try await MetricsServer.bind(address: address, logger: logger) { await supervisor.metricsText() }
                services.append(MetricsService(server: metrics))
                logger.info("metrics on http://\(address)/metrics")
            } catch let error as MetricsServer.BindError {
                // After a re-exec the control socket goes back to the previous image as it is.
                if handover == nil { server.close() }
                throw StartRefused(description: "\(error); nothing was started")
            }
        }
        services.append(AppService(supervisor: supervisor, logger: logger, start: start, history: journal.history()))
        let group = ServiceGroup(
            configuration: .init(
                // Should the control server or the watchdog end (an error), the group shuts down
                // gracefully: the app service finishes what runs and stops the app, never cancelled
                // under a swap. The app service ends last, once the app has stopped.
                // The metrics server is an extra: should it end, the service goes on without it.
                services: services.map { service in
                    if service is AppService { return .init(service: service) }
                    if service is MetricsService {
                        return .init(service: service, successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore)
                    }
                    return .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
                },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        // Started: a later failure is this image's own; the previous image is not run again,
        // and its file (held open for that) is let go.
        ReexecHandover.started.store(true, ordering: .releasing)
        if let previous = handover?.fd("previous") { close(previous) }
        try await group.run()
        logger.info("supervisor stopped")
    }
}

extension Daemon {
    /// What the journal says and how recovery reaches one version from it.
    static func recover(config: SupervisorConfig, journal: StateJournal, logger: Logger) -> (JournalState?, Recovery) {
        let previous = StateLoader.load(journal: journal, config: config, logger: logger)
        let recovery = Recovery(config: config, journal: journal, previous: previous, logger: logger)
        guard case .start = recovery.plan.instance, config.app.listen.isEmpty, previous?.swap == nil,
            config.app.ports.contains(where: { PortCheck.heldBy(port: $0) != nil })
        else { return (previous, recovery) }
        // Nothing to adopt by the journal, yet a port is held: the app itself (a journal lost, or
        // older than the process), found by what it runs, is adopted rather than fought.
        guard let found = StateLoader.findLiveInstance(config: config, logger: logger) else { return (previous, recovery) }
        return (found, Recovery(config: config, journal: journal, previous: found, logger: logger))
    }
}

struct StartError: Error, CustomStringConvertible {
    let description: String
}

/// A start refused for a reason a restart cannot fix (a user that does not
/// exist, an unsafe control socket directory): exit 2, which the unit does
/// not restart.
public struct StartRefused: Error, CustomStringConvertible {
    public let description: String
}

/// Serves the control socket until shutdown, then removes it.
struct ControlService: Service {
    let server: ControlServer

    func run() async throws {
        await withGracefulShutdownHandler {
            await server.run()
        } onGracefulShutdown: {
            server.close()
        }
        // The server ended on its own (the listener failed): an error, so the group stops
        // the app gracefully and supervisord exits non-zero (systemd restarts it).
        if !Task.isShuttingDownGracefully {
            throw StartError(description: "the control socket \(server.path) stopped serving")
        }
    }
}

/// Runs the supervisor (its effects), starts the app and, on shutdown,
/// lets a swap in progress finish, then stops the app (stop signal, then
/// SIGKILL) and returns.
struct AppService: Service {
    let supervisor: Supervisor
    let logger: Logger
    let start: (port: Int, adopting: Int32?, identity: BinaryIdentity?)
    let history: [HistoryEntry]

    func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await supervisor.runEffects() }
            await supervisor.start(port: start.port, adopting: start.adopting, adoptedIdentity: start.identity, history: history)
            try? await gracefulShutdown()
            logger.info("shutting down")
            await supervisor.shutdown()
        }
    }
}
