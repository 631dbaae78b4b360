#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import SupervisorShared
import SystemBindings

/// `kind = "caddy"`: the Caddyfile imports the upstream file inside
/// `reverse_proxy { … }`. A switch writes the file, has Caddy load the
/// Caddyfile, and confirms with `GET /reverse_proxy/upstreams`.
///
/// Unless `[proxy] validate` or `reload` overrides it, the load is one POST of
/// the Caddyfile to the admin API's `/load` (`Content-Type: text/caddyfile`):
/// Caddy adapts, validates and applies it atomically and keeps the config it
/// runs when it refuses one, which is what `caddy validate` plus `caddy reload`
/// do with two processes. A Caddyfile that imports a relative path goes through
/// those commands instead: Caddy resolves a posted Caddyfile's relative imports
/// against its own working directory, the CLI against the file's.
public struct CaddyFileDriver: ProxyDriver {
    let upstream: UpstreamFile
    let configPath: String
    let admin: AdminEndpoint
    let commands: ProxyCommands
    /// Neither `[proxy] validate` nor `reload` is set: switches POST the Caddyfile to `/load`.
    let loadsThroughAdmin: Bool
    /// The Caddyfile's `lb_try_interval` (Caddy's default 250ms): how soon Caddy retries a failed request.
    let retryInterval: Duration
    let confirmTimeout: Duration

    var validateCommand: [String] { commands.validate }
    var reloadCommand: [String] { commands.reload }

    public init(config: SupervisorConfig) {
        let proxy = config.proxy
        configPath = proxy.config ?? ""
        retryInterval = AtomicFile.read(configPath).flatMap { Self.tryInterval(in: $0) } ?? .milliseconds(250)
        // One failure keeps NEW out of Caddy's choice until a switch back would be
        // done (`fallbackTakeover` plus the reload), so nothing is retrying when
        // Caddy reloads, and not much longer: a fallback left in the running config
        // after the old instance stopped makes a later crash cost that long at most.
        upstream = UpstreamFile(
            path: proxy.upstreamFile ?? "", template: proxy.upstreamTemplate,
            fallbackStyle: .caddyFirst(failDuration: retryInterval * 2 + .milliseconds(200)))
        admin = AdminEndpoint(proxy.admin ?? "http://127.0.0.1:2019")
        let adapter = Self.needsAdapterFlag(configPath) ? ["--adapter", "caddyfile"] : []
        let values = ["config": configPath, "admin": admin.caddyAddressFlag]
        commands = ProxyCommands(
            validate: (proxy.validate ?? ["caddy", "validate", "--config", "{config}"] + adapter)
                .map { Placeholders.substitute($0, values) },
            reload: (proxy.reload ?? ["caddy", "reload", "--config", "{config}", "--address", "{admin}"] + adapter)
                .map { Placeholders.substitute($0, values) })
        loadsThroughAdmin = proxy.validate == nil && proxy.reload == nil
        confirmTimeout = max(config.drain.timeout, .seconds(2))
    }

    public var summary: String { "caddy (\(configPath), upstream file \(upstream.path))" }

