/// The validated configuration of one supervised service (see DESIGN.md, "Config").
public struct SupervisorConfig: Sendable, Equatable {
    public var name: String
    public var stateDirectory: String
    public var app: AppConfig
    public var health: HealthConfig
    public var proxy: ProxyConfig
    public var hooks: HooksConfig
    public var drain: DrainConfig
    public var control: ControlConfig
    public var metrics = MetricsConfig()
}

public struct MetricsConfig: Sendable, Equatable {
    /// `host:port` serving `GET /metrics` over TCP for Prometheus (nil: only the control socket).
    public var listen: String?
    public init(listen: String? = nil) { self.listen = listen }
}

public struct AppConfig: Sendable, Equatable {
    public var binary: String
    public var args: [String]
    public var env: [String: String]
    public var workingDirectory: String?
    public var ports: [Int]
    public var stopSignal: StopSignal
    public var stopTimeout: Duration
    public var preflight: [[String]]
    public var versionCommand: [String]?
    /// Socket-handoff mode: addresses the supervisor listens on itself.
    public var listen: [String]
    /// Who the app, its preflight and version commands run as (nil: root).
    public var user: String? = nil
    /// Their group (nil: the user's primary group).
    public var group: String? = nil
    /// How a swap replaces the instance: next to it, or after stopping it.
    public var strategy: SwapStrategy = .overlap
    /// How many binaries that served are kept under the state directory for `rollback --to`.
    public var keepReleases: Int = 5

    /// `args` with `{port}` replaced.
    /// The port a swap starts the new instance on: the one of `ports` the
    /// serving instance is not on (they alternate). Socket-handoff mode has
    /// no ports (instances share the supervisor's sockets): 0.
    public func sidePort(after serving: Int) -> Int {
        ports.first { $0 != serving } ?? ports.first ?? 0
    }

    public func arguments(port: Int) -> [String] {
        args.map { Placeholders.substitute($0, ["port": String(port)]) }
    }
}

/// `[app] strategy`: how a swap replaces the serving instance.
public enum SwapStrategy: String, Sendable, Equatable, Codable, CaseIterable {
    /// The new instance starts next to the old one and takes over once healthy.
    case overlap
    /// For apps that cannot run twice (an exclusive lock on a database file):
    /// the old instance stops first, then the new one starts on its port or
    /// sockets while requests wait (the handoff socket's backlog, Caddy's
    /// `lb_try_duration`).
    case stopStart = "stop-start"
}

/// The signals an app may ask to be stopped with, by their Linux numbers.
public enum StopSignal: String, Sendable, Equatable, CaseIterable {
    case sigterm = "SIGTERM"
    case sigint = "SIGINT"
    case sigquit = "SIGQUIT"
    case sighup = "SIGHUP"
    case sigusr1 = "SIGUSR1"
    case sigusr2 = "SIGUSR2"
    case sigwinch = "SIGWINCH"
    case sigkill = "SIGKILL"

    public var number: Int32 {
        switch self {
        case .sighup: 1
        case .sigint: 2
        case .sigquit: 3
        case .sigkill: 9
        case .sigusr1: 10
        case .sigusr2: 12
        case .sigterm: 15
        case .sigwinch: 28
        }
    }

    /// Accepts `SIGTERM`, `TERM`, `sigterm`.
    public init?(name: String) {
        let upper = name.uppercased()
        let full = upper.hasPrefix("SIG") ? upper : "SIG" + upper
        self.init(rawValue: full)
    }
}

public enum HealthMode: String, Sendable, Equatable {
    case http
    case notify
}

public struct HealthConfig: Sendable, Equatable {
    public var mode: HealthMode
    public var path: String
    public var interval: Duration
    public var timeout: Duration
    public var startTimeout: Duration
    public var healthyAfter: Int
    public var watch: Duration
    public var expectBody: String?
    public var expectJSON: [String: String]
    /// Between consecutive good answers of the gate (zero: back to back);
    /// `healthy_after` × this is a stability window when an operator wants one.
    public var healthyInterval: Duration = .zero
    /// A field of the health JSON naming the database schema (e.g. `db_migration`):
    /// recorded per release; a rollback across a change of it needs the backup.
    public var schemaField: String? = nil
}

public enum ProxyKind: String, Sendable, Equatable, CaseIterable {
    case caddy
    case caddyAPI = "caddy-api"
    case nginx
    case none
}

public struct ProxyConfig: Sendable, Equatable {
    public var kind: ProxyKind
    public var upstreamFile: String?
    public var config: String?
    public var upstreamTemplate: String
    public var validate: [String]?
    public var reload: [String]?
    public var admin: String?
    public var upstreamID: String?
    public var pidFile: String?
    /// A URL served through the proxy: after each switch a GET of it must
    /// reach the new instance (end-to-end evidence), else the switch is undone.
    public var checkURL: String? = nil
}

public struct HooksConfig: Sendable, Equatable {
    public var beforeStart: [[String]]
    /// `rollback --restore-backup`: run with the backup's `SUPERVISOR_BACKUP_DIR` while no instance runs.
    public var restore: [[String]] = []
    public var afterSwitch: [[String]]
    public var onFailure: [[String]]
    public var onRollback: [[String]]
    public var timeout: Duration
    /// Who hooks run as (nil: `[app] user`).
    public var user: String? = nil
}

public struct DrainConfig: Sendable, Equatable {
    public var timeout: Duration
}

public struct ControlConfig: Sendable, Equatable {
    public var socket: String
    public var group: String?
    public var emergencyRestart: [String]
}

/// `{name}` placeholders in config strings.
public enum Placeholders {
    public static func substitute(_ text: String, _ values: [String: String]) -> String {
        var result = text
        for (key, value) in values {
            result = result.replacingAll("{\(key)}", with: value)
        }
        return result
    }

    /// Every `{word}` in `text`.
    public static func names(in text: String) -> [String] {
        var names: [String] = []
        var current: String? = nil
        for character in text {
            if character == "{" {
                current = ""
            } else if character == "}", let name = current {
                if !name.isEmpty { names.append(name) }
                current = nil
            } else if current != nil {
                if character.isLetter || character == "_" {
                    current!.append(character)
                } else {
                    current = nil
                }
            }
        }
        return names
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            result += rest[rest.startIndex..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}

extension Substring {
    func range(of target: String) -> Range<Substring.Index>? {
        guard !target.isEmpty, count >= target.count else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) {
                return index..<self.index(index, offsetBy: target.count)
            }
            index = self.index(after: index)
        }
        return nil
    }
}
