/// Turns a parsed TOML document into a `SupervisorConfig`, or every problem in it.
public enum ConfigDecoder {
    /// - Parameter environment: the process environment; `STATE_DIRECTORY`
    ///   (set by systemd's `StateDirectory=`) wins over the default state dir.
    public static func decode(
        _ document: [String: ConfigValue], environment: [String: String] = [:]
    ) -> Result<SupervisorConfig, ConfigProblems> {
        decode(document, environment: environment, collector: ProblemCollector())
    }

    /// Every key the decoder knows (`name`, `app.binary`, `health.expect_json` …):
    /// what docs/configuration.md must describe.
    public static var knownKeys: Set<String> {
        let collector = ProblemCollector()
        _ = decode([:], environment: [:], collector: collector)
        return collector.keysRead
    }

    static func decode(
        _ document: [String: ConfigValue], environment: [String: String], collector: ProblemCollector
    ) -> Result<SupervisorConfig, ConfigProblems> {
        var root = ConfigReader(prefix: "", table: document, collector: collector)

        let name = decodeName(&root)
        let stateDirectory = decodeStateDirectory(&root, name: name, environment: environment)
        var appReader = root.section("app")
        var healthReader = root.section("health")
        var proxyReader = root.section("proxy")
        var hooksReader = root.section("hooks")
        var drainReader = root.section("drain")
        var controlReader = root.section("control")
        var metricsReader = root.section("metrics")

        let proxy = decodeProxy(&proxyReader)
        let app = decodeApp(&appReader, proxyKind: proxy.kind)
        let health = decodeHealth(&healthReader)
        let hooks = decodeHooks(&hooksReader)
        let drain = DrainConfig(timeout: drainReader.duration("timeout", default: .seconds(5)))
        let control = decodeControl(&controlReader, name: name)
        let metricsListen = metricsReader.string("listen")
        if let metricsListen {
            if !isNumericTCPAddress(metricsListen) {
                metricsReader.problem("listen", "\"\(metricsListen)\" is not a numeric TCP address such as \"127.0.0.1:9101\" or \"[::1]:9101\" (no host names)")
            } else if let port = metricsListen.split(separator: ":").last.flatMap({ Int($0) }), app.ports.contains(port) {
                metricsReader.problem("listen", "port \(port) is one of [app] ports, which the app's instances take in turn")
            }
        }

        if !app.listen.isEmpty && health.mode != .notify {
            // Handoff children share one socket: an HTTP probe cannot tell old from new.
            healthReader.problem("mode", "must be \"notify\" in socket-handoff mode (app.listen is set)")
        }

        for reader in [root, appReader, healthReader, proxyReader, hooksReader, drainReader, controlReader, metricsReader] {
            reader.reportUnknownKeys()
        }

        if !collector.problems.isEmpty {
            return .failure(ConfigProblems(collector.problems))
        }
        return .success(
            SupervisorConfig(
                name: name, stateDirectory: stateDirectory, app: app, health: health,
                proxy: proxy, hooks: hooks, drain: drain, control: control, metrics: MetricsConfig(listen: metricsListen)))
    }

    private static func decodeName(_ root: inout ConfigReader) -> String {
        guard let name = root.string("name", required: true) else { return "app" }
        let allowed = name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.@".contains($0)) }
        if name.isEmpty || !allowed || name.hasPrefix(".") {
            root.problem("name", "must be letters, digits, \"-\", \"_\", \".\" or \"@\" (it names the socket and state directory), got \"\(name)\"")
            return "app"
        }
        return name
    }

    private static func decodeStateDirectory(
        _ root: inout ConfigReader, name: String, environment: [String: String]
    ) -> String {
        let configured = root.absolutePath("state_dir")
        if let fromSystemd = environment["STATE_DIRECTORY"]?.split(separator: ":").first, !fromSystemd.isEmpty {
            return String(fromSystemd)
        }
        return configured ?? "/var/lib/supervisor/\(name)"
    }

