import SupervisorCore
import SupervisorShared

/// Points the proxy in front of the app at one instance's port.
///
/// Every driver (Caddy file, Caddy admin API, nginx, none) implements this:
/// adding a proxy is one file plus its run of the conformance tests.
public protocol ProxyDriver: Sendable {
    /// `caddy (Caddyfile /etc/caddy/Caddyfile)` and the like, for logs and status.
    var summary: String { get }

    /// Routes traffic to `127.0.0.1:port` and confirms the proxy runs it.
    /// With `fallback`, the instance on that port (still alive: the one the
    /// switch moves away from) is the proxy's second choice where the proxy
    /// can have one. On any failure the previous upstream is restored (and
    /// reloaded) before this throws: the old instance never stopped serving.
    func switchUpstream(to port: Int, fallback: Int?, log: @Sendable (String) -> Void) async throws(SwapError)

    /// The fallback's instance is gone: route to `port` alone from the next reload on.
    func dropFallback(port: Int, log: @Sendable (String) -> Void)

    /// Returns once what the proxy ran before the last switch sends no new
    /// request anywhere (nginx's previous workers have exited). A switch is
    /// confirmed as soon as the new config serves; a command that returns
    /// while the old instance still listens (the warm hold) waits for this
    /// first, so a request sent after it returns reaches the new version.
    func awaitPreviousConfigRetired(log: @Sendable (String) -> Void) async

    /// After the instance on `primary` died with a fallback behind it: how
    /// long the proxy may still hold requests it will retry on the fallback.
    /// Switching back reloads the proxy, and Caddy's reload fails the retries
    /// it cancels; once its `lb_try_interval` has passed they are answered.
    func fallbackTakeover(primary: Int) -> Duration

    /// At boot: routes to `port` if the proxy does not already (no reload when it does).
    func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError)
}

extension ProxyDriver {
    /// A switch with no fallback (back to an instance whose alternative is being stopped).
    public func switchUpstream(to port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
        try await switchUpstream(to: port, fallback: nil, log: log)
    }

    public func dropFallback(port: Int, log: @Sendable (String) -> Void) {}

    /// Caddy applies a config atomically: nothing of the previous one accepts afterwards.
    public func awaitPreviousConfigRetired(log: @Sendable (String) -> Void) async {}

    /// nginx passes a failed request on at once, and its reload lets old workers finish it.
    public func fallbackTakeover(primary: Int) -> Duration { .zero }
}

public enum ProxyDrivers {
    public static func make(for config: SupervisorConfig) -> any ProxyDriver {
        switch config.proxy.kind {
        case .caddy: CaddyFileDriver(config: config)
        case .caddyAPI: CaddyAPIDriver(config: config)
        case .nginx: NginxDriver(config: config)
        case .none: NoProxyDriver()
        }
    }
}

/// `kind = "none"`: nothing in front to reload.
public struct NoProxyDriver: ProxyDriver {
    public var summary: String { "none" }
    public func switchUpstream(to port: Int, fallback: Int?, log: @Sendable (String) -> Void) async throws(SwapError) {
        log("no proxy to switch (proxy kind \"none\")")
    }
    public func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {}
}
