import Logging
import ServiceLifecycle
import SupervisorCore
import SystemBindings

/// The supervisor daemon: binds the control socket, starts and supervises the
/// app, and on SIGTERM/SIGINT stops the app and exits.
public struct Daemon: Sendable {
    public let config: SupervisorConfig
    let logger: Logger
    let notifier: Notifier

    public init(config: SupervisorConfig, logger: Logger, notifier: Notifier = Notifier()) {
        self.config = config
        self.logger = logger
        self.notifier = notifier
    }

    /// Runs until a shutdown signal. Throws only when it cannot start.
    public func run() async throws {
        let runtime = AppRuntime(config: config, logger: logger, notifier: notifier)
        let server = try await ControlServer.bind(
            path: config.control.socket, groupName: config.control.group,
            handler: ControlAPI(runtime: runtime), logger: logger)
        logger.info("control socket ready", metadata: ["socket": "\(config.control.socket)"])

        let services: [any Service] = [
            WatchdogService(notifier: notifier),
            ControlService(server: server),
            AppService(runtime: runtime, notifier: notifier, logger: logger),
        ]
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
        logger.info("supervisor stopped")
    }
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
    }
}

/// Starts the app and, on shutdown, stops it (stop signal, then SIGKILL).
struct AppService: Service {
    let runtime: AppRuntime
    let notifier: Notifier
    let logger: Logger

    func run() async throws {
        await runtime.start()
        try? await gracefulShutdown()
        notifier.stopping(status: "stopping app")
        logger.info("shutting down")
        await runtime.stop()
    }
}
