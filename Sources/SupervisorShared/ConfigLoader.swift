#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore
import SystemBindings
import TOMLKit

/// Reads a config file: TOML → `ConfigValue` → `SupervisorConfig`, then the
/// checks only a live system can answer (does the binary exist …).
public enum ConfigLoader {
    public static func load(path: String, environment: [String: String]) -> Result<SupervisorConfig, ConfigProblems> {
        parse(path: path, environment: environment).flatMap { config in
            let problems = systemProblems(config)
            return problems.isEmpty ? .success(config) : .failure(ConfigProblems(problems))
        }
    }

    /// TOML and the contract's rules, without looking at this host's files.
    public static func parse(path: String, environment: [String: String]) -> Result<SupervisorConfig, ConfigProblems> {
        let text: String
        switch readFile(path) {
        case .success(let contents): text = contents
        case .failure(let failure): return .failure(ConfigProblems([ConfigProblem(key: "config", message: failure.message)]))
        }
        let document: [String: ConfigValue]
        do {
            let table = try TOMLTable(string: text)
            document = convert(table)
        } catch let error as TOMLParseError {
            let where_ = "line \(error.source.begin.line), column \(error.source.begin.column)"
            return .failure(ConfigProblems([ConfigProblem(key: "config", message: "\(path) is not valid TOML (\(where_)): \(error.description)")]))
        } catch {
            return .failure(ConfigProblems([ConfigProblem(key: "config", message: "\(path) is not valid TOML: \(error)")]))
        }
        return ConfigDecoder.decode(document, environment: environment)
    }

    /// What the pure decoder cannot know: files on this host.
    static func systemProblems(_ config: SupervisorConfig) -> [ConfigProblem] {
        var problems: [ConfigProblem] = []
        var info = stat()
        if stat(config.app.binary, &info) != 0 {
            problems.append(.init(key: "app.binary", message: "\(config.app.binary): \(String(cString: strerror(errno)))"))
        } else if (info.st_mode & S_IFMT) != S_IFREG {
            problems.append(.init(key: "app.binary", message: "\(config.app.binary) is not a regular file"))
        } else if access(config.app.binary, X_OK) != 0 {
            problems.append(.init(key: "app.binary", message: "\(config.app.binary) is not executable"))
        }
        if let directory = config.app.workingDirectory {
            if stat(directory, &info) != 0 || (info.st_mode & S_IFMT) != S_IFDIR {
                problems.append(.init(key: "app.working_directory", message: "\(directory) is not a directory"))
            }
        }
        if [.caddy, .nginx].contains(config.proxy.kind), let proxyConfig = config.proxy.config {
            if stat(proxyConfig, &info) != 0 {
                problems.append(.init(key: "proxy.config", message: "\(proxyConfig): \(String(cString: strerror(errno))); the proxy validates and loads this file on every swap"))
            } else if (info.st_mode & S_IFMT) != S_IFREG {
                problems.append(.init(key: "proxy.config", message: "\(proxyConfig) is not a regular file"))
            }
        }
        if [.caddy, .nginx].contains(config.proxy.kind), let upstream = config.proxy.upstreamFile {
            let directory = AtomicFile.directoryName(upstream)
            if stat(directory, &info) != 0 || (info.st_mode & S_IFMT) != S_IFDIR {
                problems.append(.init(key: "proxy.upstream_file", message: "the directory \(directory) does not exist; supervisord writes the file \(upstream) but never creates its directory (a typo would go unnoticed): create it, or fix the path"))
            }
        }
        if let group = config.control.group, UserDatabase.groupID(named: group) == nil {
            problems.append(.init(key: "control.group", message: "no group named \"\(group)\" on this host"))
        }
        return problems
    }

    static func readFile(_ path: String) -> Result<String, ReadFailure> {
        var info = stat()
        guard stat(path, &info) == 0, let bytes = AtomicFile.read(path) else {
            return .failure(ReadFailure("cannot read \(path): \(String(cString: strerror(errno)))"))
        }
        if bytes.count > 4 << 20 { return .failure(ReadFailure("\(path) is larger than 4 MiB; is it really the config?")) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(ReadFailure("\(path) is not UTF-8 text"))
        }
        return .success(text)
    }

    static func convert(_ table: TOMLTable) -> [String: ConfigValue] {
        var result: [String: ConfigValue] = [:]
        for (key, value) in table {
            result[key] = convert(value)
        }
        return result
    }

    static func convert(_ value: TOMLValueConvertible) -> ConfigValue {
        switch value.type {
        case .string: return .string(value.string ?? "")
        case .int: return .integer(value.int ?? 0)
        case .double: return .float(value.double ?? 0)
        case .bool: return .bool(value.bool ?? false)
        case .array: return .array((value.array ?? TOMLArray()).map { convert($0) })
        case .table: return .table(convert(value.table ?? TOMLTable()))
        case .date: return .other(typeName: "a date")
        case .time: return .other(typeName: "a time")
        case .dateTime: return .other(typeName: "a date-time")
        }
    }
}

struct ReadFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
