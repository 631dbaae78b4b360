import Testing
@testable import SupervisorCore

/// A minimal valid document; tests change one thing at a time.
func validDocument() -> [String: ConfigValue] {
    [
        "name": .string("myapp"),
        "app": .table([
            "binary": .string("/srv/myapp/bin/myapp"),
            "args": .array([.string("serve"), .string("--port"), .string("{port}")]),
            "ports": .array([.integer(8081), .integer(8082)]),
        ]),
        "proxy": .table([
            "kind": .string("caddy"),
            "upstream_file": .string("/etc/caddy/upstreams/myapp"),
            "config": .string("/etc/caddy/Caddyfile"),
        ]),
    ]
}

func with(_ section: String, _ key: String, _ value: ConfigValue?, in document: [String: ConfigValue] = validDocument()) -> [String: ConfigValue] {
    var document = document
    guard case .table(var table)? = document[section] else {
        document[section] = .table(value.map { [key: $0] } ?? [:])
        return document
    }
    table[key] = value
    document[section] = .table(table)
    return document
}

func problems(_ document: [String: ConfigValue]) -> [String] {
    switch ConfigDecoder.decode(document) {
    case .success: return []
    case .failure(let problems): return problems.problems.map(\.description)
    }
}

@Suite struct ConfigDecoderTests {
    @Test func validDocumentDecodesWithDefaults() throws {
        let config = try ConfigDecoder.decode(validDocument()).get()
        #expect(config.name == "myapp")
        #expect(config.stateDirectory == "/var/lib/supervisor/myapp")
        #expect(config.app.ports == [8081, 8082])
        #expect(config.app.arguments(port: 8082) == ["serve", "--port", "8082"])
        #expect(config.app.stopSignal == .sigterm)
        #expect(config.app.stopTimeout == .seconds(30))
        #expect(config.health.mode == .http)
        #expect(config.health.path == "/health")
        #expect(config.health.interval == .milliseconds(100))
        #expect(config.health.timeout == .seconds(1))
        #expect(config.health.startTimeout == .seconds(30))
        #expect(config.health.healthyAfter == 2)
        #expect(config.health.watch == .zero)
        #expect(config.proxy.upstreamTemplate == "to 127.0.0.1:{port}")
        #expect(config.proxy.admin == "http://127.0.0.1:2019")
        #expect(config.drain.timeout == .seconds(5))
        #expect(config.control.socket == "/run/supervisor/myapp.sock")
        #expect(config.control.group == nil)
        #expect(config.control.emergencyRestart == ["systemctl", "start", "supervisor@{name}"])
    }

    @Test func stateDirectoryFromSystemdWins() throws {
        var document = validDocument()
        document["state_dir"] = .string("/data/state")
        let config = try ConfigDecoder.decode(document, environment: ["STATE_DIRECTORY": "/var/lib/supervisor/x:/other"]).get()
        #expect(config.stateDirectory == "/var/lib/supervisor/x")
        #expect(try ConfigDecoder.decode(document).get().stateDirectory == "/data/state")
    }

    @Test func missingRequiredKeysAreAllListed() {
        let found = problems(["app": .table([:])])
        #expect(found.contains("name: is required"))
        #expect(found.contains("app.binary: is required"))
        #expect(found.contains { $0.hasPrefix("app.ports: is required") })
    }

    @Test(arguments: [
        (ConfigValue.array([.integer(8081)]), "app.ports: must list exactly two ports"),
        (.array([.integer(8081), .integer(8081)]), "app.ports: the two ports must differ, got 8081 twice"),
        (.array([.integer(0), .integer(8082)]), "app.ports[0]: must be between 1 and 65535, got 0"),
        (.array([.integer(8081), .integer(70000)]), "app.ports[1]: must be between 1 and 65535, got 70000"),
        (.array([.string("8081"), .integer(8082)]), "app.ports[0]: must be an integer port number, not a string"),
        (.string("8081,8082"), "app.ports: must be an array of two port numbers"),
    ])
    func badPorts(value: ConfigValue, expected: String) {
        let found = problems(with("app", "ports", value))
        #expect(found.contains { $0.hasPrefix(expected) }, "got \(found)")
    }

    @Test func relativePathsAreRefused() {
        var document = with("app", "binary", .string("bin/myapp"))
        document = with("app", "working_directory", .string("srv"), in: document)
        document = with("proxy", "upstream_file", .string("upstreams/myapp"), in: document)
        document = with("control", "socket", .string("my.sock"), in: document)
        document["state_dir"] = .string("state")
        let found = problems(document)
        #expect(found.contains("app.binary: must be an absolute path, got \"bin/myapp\""))
        #expect(found.contains("app.working_directory: must be an absolute path, got \"srv\""))
        #expect(found.contains("proxy.upstream_file: must be an absolute path, got \"upstreams/myapp\""))
        #expect(found.contains("control.socket: must be an absolute path, got \"my.sock\""))
        #expect(found.contains("state_dir: must be an absolute path, got \"state\""))
    }

