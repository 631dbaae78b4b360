import Prometheus
import SupervisorCore
import SupervisorShared
import Synchronization

/// The daemon's Prometheus metrics (swift-prometheus), served as text by
/// `GET /metrics` on the control socket and on `[metrics] listen`.
public final class SupervisorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let appRestarts: Counter
    private let appUp: Gauge
    private let appHealthy: Gauge
    private let phaseInfo = Mutex<(phase: String, gauge: Gauge)?>(nil)
    private let versionInfo = Mutex<Gauge?>(nil)
    static let buckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        .seconds(10), .seconds(30), .seconds(60),
    ]

    public init() {
        appRestarts = registry.makeCounter(
            descriptor: Self.name("app_restarts", "total", "Restarts of the app after it exited unexpectedly."))
        appUp = registry.makeGauge(descriptor: Self.name("app", "up", "1 while the app's process runs, else 0."))
        appHealthy = registry.makeGauge(
            descriptor: Self.name("app", "healthy", "1 while the app serves: running and past its health gate, no crash loop, no first start still waiting for the proxy; else 0."))
        // Create the series up front so scrapes see zeros before the first swap.
        for result in ["ok", "failed"] {
            _ = swapCounter(result: result)
            _ = restartCounter(result: result)
            for kind in ["manual", "auto", "emergency"] { _ = rollbackCounter(kind: kind, result: result) }
        }
    }

    private func swapCounter(result: String) -> Counter {
        registry.makeCounter(descriptor: Self.name("swaps", "total", "Swaps by result (rollbacks not included)."), labels: [("result", result)])
    }

    private func restartCounter(result: String) -> Counter {
        registry.makeCounter(descriptor: Self.name("zero_downtime_restarts", "total", "Restarts asked for with supervisorctl restart (through the swap's gates), by result; crashes are supervisor_app_restarts_total."), labels: [("result", result)])
    }

    private func rollbackCounter(kind: String, result: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.name("rollbacks", "total", "Rollbacks by kind (manual, auto, emergency) and result."),
            labels: [("kind", kind), ("result", result)])
    }

    private func durationHistogram(phase: String) -> DurationHistogram {
        registry.makeDurationHistogram(
            descriptor: Self.name("swap_duration", "seconds", "Time spent in each swap phase, and in the whole swap (phase=\"total\")."),
            labels: [("phase", phase)], buckets: Self.buckets)
    }

    public func recordSwap(_ result: SwapResult) {
        let outcome = result.ok ? "ok" : "failed"
        switch result.action {
        case .swap: swapCounter(result: outcome).increment()
        case .rollback: rollbackCounter(kind: "manual", result: outcome).increment()
        case .autoRollback: rollbackCounter(kind: "auto", result: outcome).increment()
        case .emergencyRollback: rollbackCounter(kind: "emergency", result: outcome).increment()
        case .restart: restartCounter(result: outcome).increment()
        }
        for (phase, milliseconds) in result.phasesMS {
            durationHistogram(phase: phase).record(.milliseconds(milliseconds))
        }
        durationHistogram(phase: "total").record(.milliseconds(result.totalMS))
    }

    public func appRestarted() { appRestarts.increment() }

    /// A SIGHUP whose re-exec did not happen (the new binary failed its check, the app was not steady).
    public func reexecRefused() {
        registry.makeCounter(
            descriptor: Self.name("reexecs_refused", "total", "In-place re-execs (SIGHUP) that did not happen; this supervisord went on. The log says why.")
        ).increment()
    }

    /// `supervisor_daemon_info{version} 1`: the supervisord that runs (a re-exec changes it).
    public func setDaemon(version: String) {
        registry.makeGauge(
            descriptor: Self.name("daemon", "info", "The running supervisord: always 1, labelled with its version."),
            labels: [("version", version)]
        ).set(to: 1.0)
    }

    /// An automatic rollback in the warm hold that did not happen because it would cross a schema change.
    public func autoRollbackWithheld() {
        registry.makeCounter(
            descriptor: Self.name("auto_rollbacks_withheld", "total", "Automatic rollbacks in the warm hold not done because they would cross a schema change ([health] schema_field)."),
            labels: [("reason", "schema_changed")]
        ).increment()
    }

    /// `supervisor_version_info{version,sha256} 1` for the serving binary.
    public func setServing(version: String?, sha256: String?) {
        versionInfo.withLock { gauge in
            if let gauge { registry.unregisterGauge(gauge) }
            let new = registry.makeGauge(
                descriptor: Self.name("version", "info", "The serving binary: always 1, labelled with its version and sha256."),
                labels: [("version", version ?? "unknown"), ("sha256", sha256 ?? "unknown")])
            new.set(to: 1.0)
            gauge = new
        }
    }

    /// The gauges that describe the present (up, healthy, phase), from a status report.
    public func observe(_ report: StatusReport) {
        appUp.set(to: report.pid == nil ? 0 : 1)
        appHealthy.set(to: report.serving == true ? 1 : 0)
        phaseInfo.withLock { current in
            if current?.phase == report.phase { return }
            if let gauge = current?.gauge { registry.unregisterGauge(gauge) }
            let gauge = registry.makeGauge(
                descriptor: Self.name("phase", "info", "The supervisor's phase (as `supervisorctl status` shows it): always 1, labelled with it."),
                labels: [("phase", report.phase)])
            gauge.set(to: 1)
            current = (report.phase, gauge)
        }
    }

    public func text() -> String { registry.emitToString() }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "supervisor", metricName: metric, unitName: unit, helpText: help)
    }
}
