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
    /// On any failure the previous upstream is restored (and reloaded)
    /// before this throws: the old instance never stopped serving.
    func switchUpstream(to port: Int, log: @Sendable (String) -> Void) async throws(SwapError)

    /// At boot: routes to `port` if the proxy does not already (no reload when it does).
    func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError)
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
    public func switchUpstream(to port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
        log("no proxy to switch (proxy kind \"none\")")
    }
    public func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {}
}
