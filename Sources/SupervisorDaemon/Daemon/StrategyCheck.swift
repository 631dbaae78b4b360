import SupervisorCore
import SupervisorShared

/// What `--check` and the daemon's start say about `[app] strategy =
/// "stop-start"` (warnings: the swap still works, but requests may fail or
/// a setting has no effect). nginx in front of a proxy-mode app is refused
/// by the config itself (`ConfigDecoder`).
public enum StrategyCheck {
    public static func warnings(_ config: SupervisorConfig) -> [String] {
        guard config.app.strategy == .stopStart else { return [] }
        var warnings: [String] = []
        if config.health.watch > .zero {
            warnings.append("health.watch: has no effect with app.strategy = \"stop-start\": the old instance stops before the new one starts, so nothing stays warm to flip back to (a rollback is a stop-start too)")
        }
        switch config.proxy.kind {
        case .caddy:
            let caddyfile = config.proxy.config.flatMap { AtomicFile.read($0) }
            guard let caddyfile else { break }
            let needed = config.health.startTimeout
            guard let value = ProxyConfigText.firstValue(of: "lb_try_duration", in: caddyfile) else {
                warnings.append("proxy.config: no lb_try_duration in \(config.proxy.config ?? "the Caddyfile"): with app.strategy = \"stop-start\", Caddy fails every request that arrives while no instance runs; add `lb_try_duration \(needed.humanReadable)` (at least [health] start_timeout) and `lb_try_interval 50ms` to the reverse_proxy block")
                break
            }
            if case .success(let duration) = DurationParser.parse(value), duration < needed {
                warnings.append("proxy.config: lb_try_duration \(value) is shorter than [health] start_timeout (\(needed.humanReadable)): with app.strategy = \"stop-start\", a request that arrives while the new instance starts fails once it has waited \(value)")
            }
        case .caddyAPI:
            warnings.append("proxy.kind: with \"caddy-api\" and app.strategy = \"stop-start\", requests wait only if the reverse_proxy handler in Caddy's config has load_balancing.try_duration (at least [health] start_timeout); --check cannot see it")
        case .none where config.app.listen.isEmpty:
            warnings.append("app.strategy: \"stop-start\" without [app] listen or a proxy: connections are refused while no instance runs; use [app] listen (socket handoff), where they wait in the socket's backlog")
        case .none, .nginx:
            break
        }
        return warnings
    }
}
