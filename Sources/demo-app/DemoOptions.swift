#if canImport(Glibc)
import Glibc
#endif

/// demo-app's switches. Each has a flag and an environment variable, so a
/// wrapper script or the supervisor's `[app] env` can set it.
struct DemoOptions {
    var port = 8080
    var host = "127.0.0.1"
    var versionTag = "v1"
    var printVersion = false
    var failHealth = false
    var crashAtStart = false
    var startDelayMilliseconds = 0
    var ignoreSIGTERM = false
    var drainDelayMilliseconds = 0
    var responseDelayMilliseconds = 0
    var crashAfterMilliseconds = 0
    var healthFields: [(String, String)] = []
    var failHealthAfterMilliseconds = 0
    var lockFile: String?
    var schemaDatabase: String?

    static let usage = """
        usage: demo-app [options]

        A tiny HTTP service for the supervisor's demo, tests and benchmarks.
          GET /        answers "demo-app <version>"
          GET /health  200 {"status":"ok","version":"<version>"} (503 with --fail-health)

        options (environment variable in brackets):
          --port N               port to listen on [PORT] (default 8080)
          --host ADDR            address to listen on [DEMO_HOST] (default 127.0.0.1)
          --version-tag TAG      version this instance reports [DEMO_VERSION] (default v1)
          --version              print the version tag and exit
          --fail-health          answer /health with 503 [DEMO_FAIL_HEALTH=1]
          --crash-at-start       exit 3 before listening [DEMO_CRASH_AT_START=1]
          --start-delay-ms N     wait N ms before listening [DEMO_START_DELAY_MS]
          --crash-after-ms N     exit 4 after N ms of serving [DEMO_CRASH_AFTER_MS]
          --ignore-sigterm       ignore SIGTERM (only SIGKILL stops it) [DEMO_IGNORE_SIGTERM=1]
          --drain-delay-ms N     keep serving N ms after SIGTERM before draining [DEMO_DRAIN_DELAY_MS]
          --response-delay-ms N  answer / after N ms [DEMO_RESPONSE_DELAY_MS]
          --fail-health-after-ms N  answer /health with 503 from N ms after start on [DEMO_FAIL_HEALTH_AFTER_MS]
          --health-field K=V     add "K":"V" to the /health JSON, repeatable [DEMO_HEALTH_FIELDS=K=V,K2=V2]
          --lock-file PATH       hold an exclusive flock on PATH while running, as an app with an
                                 SQLite or DuckDB file does; a second instance exits 5 [DEMO_LOCK_FILE]
          --schema-from-sqlite PATH  add "db_migration":"N" to the /health JSON, N being the
                                 SQLite database's PRAGMA user_version, read on each probe [DEMO_SCHEMA_SQLITE]

        On SIGTERM it stops accepting, finishes in-flight requests, answers the
        last keep-alive response with "Connection: close" and exits 0.
        With LISTEN_FDS=1 and LISTEN_PID set to its pid it serves the inherited fd 3.
        With NOTIFY_SOCKET set it sends READY=1 once it listens (sd_notify).
        Options can be baked into a copy of the file (one ELF per version):
          cp demo-app v2; printf '\\n#demo-app-args: --version-tag v2\\n' >> v2
        """