    @Test(arguments: [
        ("interval", ConfigValue.string("fast"), "health.interval: \"fast\" is not a duration"),
        ("timeout", .string("-1s"), "health.timeout: must not be negative"),
        ("start_timeout", .integer(0), "health.start_timeout: must be greater than zero"),
        ("interval", .bool(true), "health.interval: must be a duration"),
        ("watch", .string("10000h"), "health.watch: must be at most 168h (7 days)"),
        ("start_timeout", .integer(Int.max), "health.start_timeout: must be at most 168h (7 days)"),
    ])
    func badDurations(key: String, value: ConfigValue, expected: String) {
        let found = problems(with("health", key, value))
        #expect(found.contains { $0.hasPrefix(expected) }, "got \(found)")
    }

    @Test func durationsAcceptUnitsAndNumbers() throws {
        var document = with("health", "interval", .string("250ms"))
        document = with("health", "timeout", .float(1.5), in: document)
        document = with("health", "start_timeout", .string("2m"), in: document)
        document = with("health", "watch", .string("0s"), in: document)
        document = with("app", "stop_timeout", .integer(10), in: document)
        let config = try ConfigDecoder.decode(document).get()
        #expect(config.health.interval == .milliseconds(250))
        #expect(config.health.timeout == .milliseconds(1500))
        #expect(config.health.startTimeout == .seconds(120))
        #expect(config.health.watch == .zero)
        #expect(config.app.stopTimeout == .seconds(10))
    }

    @Test func healthKeys() {
        let found = problems(
            with("health", "healthy_after", .integer(0),
                in: with("health", "mode", .string("tcp"),
                    in: with("health", "path", .string("health")))))
        #expect(found.contains("health.healthy_after: must be between 1 and 1000, got 0"))
        #expect(found.contains("health.mode: must be \"http\" or \"notify\", got \"tcp\""))
        #expect(found.contains("health.path: must start with \"/\", got \"health\""))
    }

    @Test func expectJSONTakesScalars() throws {
        let document = with("health", "expect_json", .table(["db_migration": .integer(42), "ok": .bool(true)]))
        let config = try ConfigDecoder.decode(document).get()
        #expect(config.health.expectJSON == ["db_migration": "42", "ok": "true"])
        let bad = problems(with("health", "expect_json", .table(["nested": .array([])])))
        #expect(bad.contains("health.expect_json.nested: must be a string, number or boolean, not an array"))
    }

    @Test func stopSignalNames() throws {
        #expect(try ConfigDecoder.decode(with("app", "stop_signal", .string("SIGINT"))).get().app.stopSignal == .sigint)
        #expect(try ConfigDecoder.decode(with("app", "stop_signal", .string("quit"))).get().app.stopSignal == .sigquit)
        #expect(problems(with("app", "stop_signal", .string("SIGFOO"))).contains { $0.hasPrefix("app.stop_signal: \"SIGFOO\" is not a signal") })
    }

    @Test func placeholders() {
        let found = problems(
            with("app", "args", .array([.string("--port={prot}")]),
                in: with("proxy", "upstream_template", .string("to 127.0.0.1:8080"))))
        #expect(found.contains("app.args[0]: unknown placeholder {prot}; the only one is {port}"))
        #expect(found.contains("proxy.upstream_template: must contain {port}, got \"to 127.0.0.1:8080\""))
    }

    @Test func commands() throws {
        let document = with("app", "preflight", .array([.array([.string("{binary}"), .string("--version")])]),
            in: with("app", "version_command", .array([.string("{binary}"), .string("--version")])))
        let config = try ConfigDecoder.decode(document).get()
        #expect(config.app.preflight == [["{binary}", "--version"]])
        #expect(config.app.versionCommand == ["{binary}", "--version"])
        let found = problems(
            with("app", "preflight", .array([.string("/bin/true")]),
                in: with("hooks", "before_start", .array([.array([])]),
                    in: with("app", "version_command", .array([]))
                )))
        #expect(found.contains("app.preflight[0]: must be a command as an array of strings, not a string"))
        #expect(found.contains("hooks.before_start[0]: must name a program to run"))
        #expect(found.contains("app.version_command: must not be empty"))
    }

    @Test func proxyKinds() {
        #expect(problems(with("proxy", "kind", .string("haproxy"))).contains { $0.hasPrefix("proxy.kind: must be one of \"caddy\", \"caddy-api\", \"nginx\", \"none\"") })
        let caddyAPI = with("proxy", "kind", .string("caddy-api"))
        #expect(problems(caddyAPI).contains { $0.hasPrefix("proxy.upstream_id: is required") })
        var nginx = with("proxy", "kind", .string("nginx"))
        nginx = with("proxy", "config", nil, in: nginx)
        #expect(problems(nginx) == [])
        var noFile = with("proxy", "upstream_file", nil)
        noFile = with("proxy", "config", nil, in: noFile)
        let found = problems(noFile)
        #expect(found.contains { $0.hasPrefix("proxy.upstream_file: is required with kind \"caddy\"") })
        #expect(found.contains { $0.hasPrefix("proxy.config: is required with kind \"caddy\"") })
        #expect(problems(with("proxy", "admin", .string("localhost:2019"))).contains { $0.hasPrefix("proxy.admin: must be an http:// address or unix//path") })
    }

