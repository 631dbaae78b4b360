/// Collects problems while sections are read, so every one is reported.
final class ProblemCollector {
    private(set) var problems: [ConfigProblem] = []
    /// Every key any section asked for, as dotted paths (`app.binary`).
    var keysRead: Set<String> = []
    func add(_ key: String, _ message: String) {
        problems.append(ConfigProblem(key: key, message: message))
    }
}

/// Typed reads from one TOML table, recording a `key: problem` for each bad
/// value and remembering which keys were read, to flag unknown ones.
struct ConfigReader {
    let prefix: String
    let table: [String: ConfigValue]
    let collector: ProblemCollector
    private var known: Set<String> = []

    init(prefix: String, table: [String: ConfigValue], collector: ProblemCollector) {
        self.prefix = prefix
        self.table = table
        self.collector = collector
    }

    func path(_ key: String) -> String { prefix.isEmpty ? key : "\(prefix).\(key)" }

    func problem(_ key: String, _ message: String) { collector.add(path(key), message) }

    private mutating func value(_ key: String) -> ConfigValue? {
        known.insert(key)
        collector.keysRead.insert(path(key))
        return table[key]
    }

    mutating func has(_ key: String) -> Bool {
        known.insert(key)
        collector.keysRead.insert(path(key))
        return table[key] != nil
    }

    mutating func string(_ key: String, required: Bool = false) -> String? {
        guard let value = value(key) else {
            if required { problem(key, "is required") }
            return nil
        }
        guard case .string(let text) = value else {
            problem(key, "must be a string, not \(value.typeName)")
            return nil
        }
        return text
    }

    /// An absolute path (starting with `/`).
    mutating func absolutePath(_ key: String, required: Bool = false) -> String? {
        guard let text = string(key, required: required) else { return nil }
        guard text.hasPrefix("/") else {
            problem(key, "must be an absolute path, got \"\(text)\"")
            return nil
        }
        return text
    }

    mutating func integer(_ key: String, default fallback: Int, range: ClosedRange<Int>) -> Int {
        guard let value = value(key) else { return fallback }
        guard case .integer(let number) = value else {
            problem(key, "must be an integer, not \(value.typeName)")
            return fallback
        }
        guard range.contains(number) else {
            problem(key, "must be between \(range.lowerBound) and \(range.upperBound), got \(number)")
            return fallback
        }
        return number
    }

    mutating func duration(_ key: String, default fallback: Duration, allowZero: Bool = false) -> Duration {
        guard let value = value(key) else { return fallback }
        switch DurationParser.parse(value) {
        case nil:
            problem(key, "must be a duration such as \"100ms\", \"30s\", \"2m\" or a number of seconds, not \(value.typeName)")
        case .failure(.negative)?:
            problem(key, "must not be negative")
        case .failure(.tooLong)?:
            problem(key, "must be at most \(DurationParser.maximum.humanReadable) (7 days)")
        case .failure(.malformed)?:
            if case .string(let text) = value {
                problem(key, "\"\(text)\" is not a duration; write it as \"100ms\", \"30s\", \"2m\" or a number of seconds")
            } else {
                problem(key, "is not a valid duration")
            }
        case .success(let duration)?:
            if !allowZero && duration == .zero {
                problem(key, "must be greater than zero")
                return fallback
            }
            return duration
        }
        return fallback
    }

    mutating func stringArray(_ key: String, allowEmpty: Bool = true) -> [String]? {
        guard let value = value(key) else { return nil }
        guard case .array(let items) = value else {
            problem(key, "must be an array of strings, not \(value.typeName)")
            return nil
        }
        var strings: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let text) = item else {
                problem("\(key)[\(index)]", "must be a string, not \(item.typeName)")
                return nil
            }
            strings.append(text)
        }
        if !allowEmpty && strings.isEmpty {
            problem(key, "must not be empty")
            return nil
        }
        return strings
    }

    /// A command: a non-empty array of strings, argv style.
    mutating func command(_ key: String) -> [String]? {
        guard let argv = stringArray(key, allowEmpty: false) else { return nil }
        if argv[0].isEmpty {
            problem(key, "the program (first element) must not be empty")
            return nil
        }
        return argv
    }

    /// A list of commands: `[["a", "b"], ["c"]]`.
    mutating func commandList(_ key: String) -> [[String]] {
        guard let value = value(key) else { return [] }
        guard case .array(let items) = value else {
            problem(key, "must be a list of commands such as [[\"/usr/bin/true\"]], not \(value.typeName)")
            return []
        }
        var commands: [[String]] = []
        for (index, item) in items.enumerated() {
            guard case .array(let words) = item else {
                problem("\(key)[\(index)]", "must be a command as an array of strings, not \(item.typeName)")
                continue
            }
            let strings = words.compactMap { word -> String? in
                if case .string(let text) = word { return text }
                return nil
            }
            if strings.count != words.count {
                problem("\(key)[\(index)]", "every element of a command must be a string")
            } else if strings.isEmpty || strings[0].isEmpty {
                problem("\(key)[\(index)]", "must name a program to run")
            } else {
                commands.append(strings)
            }
        }
        return commands
    }

    /// A table of string values (numbers and booleans are accepted as their text when `scalars`).
    mutating func stringTable(_ key: String, scalars: Bool = false) -> [String: String] {
        guard let value = value(key) else { return [:] }
        guard case .table(let entries) = value else {
            problem(key, "must be a table such as { KEY = \"value\" }, not \(value.typeName)")
            return [:]
        }
        var result: [String: String] = [:]
        for (name, entry) in entries {
            switch entry {
            case .string(let text): result[name] = text
            case .integer(let number) where scalars: result[name] = String(number)
            case .float(let number) where scalars: result[name] = String(number)
            case .bool(let flag) where scalars: result[name] = String(flag)
            default:
                problem("\(key).\(name)", "must be \(scalars ? "a string, number or boolean" : "a string"), not \(entry.typeName)")
            }
        }
        return result
    }

    /// A sub-table such as `[app]`; a missing one reads as empty.
    mutating func section(_ key: String) -> ConfigReader {
        let child: [String: ConfigValue]
        switch value(key) {
        case .table(let entries)?: child = entries
        case nil: child = [:]
        case let other?:
            problem(key, "must be a table ([\(path(key))]), not \(other.typeName)")
            child = [:]
        }
        return ConfigReader(prefix: path(key), table: child, collector: collector)
    }

    /// Flags every key present in the table that no read asked for (typos).
    func reportUnknownKeys() {
        for key in table.keys.sorted() where !known.contains(key) {
            let suggestion = known.min { editDistance(key, $0) < editDistance(key, $1) }
            if let suggestion, editDistance(key, suggestion) <= 2 {
                problem(key, "unknown key; did you mean \"\(suggestion)\"?")
            } else {
                problem(key, "unknown key")
            }
        }
    }
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = Swift.min(
                previous[j] + 1, current[j - 1] + 1,
                previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