    static func parse(_ arguments: [String], environment: [String: String]) -> Result<DemoOptions, String> {
        var options = DemoOptions()
        func flag(_ name: String) -> Bool { ["1", "true", "yes"].contains(environment[name]?.lowercased() ?? "") }
        func number(_ text: String?, _ name: String) -> Result<Int?, String> {
            guard let text else { return .success(nil) }
            guard let value = Int(text), value >= 0 else { return .failure("\(name): \"\(text)\" is not a non-negative number") }
            return .success(value)
        }
        do {
            if let port = try number(environment["PORT"], "PORT").get() { options.port = port }
            if let delay = try number(environment["DEMO_START_DELAY_MS"], "DEMO_START_DELAY_MS").get() { options.startDelayMilliseconds = delay }
            if let delay = try number(environment["DEMO_DRAIN_DELAY_MS"], "DEMO_DRAIN_DELAY_MS").get() { options.drainDelayMilliseconds = delay }
            if let delay = try number(environment["DEMO_RESPONSE_DELAY_MS"], "DEMO_RESPONSE_DELAY_MS").get() { options.responseDelayMilliseconds = delay }
            if let delay = try number(environment["DEMO_CRASH_AFTER_MS"], "DEMO_CRASH_AFTER_MS").get() { options.crashAfterMilliseconds = delay }
            if let delay = try number(environment["DEMO_FAIL_HEALTH_AFTER_MS"], "DEMO_FAIL_HEALTH_AFTER_MS").get() { options.failHealthAfterMilliseconds = delay }
        } catch {
            return .failure(error)
        }
        if let host = environment["DEMO_HOST"] { options.host = host }
        if let version = environment["DEMO_VERSION"] { options.versionTag = version }
        if let path = environment["DEMO_LOCK_FILE"], !path.isEmpty { options.lockFile = path }
        if let path = environment["DEMO_SCHEMA_SQLITE"], !path.isEmpty { options.schemaDatabase = path }
        options.failHealth = flag("DEMO_FAIL_HEALTH")
        options.crashAtStart = flag("DEMO_CRASH_AT_START")
        options.ignoreSIGTERM = flag("DEMO_IGNORE_SIGTERM")
        for pair in (environment["DEMO_HEALTH_FIELDS"] ?? "").split(separator: ",") {
            guard let field = parseField(String(pair)) else { return .failure("DEMO_HEALTH_FIELDS: \"\(pair)\" is not KEY=VALUE") }
            options.healthFields.append(field)
        }

        var index = 0
        func value(_ name: String) -> Result<String, String> {
            index += 1
            guard index < arguments.count else { return .failure("\(name) needs a value") }
            return .success(arguments[index])
        }
        func count(_ name: String) -> Result<Int, String> {
            value(name).flatMap { text in
                guard let n = Int(text), n >= 0 else { return .failure("\(name): \"\(text)\" is not a non-negative number") }
                return .success(n)
            }
        }
        while index < arguments.count {
            let argument = arguments[index]
            do {
                switch argument {
                case "--port": options.port = try count(argument).get()
                case "--host": options.host = try value(argument).get()
                case "--version-tag": options.versionTag = try value(argument).get()
                case "--version": options.printVersion = true
                case "--fail-health": options.failHealth = true
                case "--crash-at-start": options.crashAtStart = true
                case "--start-delay-ms": options.startDelayMilliseconds = try count(argument).get()
                case "--crash-after-ms": options.crashAfterMilliseconds = try count(argument).get()
                case "--fail-health-after-ms": options.failHealthAfterMilliseconds = try count(argument).get()
                case "--ignore-sigterm": options.ignoreSIGTERM = true
                case "--drain-delay-ms": options.drainDelayMilliseconds = try count(argument).get()
                case "--response-delay-ms": options.responseDelayMilliseconds = try count(argument).get()
                case "--lock-file": options.lockFile = try value(argument).get()
                case "--schema-from-sqlite": options.schemaDatabase = try value(argument).get()
                case "--health-field":
                    let text = try value(argument).get()
                    guard let field = parseField(text) else { return .failure("--health-field: \"\(text)\" is not KEY=VALUE") }
                    options.healthFields.append(field)
                case "-h", "--help": return .failure("")
                default: return .failure("unknown option \(argument)")
                }
            } catch {
                return .failure(error)
            }
            index += 1
        }
        if !(1...65535).contains(options.port) {
            return .failure("port \(options.port) is not between 1 and 65535")
        }
        return .success(options)
    }
}

func parseField(_ text: String) -> (String, String)? {
    guard let equals = text.firstIndex(of: "="), equals != text.startIndex else { return nil }
    return (String(text[..<equals]), String(text[text.index(after: equals)...]))
}

extension String: @retroactive Error {}