    @Test func nginxDefaultTemplate() throws {
        let config = try ConfigDecoder.decode(with("proxy", "kind", .string("nginx"))).get()
        #expect(config.proxy.upstreamTemplate == "server 127.0.0.1:{port};")
        #expect(config.proxy.admin == nil)
    }

    @Test func socketHandoffMode() throws {
        var document = with("app", "listen", .array([.string("0.0.0.0:8080")]))
        document = with("app", "ports", nil, in: document)
        document = with("app", "args", .array([.string("serve")]), in: document)
        document["proxy"] = .table(["kind": .string("none")])
        document = with("health", "mode", .string("notify"), in: document)
        let config = try ConfigDecoder.decode(document).get()
        #expect(config.app.listen == ["0.0.0.0:8080"])
        #expect(config.app.ports == [])

        var wrong = with("app", "listen", .array([.string("8080")]))
        wrong = with("app", "ports", nil, in: wrong)
        let found = problems(wrong)
        #expect(found.contains { $0.hasPrefix("app.listen: socket-handoff mode needs proxy.kind = \"none\"") })
        #expect(found.contains { $0.hasPrefix("app.listen[0]: \"8080\" is not an address") })
        #expect(found.contains { $0.hasPrefix("app.args[2]: {port} has no meaning in socket-handoff mode") })
        #expect(found.contains { $0.hasPrefix("health.mode: must be \"notify\" in socket-handoff mode") })
    }

    @Test func unknownKeysAreFlaggedWithSuggestions() {
        var document = with("app", "bianry", .string("/x"))
        document = with("health", "intervall", .string("1s"), in: document)
        document["colour"] = .string("blue")
        let found = problems(document)
        #expect(found.contains("app.bianry: unknown key; did you mean \"binary\"?"))
        #expect(found.contains("health.intervall: unknown key; did you mean \"interval\"?"))
        #expect(found.contains("colour: unknown key"))
    }

    @Test func wrongTypesNameBothTypes() {
        var document = validDocument()
        document["name"] = .integer(3)
        document["drain"] = .string("5s")
        document = with("app", "env", .array([]), in: document)
        document = with("control", "group", .integer(100), in: document)
        let found = problems(document)
        #expect(found.contains("name: must be a string, not an integer"))
        #expect(found.contains("drain: must be a table ([drain]), not a string"))
        #expect(found.contains { $0.hasPrefix("app.env: must be a table") })
        #expect(found.contains("control.group: must be a string, not an integer"))
    }

    @Test func badNames() {
        var document = validDocument()
        document["name"] = .string("../etc")
        #expect(problems(document).contains { $0.hasPrefix("name: must be letters, digits") })
    }

    @Test func manyProblemsAtOnce() {
        var document = with("app", "ports", .array([.integer(1)]))
        document = with("health", "interval", .string("soon"), in: document)
        document = with("proxy", "kind", .string("apache"), in: document)
        document = with("drain", "timeout", .string("-5s"), in: document)
        #expect(problems(document).count >= 4)
    }
}

/// What `supervisorctl restart` applies from the config file read again.
@Suite struct RestartChangesTests {
    static func decoded(_ document: [String: ConfigValue]) throws -> SupervisorConfig {
        try ConfigDecoder.decode(document).get()
    }

    @Test func argsEnvAndWorkingDirectoryApplyTheRestIsNamed() throws {
        let running = try Self.decoded(validDocument())
        var document = with("app", "env", .table(["GREETING": .string("hello")]))
        document = with("app", "args", .array([.string("serve"), .string("--port"), .string("{port}"), .string("--verbose")]), in: document)
        document = with("app", "stop_timeout", .string("45s"), in: document)
        document = with("drain", "timeout", .string("9s"), in: document)
        let file = try Self.decoded(document)

        let changes = RestartChanges(running: running, file: file)
        #expect(changes.applied == ["app.args", "app.env"])
        #expect(changes.notApplied == ["app.stop_timeout", "[drain]"])
        #expect(changes.config.app.env == ["GREETING": "hello"])
        #expect(changes.config.app.args.last == "--verbose")
        #expect(changes.config.app.stopTimeout == running.app.stopTimeout, "only what a restart applies is taken")
        #expect(changes.config.drain == running.drain)
    }

    @Test func anUnchangedFileChangesNothing() throws {
        let running = try Self.decoded(validDocument())
        let changes = RestartChanges(running: running, file: running)
        #expect(changes.applied.isEmpty && changes.notApplied.isEmpty)
        #expect(changes.config == running)
    }
}