    /// Caddy picks the Caddyfile adapter by itself only for names starting with "Caddyfile".
    static func needsAdapterFlag(_ path: String) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return !name.hasPrefix("Caddyfile")
    }

    public func switchUpstream(to port: Int, fallback: Int?, log: @Sendable (String) -> Void) async throws(SwapError) {
        let change: FileSwitch
        if loadsThroughAdmin, let caddyfile = AtomicFile.read(configPath), Self.relativeImports(in: caddyfile).isEmpty {
            change = FileSwitch(proxyName: "caddy", upstream: upstream, validate: nil, reload: load(caddyfile))
        } else {
            change = FileSwitch(proxyName: "caddy", upstream: upstream, validate: commands.validate, reload: .command(commands.reload))
        }
        try await change.perform(port: port, fallback: fallback, log: log, prepare: {}, confirm: { _, gone in await self.confirm(port: port, gone: gone) })
        log("caddy routes to 127.0.0.1:\(port) (confirmed by \(admin.display)/reverse_proxy/upstreams)")
    }

    public func ensureUpstream(port: Int, log: @Sendable (String) -> Void) async throws(SwapError) {
        // Caddy already running the file's address is left alone: a reload resets a few of
        // its client connections (Caddy 2.6), and a supervisor restarted under load must not
        // cost a request. A Caddy that runs something else than the file (a supervisor that
        // died between writing and loading) is switched. A fallback the running config still
        // names after the old instance stopped stays until the next switch (see `dropFallback`).
        if upstream.routes(to: port), await confirm(port: port, timeout: .milliseconds(500)) == nil {
            log("caddy already routes to 127.0.0.1:\(port)")
            upstream.dropFallback(port: port, log: log)
            return
        }
        try await switchUpstream(to: port, log: log)
    }

    public func dropFallback(port: Int, log: @Sendable (String) -> Void) {
        upstream.dropFallback(port: port, log: log)
    }

    public func fallbackTakeover(primary: Int) -> Duration {
        guard let text = upstream.current().map({ String(decoding: $0, as: UTF8.self) }),
            upstream.fallbackPort(in: text, primary: primary) != nil
        else { return .zero }
        return retryInterval + .milliseconds(50)
    }

    /// The first `lb_try_interval` of a Caddyfile (Caddy's default is 250ms).
    static func tryInterval(in caddyfile: [UInt8]) -> Duration? {
        guard let value = ProxyConfigText.firstValue(of: "lb_try_interval", in: caddyfile),
            case .success(let interval) = DurationParser.parse(value)
        else { return nil }
        return min(interval, .seconds(5))
    }

    /// One POST of the Caddyfile to the admin API's `/load`: Caddy adapts,
    /// validates and applies it, and answers once the new config runs.
    func load(_ caddyfile: [UInt8]) -> ProxyReload {
        let admin = self.admin, configPath = self.configPath
        return ProxyReload(
            description: { "POST \(admin.display)/load (\(configPath) as text/caddyfile)" },
            apply: {
                let request = admin.request(path: "/load", method: "POST", body: caddyfile, contentType: "text/caddyfile", timeout: .seconds(30))
                switch await request.performed() {
                case .success(let response): return Self.loadOutcome(status: response.status, body: response.bodyText)
                case .failure(let error): return .failed("caddy's admin API \(admin.display) is unreachable: \(error.message)")
                }
            })
    }

    /// What an answer of `/load` means: 2xx applied; 400 is Caddy's answer to a
    /// config it cannot adapt or load (it keeps the one it runs); anything else
    /// (401/403 of origin enforcement, 404 of something that is not Caddy) is
    /// not about the config.
    static func loadOutcome(status: Int, body: String) -> ProxyReload.Outcome {
        let said = "POST /load: HTTP \(status): \(UntrustedText.escaped(String(body.prefix(400))))"
        switch status {
        case 200..<300: return .applied
        case 400: return .rejected(said)
        default: return .failed(said)
        }
    }

    /// The arguments of top-level `import` lines that name a relative path
    /// (not a snippet the file defines, not an absolute path).
    static func relativeImports(in caddyfile: [UInt8]) -> [String] {
        var snippets: Set<String> = []
        var imports: [String] = []
        for words in ProxyConfigText.lines(caddyfile) {
            guard let first = words.first else { continue }
            if first.hasPrefix("("), first.hasSuffix(")") { snippets.insert(String(first.dropFirst().dropLast())) }
            if first == "import", words.count >= 2 { imports.append(String(words[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\"`"))) }
        }
        return imports.filter { !$0.hasPrefix("/") && !snippets.contains($0) }
    }

    /// Nil when the admin API lists the address and none of the `gone` ports
    /// (what the previous file named and this one does not: a switch back must
    /// not be confirmed by an address Caddy still lists as a fallback); else what was wrong.
    func confirm(port: Int, gone: [Int] = [], timeout: Duration? = nil) async -> String? {
        let address = "127.0.0.1:\(port)"
        let goneAddresses = Set(gone.map { "127.0.0.1:\($0)" })
        let deadline = ContinuousClock.now + (timeout ?? confirmTimeout)
        var problem = "no answer"
        while ContinuousClock.now < deadline {
            let request = admin.request(path: "/reverse_proxy/upstreams", timeout: .seconds(2))
            let outcome = await request.performed()
            switch outcome {
            case .success(let response) where response.status == 200:
                let upstreams = Self.upstreams(response.body)
                let listed = Set(upstreams.map(\.address))
                // A gone address still listed with requests in flight may be Caddy 2.11.2+ finishing
                // them: only an idle one shows the old config runs.
                let lingering = Set(upstreams.filter { !$0.busy }.map(\.address)).intersection(goneAddresses)
                if listed.contains(address) && lingering.isEmpty { return nil }
                problem = lingering.isEmpty ? "admin API lists \(listed.sorted()), not \(address)" : "admin API still lists \(lingering.sorted()), which the new config does not name"
            case .success(let response):
                problem = "admin API answered HTTP \(response.status): \(response.bodyText.prefix(200))"
            case .failure(let error):
                problem = "admin API \(admin.display) unreachable: \(error.message)"
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return problem
    }

    /// What `GET /reverse_proxy/upstreams` lists: each address and whether
    /// requests to it are in flight (`num_requests`; Caddy 2.11.2 and later
    /// also list an address that left the config while it has some).
    static func upstreams(_ body: [UInt8]) -> [(address: String, busy: Bool)] {
        struct Upstream: Decodable {
            let address: String
            let num_requests: Int?
        }
        let list = (try? JSONDecoder().decode([Upstream].self, from: Data(body))) ?? []
        return list.map { ($0.address, ($0.num_requests ?? 0) > 0) }
    }

    static func upstreamAddresses(_ body: [UInt8]) -> Set<String> { Set(upstreams(body).map(\.address)) }
}

/// Caddy's admin endpoint: `http://host:port` or `unix//path`.
public struct AdminEndpoint: Sendable, Equatable {
    public let raw: String
    public init(_ raw: String) { self.raw = raw }

    public var unixSocketPath: String? {
        raw.hasPrefix("unix//") ? String(raw.dropFirst("unix/".count)) : nil
    }

    /// What `caddy reload --address` takes.
    public var caddyAddressFlag: String {
        if unixSocketPath != nil { return raw }
        var text = raw
        for scheme in ["http://", "https://"] where text.hasPrefix(scheme) { text.removeFirst(scheme.count) }
        while text.hasSuffix("/") { text.removeLast() }
        return text
    }

    public var display: String { raw }

    public func request(path: String, method: String = "GET", body: [UInt8]? = nil, contentType: String = "application/json", timeout: Duration) -> HTTPRequest {
        var headers: [String] = []
        if body != nil { headers.append("Content-Type: \(contentType)") }
        if let socket = unixSocketPath {
            // Caddy 2.6 checks the Host of requests on its unix admin socket: send it empty.
            headers.append("Host;")
            return HTTPRequest(method: method, url: "http://localhost\(path)", unixSocketPath: socket, headers: headers, body: body, timeout: timeout, connectTimeout: .seconds(2))
        }
        var base = raw
        while base.hasSuffix("/") { base.removeLast() }
        return HTTPRequest(method: method, url: base + path, headers: headers, body: body, timeout: timeout, connectTimeout: .seconds(2))
    }
}
