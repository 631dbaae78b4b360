// libFuzzer target for the pure config core: scripts/fuzz.sh compiles it
// together with Sources/SupervisorCore using `swiftc -sanitize=fuzzer,address`.
// The input bytes drive the shape of a parsed TOML document (tables, arrays,
// strings, numbers) fed to ConfigDecoder, plus raw strings fed to the
// duration and placeholder parsers. Any crash, trap or sanitizer report fails.

struct ByteStream {
    var bytes: ArraySlice<UInt8>
    mutating func next() -> UInt8 { bytes.popFirst() ?? 0 }
    var isEmpty: Bool { bytes.isEmpty }

    mutating func string() -> String {
        let length = Int(next() % 24)
        var scalars: [UInt8] = []
        for _ in 0..<length where !isEmpty { scalars.append(next()) }
        return String(decoding: scalars, as: UTF8.self)
    }

    /// Eight bytes: the whole range of integers and doubles (huge, negative, NaN, infinities).
    mutating func word() -> UInt64 {
        (0..<8).reduce(0) { value, _ in value << 8 | UInt64(next()) }
    }

    /// Keys biased towards the real ones, so the decoder's paths are reached.
    mutating func key() -> String {
        let known = [
            "name", "state_dir", "app", "health", "proxy", "hooks", "drain", "control", "binary", "args", "env",
            "working_directory", "ports", "stop_signal", "stop_timeout", "preflight", "version_command", "listen",
            "mode", "path", "interval", "timeout", "start_timeout", "healthy_after", "watch", "expect_body",
            "expect_json", "kind", "upstream_file", "config", "upstream_template", "validate", "reload", "admin",
            "upstream_id", "pid_file", "before_start", "after_switch", "on_failure", "on_rollback", "socket", "group",
            "emergency_restart",
        ]
        let pick = next()
        return pick < 200 ? known[Int(pick) % known.count] : string()
    }

    mutating func value(depth: Int) -> ConfigValue {
        switch next() % (depth > 3 ? 5 : 8) {
        case 0: return .string(string())
        case 1: return .integer(next() & 1 == 0 ? Int(Int8(bitPattern: next())) * Int(next()) : Int(Int64(bitPattern: word())))
        case 2: return .float(next() & 1 == 0 ? Double(Int8(bitPattern: next())) / Double(max(1, next())) : Double(bitPattern: word()))
        case 3: return .bool(next() & 1 == 1)
        case 4: return .string(["30s", "100ms", "2m", "-1s", "{port}", "/abs/path", "SIGTERM", "caddy", "nginx", "none", "notify", "http"][Int(next()) % 12])
        case 5, 6:
            var items: [ConfigValue] = []
            for _ in 0..<Int(next() % 4) { items.append(value(depth: depth + 1)) }
            return .array(items)
        default:
            return .table(table(depth: depth + 1))
        }
    }

    mutating func table(depth: Int) -> [String: ConfigValue] {
        var result: [String: ConfigValue] = [:]
        for _ in 0..<Int(next() % 6) { result[key()] = value(depth: depth) }
        return result
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ count: Int) -> Int32 {
    var stream = ByteStream(bytes: ArraySlice(UnsafeBufferPointer(start: data, count: count)))
    let document = stream.table(depth: 0)
    switch ConfigDecoder.decode(document, environment: ["STATE_DIRECTORY": stream.string()]) {
    case .success(let config):
        _ = config.app.arguments(port: Int(stream.next()))
    case .failure(let problems):
        precondition(!problems.problems.isEmpty, "a failure names at least one problem")
    }
    let raw = String(decoding: UnsafeBufferPointer(start: data, count: count), as: UTF8.self)
    _ = DurationParser.parse(raw)
    _ = Placeholders.names(in: raw)
    _ = Placeholders.substitute(raw, ["port": "8080", "binary": "/x"])
    _ = StopSignal(name: raw)
    return 0
}
