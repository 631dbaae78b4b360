import Foundation
import SupervisorCore
import SupervisorShared
import SystemBindings

/// `kind = "caddy-api"`: Caddy runs from JSON config; the upstream object
/// carrying `"@id": upstream_id` is changed in place with
/// `PATCH /id/<upstream_id>/dial`, then confirmed with a `GET` of that object
/// and of `/reverse_proxy/upstreams`. Caddy applies the change before it
/// answers, like a reload. Changes made through the API survive a Caddy
/// restart only when Caddy runs with `caddy run --resume`.
public struct CaddyAPIDriver: ProxyDriver {
    let admin: AdminEndpoint
    let upstreamID: String
    let template: String
    let confirmTimeout: Duration

    public init(config: SupervisorConfig) {
        admin = AdminEndpoint(config.proxy.admin ?? "http://127.0.0.1:2019")
        upstreamID = config.proxy.upstreamID ?? ""
        template = config.proxy.upstreamTemplate
        confirmTimeout = max(config.drain.timeout, .seconds(2))
    }

    public var summary: String { "caddy-api (\(admin.display), @id \(upstreamID))" }

    func dial(port: Int) -> String { Placeholders.substitute(template, ["port": String(port)]) }

    /// No fallback: the object with the `@id` holds one dial.
    public func switchUpstream(to port: Int, fallback: Int?, log: @Sendable (String) -> Void) async throws(SwapError) {
        let previous: String
        switch await currentDial() {
        case .success(let value): previous = value
        case .failure(let error): throw error
        }
        let target = dial(port: port)
        if let problem = await patchDial(target) {
            // Caddy applies a PATCH atomically: a refused one changed nothing.
            throw SwapError(.proxyReloadFailed, "caddy refused the change of @id \(upstreamID) to \(target): \(problem)")
        }
        log("PATCH \(admin.display)/id/\(upstreamID)/dial \(target)")
        if let problem = await confirm(target) {
            let restored = await patchDial(previous) == nil
            throw SwapError(.proxyNotConfirmed, "caddy did not confirm \(target): \(problem); \(restored ? "dial restored to \(previous)" : "restoring \(previous) failed too")")
        }
        log("caddy routes to \(target) (confirmed by GET /id/\(upstreamID) and /reverse_proxy/upstreams)")
    }

    public func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
        if case .success(let value) = await currentDial(), value == dial(port: port) {
            log("caddy already routes to \(value)")
            return
        }
        try await switchUpstream(to: port, log: log)
    }

    func currentDial() async -> Result<String, SwapError> {
        switch await send(admin.request(path: "/id/\(upstreamID)/dial", timeout: .seconds(5))) {
        case .success(let response) where response.status == 200:
            guard let value = try? JSONDecoder().decode(String.self, from: Data(response.body)) else {
                return .failure(SwapError(.proxyNotConfirmed, "@id \(upstreamID) has no string \"dial\": \(response.bodyText.prefix(200))"))
            }
            return .success(value)
        case .success(let response):
            return .failure(SwapError(.proxyReloadFailed, "caddy has no object with @id \"\(upstreamID)\" (GET /id/\(upstreamID)/dial: HTTP \(response.status) \(response.bodyText.prefix(200)))"))
        case .failure(let error):
            return .failure(SwapError(.proxyReloadFailed, "caddy's admin API \(admin.display) is unreachable: \(error.message)"))
        }
    }

    /// Nil on success, else the problem.
    func patchDial(_ value: String) async -> String? {
        let body = (try? JSONEncoder().encode(value)).map(Array.init) ?? []
        switch await send(admin.request(path: "/id/\(upstreamID)/dial", method: "PATCH", body: body, timeout: .seconds(30))) {
        case .success(let response) where (200..<300).contains(response.status):
            return nil
        case .success(let response):
            return "HTTP \(response.status): \(response.bodyText.prefix(300))"
        case .failure(let error):
            return "admin API unreachable: \(error.message)"
        }
    }

    func confirm(_ target: String) async -> String? {
        let deadline = ContinuousClock.now + confirmTimeout
        var problem = "no answer"
        while ContinuousClock.now < deadline {
            if case .success(let value) = await currentDial(), value == target,
                case .success(let response) = await send(admin.request(path: "/reverse_proxy/upstreams", timeout: .seconds(2))),
                CaddyFileDriver.upstreamAddresses(response.body).contains(target)
            {
                return nil
            }
            problem = "the admin API does not list \(target) yet"
            try? await Task.sleep(for: .milliseconds(20))
        }
        return problem
    }

    private func send(_ request: HTTPRequest) async -> Result<HTTPResponse, HTTPTransportError> {
        await request.performed()
    }
}