    private static func decodeApp(_ app: inout ConfigReader, proxyKind: ProxyKind) -> AppConfig {
        let binary = app.absolutePath("binary", required: true) ?? ""
        let args = app.stringArray("args") ?? []
        let env = app.stringTable("env")
        let workingDirectory = app.absolutePath("working_directory")
        let listen = app.stringArray("listen") ?? []

        for (index, arg) in args.enumerated() {
            for placeholder in Placeholders.names(in: arg) where placeholder != "port" {
                app.problem("args[\(index)]", "unknown placeholder {\(placeholder)}; the only one is {port}")
            }
        }
        for key in env.keys where key.isEmpty || key.contains("=") {
            app.problem("env", "\"\(key)\" is not a valid environment variable name")
        }

        var ports: [Int] = []
        if listen.isEmpty {
            ports = decodePorts(&app)
        } else {
            _ = app.has("ports")
            if proxyKind != .none {
                app.problem("listen", "socket-handoff mode needs proxy.kind = \"none\" (the supervisor holds the socket; a proxy in front is yours to point at it), got \"\(proxyKind.rawValue)\"")
            }
            for (index, address) in listen.enumerated() where !isListenAddress(address) {
                app.problem("listen[\(index)]", "\"\(address)\" is not an address such as \"0.0.0.0:8080\", \"[::]:8080\" or \"/run/app.sock\"")
            }
            for (index, arg) in args.enumerated() where arg.contains("{port}") {
                app.problem("args[\(index)]", "{port} has no meaning in socket-handoff mode (app.listen is set)")
            }
        }

        var stopSignal = StopSignal.sigterm
        if let name = app.string("stop_signal") {
            if let signal = StopSignal(name: name) {
                stopSignal = signal
            } else {
                app.problem("stop_signal", "\"\(name)\" is not a signal; use one of \(StopSignal.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        let stopTimeout = app.duration("stop_timeout", default: .seconds(30))
        let preflight = app.commandList("preflight")
        let versionCommand = app.command("version_command")
        for (index, command) in preflight.enumerated() {
            checkPlaceholders(command, allowed: ["binary"], key: "preflight[\(index)]", in: app)
        }
        if let versionCommand {
            checkPlaceholders(versionCommand, allowed: ["binary"], key: "version_command", in: app)
        }

        let user = app.string("user")
        let group = app.string("group")
        if user?.isEmpty == true { app.problem("user", "must not be empty; leave it out to run the app as root") }
        if group?.isEmpty == true { app.problem("group", "must not be empty; leave it out for the user's primary group") }
        if group != nil && user == nil {
            app.problem("group", "is set without user; set user too (a group alone would still run the app as root)")
        }

        var strategy = SwapStrategy.overlap
        if let text = app.string("strategy") {
            if let parsed = SwapStrategy(rawValue: text) {
                strategy = parsed
            } else {
                app.problem("strategy", "must be \"overlap\" or \"stop-start\", got \"\(text)\"")
            }
        }
        if strategy == .stopStart && proxyKind == .nginx {
            app.problem(
                "strategy",
                "\"stop-start\" cannot run behind proxy.kind = \"nginx\": while no instance runs, nginx answers 502 at once (it cannot hold a request); use socket handoff instead ([app] listen = [\"127.0.0.1:8080\"] with proxy.kind = \"none\", and nginx proxying to that address), where requests wait on the supervisor's socket")
        }

        return AppConfig(
            binary: binary, args: args, env: env, workingDirectory: workingDirectory, ports: ports,
            stopSignal: stopSignal, stopTimeout: stopTimeout, preflight: preflight,
            versionCommand: versionCommand, listen: listen, user: user, group: group, strategy: strategy,
            keepReleases: app.integer("keep_releases", default: 5, range: 1...100))
    }

    private static func decodePorts(_ app: inout ConfigReader) -> [Int] {
        guard app.has("ports") else {
            app.problem("ports", "is required: two side ports the app alternates between, such as [8081, 8082]")
            return []
        }
        guard case .array(let items)? = app.table["ports"] else {
            app.problem("ports", "must be an array of two port numbers, such as [8081, 8082]")
            return []
        }
        var ports: [Int] = []
        for (index, item) in items.enumerated() {
            guard case .integer(let port) = item else {
                app.problem("ports[\(index)]", "must be an integer port number, not \(item.typeName)")
                continue
            }
            guard (1...65535).contains(port) else {
                app.problem("ports[\(index)]", "must be between 1 and 65535, got \(port)")
                continue
            }
            ports.append(port)
        }
        if items.count != 2 {
            app.problem("ports", "must list exactly two ports (the live one and the side one), got \(items.count)")
        } else if ports.count == 2 && ports[0] == ports[1] {
            app.problem("ports", "the two ports must differ, got \(ports[0]) twice")
        }
        return ports
    }

    private static func decodeHealth(_ health: inout ConfigReader) -> HealthConfig {
        var mode = HealthMode.http
        if let text = health.string("mode") {
            if let parsed = HealthMode(rawValue: text) {
                mode = parsed
            } else {
                health.problem("mode", "must be \"http\" or \"notify\", got \"\(text)\"")
            }
        }
        var path = health.string("path") ?? "/health"
        if !path.hasPrefix("/") {
            health.problem("path", "must start with \"/\", got \"\(path)\"")
            path = "/health"
        }
        return HealthConfig(
            mode: mode,
            path: path,
            interval: health.duration("interval", default: .milliseconds(100)),
            timeout: health.duration("timeout", default: .seconds(1)),
            startTimeout: health.duration("start_timeout", default: .seconds(30)),
            healthyAfter: health.integer("healthy_after", default: 2, range: 1...1000),
            watch: health.duration("watch", default: .zero, allowZero: true),
            expectBody: health.string("expect_body"),
            expectJSON: health.stringTable("expect_json", scalars: true),
            healthyInterval: health.duration("healthy_interval", default: .zero, allowZero: true),
            schemaField: nonEmpty(health.string("schema_field"), key: "schema_field", in: &health, unset: "leave it out when the health answer names no schema"))
    }

    private static func decodeProxy(_ proxy: inout ConfigReader) -> ProxyConfig {
        var kind = ProxyKind.none
        if let text = proxy.string("kind") {
            if let parsed = ProxyKind(rawValue: text) {
                kind = parsed
            } else {
                proxy.problem("kind", "must be one of \(ProxyKind.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), got \"\(text)\"")
            }
        }
        let upstreamFile = proxy.absolutePath("upstream_file")
        let config = proxy.absolutePath("config")
        let template = proxy.string("upstream_template") ?? defaultUpstreamTemplate(kind)
        let validate = proxy.command("validate")
        let reload = proxy.command("reload")
        let admin = proxy.string("admin")
        let upstreamID = proxy.string("upstream_id")
        let pidFile = proxy.absolutePath("pid_file")
        let checkURL = proxy.string("check_url")
        if let checkURL {
            if !(checkURL.hasPrefix("http://") || checkURL.hasPrefix("https://")) {
                proxy.problem("check_url", "must be an http:// or https:// URL served through the proxy, got \"\(checkURL)\"")
            } else if kind == .none {
                proxy.problem("check_url", "needs a proxy (kind \"caddy\", \"caddy-api\" or \"nginx\"): it is requested through the proxy after each switch")
            }
        }

        switch kind {
        case .caddy, .nginx:
            if upstreamFile == nil && proxy.table["upstream_file"] == nil {
                proxy.problem("upstream_file", "is required with kind \"\(kind.rawValue)\": the file the supervisor owns and your proxy config imports")
            }
            if kind == .caddy && config == nil && proxy.table["config"] == nil {
                proxy.problem("config", "is required with kind \"caddy\": the Caddyfile to validate and reload")
            }
        case .caddyAPI:
            if upstreamID == nil && proxy.table["upstream_id"] == nil {
                proxy.problem("upstream_id", "is required with kind \"caddy-api\": the @id of the upstream object in Caddy's config")
            }
        case .none:
            break
        }
        if kind != .none && !template.contains("{port}") {
            proxy.problem("upstream_template", "must contain {port}, got \"\(template)\"")
        }
        for placeholder in Placeholders.names(in: template) where placeholder != "port" {
            proxy.problem("upstream_template", "unknown placeholder {\(placeholder)}; the only one is {port}")
        }
        if let admin, !(admin.hasPrefix("http://") || admin.hasPrefix("https://") || admin.hasPrefix("unix//")) {
            proxy.problem("admin", "must be an http:// address or unix//path, got \"\(admin)\"")
        }
        if let validate { checkPlaceholders(validate, allowed: ["config", "admin"], key: "validate", in: proxy) }
        if let reload { checkPlaceholders(reload, allowed: ["config", "admin"], key: "reload", in: proxy) }

        return ProxyConfig(
            kind: kind, upstreamFile: upstreamFile, config: config, upstreamTemplate: template,
            validate: validate, reload: reload,
            admin: admin ?? ((kind == .caddy || kind == .caddyAPI) ? "http://127.0.0.1:2019" : nil),
            upstreamID: upstreamID, pidFile: pidFile, checkURL: checkURL)
    }

    public static func defaultUpstreamTemplate(_ kind: ProxyKind) -> String {
        switch kind {
        case .nginx: "server 127.0.0.1:{port};"
        case .caddyAPI: "127.0.0.1:{port}"
        case .caddy, .none: "to 127.0.0.1:{port}"
        }
    }

    private static func decodeHooks(_ hooks: inout ConfigReader) -> HooksConfig {
        HooksConfig(
            beforeStart: hooks.commandList("before_start"),
            restore: hooks.commandList("restore"),
            afterSwitch: hooks.commandList("after_switch"),
            onFailure: hooks.commandList("on_failure"),
            onRollback: hooks.commandList("on_rollback"),
            timeout: hooks.duration("timeout", default: .seconds(300)),
            user: Self.nonEmpty(hooks.string("user"), key: "user", in: &hooks, unset: "leave it out to run hooks as [app] user"))
    }

    private static func nonEmpty(_ value: String?, key: String, in reader: inout ConfigReader, unset: String) -> String? {
        if value?.isEmpty == true { reader.problem(key, "must not be empty; \(unset)") }
        return value
    }

    private static func decodeControl(_ control: inout ConfigReader, name: String) -> ControlConfig {
        let socket = control.absolutePath("socket") ?? "/run/supervisor/\(name).sock"
        let group = control.string("group")
        if let group, group.isEmpty {
            control.problem("group", "must not be empty; leave it out for root only")
        }
        let restart = control.command("emergency_restart") ?? ["systemctl", "start", "supervisor@{name}"]
        checkPlaceholders(restart, allowed: ["name"], key: "emergency_restart", in: control)
        return ControlConfig(socket: socket, group: group, emergencyRestart: restart)
    }

    private static func checkPlaceholders(_ argv: [String], allowed: Set<String>, key: String, in reader: ConfigReader) {
        for word in argv {
            for placeholder in Placeholders.names(in: word) where !allowed.contains(placeholder) {
                reader.problem(key, "unknown placeholder {\(placeholder)}; allowed here: \(allowed.sorted().map { "{\($0)}" }.joined(separator: ", "))")
            }
        }
    }

    /// `1.2.3.4:PORT`, `[v6]:PORT` or `*:PORT`-free: what the daemon binds without a resolver.
    static func isNumericTCPAddress(_ address: String) -> Bool {
        guard let colon = address.lastIndex(of: ":"),
            let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port)
        else { return false }
        let host = address[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") {
            let inner = host.dropFirst().dropLast()
            return inner.contains(":") && inner.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
        }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in Int(part).map { (0...255).contains($0) && !part.isEmpty } ?? false }
    }

    static func isListenAddress(_ address: String) -> Bool {
        if address.hasPrefix("/") { return true }
        guard let colon = address.lastIndex(of: ":") else { return false }
        let host = address[..<colon]
        guard let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else { return false }
        return !host.isEmpty
    }
}
