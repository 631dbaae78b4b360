#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import SupervisorCore
import SupervisorShared

/// Where the daemon is: `--socket`, `--name`, or `SUPERVISOR_SOCKET`.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's control socket.", valueName: "path"), completion: .file())
    var socket: String?

    @Option(
        name: .long, help: ArgumentHelp("The service name: means /run/supervisor/NAME.sock.", valueName: "name"),
        completion: .custom { _, _, prefix in serviceNames().filter { $0.hasPrefix(prefix) } })
    var name: String?

    func validate() throws {
        if socket != nil && name != nil {
            throw ValidationError("give --socket or --name, not both")
        }
        if let name, name.isEmpty || name.contains("/") {
            throw ValidationError("--name \"\(name)\" is not a service name")
        }
    }

    /// The socket path to use. Throws `CLIFailure`: exit 3 when no daemon's
    /// socket is found, exit 2 when several are and none was named.
    func socketPath() throws -> String {
        if let socket { return socket }
        if let name { return "/run/supervisor/\(name).sock" }
        if let fromEnvironment = getenv("SUPERVISOR_SOCKET").map({ String(cString: $0) }), !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        let candidates = Self.socketsInRunDirectory()
        if candidates.count == 1 { return candidates[0] }
        if candidates.isEmpty {
            throw CLIFailure(
                exitCode: 3, code: .unreachable,
                message: "no supervisord found: /run/supervisor has no control socket. Is the daemon running (systemctl status 'supervisor@*')? Or pass --socket PATH.")
        }
        throw CLIFailure(
            exitCode: 2, code: .serviceAmbiguous,
            message: "several services run here; say which with --name (\(candidates.map { String($0.dropFirst("/run/supervisor/".count).dropLast(5)) }.joined(separator: ", ")))")
    }

    /// The services with a control socket in /run/supervisor (for completion of --name).
    static func serviceNames() -> [String] {
        socketsInRunDirectory().map { path in
            String(path.dropFirst("/run/supervisor/".count).dropLast(".sock".count))
        }
    }

    static func socketsInRunDirectory() -> [String] {
        guard let directory = opendir("/run/supervisor") else { return [] }
        defer { closedir(directory) }
        var found: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".sock") { found.append("/run/supervisor/\(name)") }
        }
        return found.sorted()
    }
}

/// A failure the CLI reports and exits with.
struct CLIFailure: Error {
    let exitCode: Int32
    /// What a script matches: the daemon's code, or one supervisorctl found
    /// itself (`unreachable`, `forbidden` for a socket it may not open …).
    let code: SupervisorError.Code
    let message: String
    /// With `busy`: the phase the running operation is in.
    var phase: String? = nil

    init(exitCode: Int32, code: SupervisorError.Code, message: String, phase: String? = nil) {
        self.exitCode = exitCode
        self.code = code
        self.message = message
        self.phase = phase
    }

    /// Codes that say nothing about what serves: nothing may (not_running),
    /// the daemon was not asked or not believed, or it stopped.
    static let servingUnknown: Set<SupervisorError.Code> = [
        .notRunning, .forbidden, .shuttingDown, .unreachable, .serviceAmbiguous, .unexpectedAnswer, .emergencyIncomplete,
        // A restart refused for its config file: refused before the app's state was looked at.
        .configInvalid,
    ]

    /// Whether the daemon refused before acting, so the previous version is known to serve.
    var previousVersionKnownToServe: Bool {
        exitCode == 1 && !Self.servingUnknown.contains(code)
    }

    /// With `--json`: the one object on stdout, for every exit code.
    func printJSON() {
        struct Body: Encodable {
            struct Failure: Encodable {
                let code: String
                let message: String
                let phase: String?
            }
            let ok = false
            let error: Failure
            let exitCode: Int32
            enum CodingKeys: String, CodingKey { case ok, error, exitCode = "exit_code" }
        }
        let body = Body(error: .init(code: code.rawValue, message: message, phase: phase), exitCode: exitCode)
        print(String(decoding: ControlJSON.encode(body), as: UTF8.self))
    }
}

/// The service a socket belongs to, for messages: `myapp` for
/// `/run/supervisor/myapp.sock` (and any `NAME.sock`).
func serviceName(socketPath: String) -> String {
    let file = socketPath.split(separator: "/").last.map(String.init) ?? socketPath
    return file.hasSuffix(".sock") ? String(file.dropLast(5)) : file
}
