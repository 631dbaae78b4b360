import ServiceLifecycle
import SystemBindings

/// Sends `WATCHDOG=1` at half of `WATCHDOG_USEC` from the daemon's own loop,
/// so a hung supervisor gets restarted by systemd. Idle when no watchdog is set.
struct WatchdogService: Service {
    let notifier: Notifier

    func run() async throws {
        guard let interval = notifier.watchdogPingInterval() else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            notifier.watchdog()
            try? await Task.sleep(for: interval)
        }
    }
}
