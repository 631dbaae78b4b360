import ArgumentParser
import Foundation
import SupervisorCore
import SupervisorShared
import SystemBindings

struct SwapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swap",
        abstract: "Replace the running binary with a new one, with zero failed requests.",
        discussion: """
            The new binary is copied beside the live one, started on the idle side
            port, health-checked, switched in at the proxy, and only then is the
            old instance drained and stopped. The previous binary is kept as
            <binary>.bak. If anything fails, the old version keeps serving.

            Progress goes to stderr; --json prints the result object on stdout.
            Exit codes: 0 swapped; 1 refused or failed (old version still serving);
            2 command-line error; 3 daemon unreachable; 4 another swap in progress.

            Examples:
              supervisorctl --name myapp swap /tmp/myapp-v2
              supervisorctl --name myapp swap ./build/myapp --json | jq .phases_ms
            """)

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: ArgumentHelp("The new binary (a relative path is taken from the current directory).", valueName: "path"), completion: .file())
    var path: String

    @Flag(name: .long, help: "Print the result object as JSON on stdout.")
    var json = false

    func run() throws {
        let joined = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        // `/srv/./app//v2` is `/srv/app/v2` (".." is left alone: a symlink can make it mean elsewhere).
        let absolute = "/" + joined.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
        if let problem = BinaryStager.pathProblem(absolute) {
            // Refused here too, before a byte is sent: nothing of the path reaches a terminal raw.
            if json { CLIFailure(exitCode: 1, code: problem.code, message: problem.message).printJSON() }
            SwapStreamPrinter.stderr("supervisorctl: \(problem.message) [\(problem.code)]")
            SwapStreamPrinter.stderr("Nothing was sent to supervisord; the running version is untouched.")
            throw ExitCode(1)
        }
        let body = ControlJSON.encode(["binary": absolute])
        try SwapStreamPrinter.execute(
            title: "swap \(absolute)", endpoint: "/swap", body: body, connection: connection, json: json)
    }
}

struct RollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Swap back to the previous binary (<binary>.bak).",
        discussion: """
            A rollback is a swap to <binary>.bak through the same gates, so the two
            files trade places: a second rollback re-applies the newer binary.
            With --to it is a swap to one of the releases the daemon kept
            ([app] keep_releases; `supervisorctl releases` lists them), named by
            its version or a sha256 prefix; <binary>.bak then holds the binary
            that served before, as after any swap.

            With [health] schema_field, a rollback to a release that recorded
            another schema than the serving one is refused (schema_changed, exit
            1), naming both schemas and the backup taken before the swap that
            replaced it. --restore-backup then stops the serving version, runs
            [hooks] restore with that backup as SUPERVISOR_BACKUP_DIR, and starts
            the release (a stop-start: requests wait); --force rolls back
            without restoring anything.

            With --emergency (and --config) it works without the daemon, down or
            hung: it checks <binary>.bak (a regular executable file), stops the
            daemon with SIGKILL (the app keeps serving), exchanges <binary> and
            <binary>.bak atomically, runs [control] emergency_restart (default:
            systemctl start supervisor@NAME), and waits for the started daemon to
            move traffic from the running instance to the restored binary the way
            a rollback does (no request fails). Exit 0 only once the restored
            binary is confirmed serving; 1 when it refused before exchanging
            anything; 5 when it failed after the exchange (restart failed, or
            the restored binary not confirmed serving), with what it saw.

            Examples:
              supervisorctl --name myapp rollback
              supervisorctl --name myapp rollback --json
              supervisorctl --name myapp rollback --to v1.4.2
              supervisorctl --name myapp rollback --to 3f2a9c
              supervisorctl --name myapp rollback --restore-backup
              supervisorctl rollback --emergency --config /etc/supervisor/myapp.toml
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print the result object as JSON on stdout.")
    var json = false

    @Flag(name: .long, help: "Roll back without the daemon (it may be down or hung); needs --config.")
    var emergency = false

    @Option(name: .long, help: ArgumentHelp("Roll back to this kept release: its version, or a sha256 prefix (4 hex digits or more).", valueName: "release"))
    var to: String?

    @Flag(name: .long, help: "Restore the backup kept with the release rolled back to ([hooks] restore), as a stop-start.")
    var restoreBackup = false

    @Flag(name: .long, help: "Roll back across a schema change without restoring the backup.")
    var force = false

    @Option(name: .long, help: ArgumentHelp("The service's config file (with --emergency).", valueName: "file"), completion: .file(extensions: ["toml"]))
    var config: String?

    func validate() throws {
        if emergency && config == nil {
            throw ValidationError("--emergency needs --config FILE (the daemon is not asked, so the config says where the binary is)")
        }
        if !emergency && config != nil {
            throw ValidationError("--config is only used with --emergency")
        }
        if restoreBackup && force { throw ValidationError("--restore-backup and --force exclude each other: restore the backup, or roll back without it") }
        if emergency && (restoreBackup || force) {
            throw ValidationError("--restore-backup and --force are not available with --emergency: without the daemon nothing is checked or restored")
        }
        if emergency && to != nil {
            throw ValidationError("--to is not available with --emergency: without the daemon only <binary>.bak can be restored")
        }
        if let to, to.isEmpty { throw ValidationError("--to needs a version or a sha256 prefix") }
        if emergency && json {
            throw ValidationError("--json is not available with --emergency: it reports in words on stderr, and its exit code (0, 1, 5) says how it ended")
        }
    }

    func run() async throws {
        if let config, emergency {
            try await EmergencyRollbackPrinter.execute(configPath: config)
            return
        }
        var body: [UInt8] = []
        if to != nil || restoreBackup || force {
            body = ControlJSON.encode(RollbackRequest(to: to, force: force ? true : nil, restoreBackup: restoreBackup ? true : nil))
        }
        try SwapStreamPrinter.execute(title: "rollback", endpoint: "/rollback", body: body, connection: connection, json: json)
    }
}

struct RestartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "Restart the app with zero downtime, through the swap's gates.",
        discussion: """
            Starts the same binary again on the side port, with [app] args, env
            and working_directory as the config file has them now, waits until it
            is healthy, points the proxy at it, drains and stops the old instance:
            a swap to the binary that runs, with no failed request. <binary>.bak is
            left as it is (a later rollback still goes to the previous release).
            Other changes in the config file are named, and take effect when
            supervisord itself starts again. A config file with problems is
            refused (exit 1, config_invalid), and nothing is restarted.

            Examples:
              supervisorctl --name myapp restart
              supervisorctl --name myapp restart --json | jq .phases_ms
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print the result object as JSON on stdout.")
    var json = false

    func run() throws {
        try SwapStreamPrinter.execute(title: "restart", endpoint: "/restart", body: [], connection: connection, json: json)
    }
}

/// Shows a swap's NDJSON stream as lines a person reads, and maps the result to an exit code.
enum SwapStreamPrinter {
    static func execute(title: String, endpoint: String, body: [UInt8], connection: ConnectionOptions, json: Bool) throws {
        do {
            let client = ControlClient(socketPath: try connection.socketPath())
            let terminal = isatty(2) == 1
            var result: SwapResult?
            var lastElapsed: Int64 = 0
            let decoder = JSONDecoder()
            stderr(terminal ? "\u{1B}[1m\(title)\u{1B}[0m" : title)
            let follow = connection.name.map { "--name \($0)" } ?? "--socket \(client.socketPath)"
            InterruptNotice.say(
                "\nsupervisorctl: interrupted; the \(endpoint.dropFirst()) goes on in supervisord, which finishes or undoes it on its own."
                    + " Follow it with `supervisorctl \(follow) status` and `supervisorctl \(follow) history --limit 1`.\n")
            let response = try client.postStreaming(endpoint, body: body) { line in
                guard !line.isEmpty else { return }
                let data = Data(line.utf8)
                if let progress = try? decoder.decode(SwapProgress.self, from: data) {
                    let step = progress.elapsedMS - lastElapsed
                    lastElapsed = progress.elapsedMS
                    let phase = progress.phase.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
                    stderr("  \(phase) \(UntrustedText.escapedLines(progress.message))  (+\(step) ms)")
                } else if let parsed = try? decoder.decode(SwapResult.self, from: data) {
                    result = parsed
                }
            }
            guard response.status == 200 else { throw ControlClient.failure(from: response) }
            guard let result else {
                throw CLIFailure(exitCode: 1, code: .unexpectedAnswer, message: "the daemon closed the stream without a result; check `supervisorctl status` and the service log")
            }
            if json {
                print(String(decoding: ControlJSON.encode(result), as: UTF8.self))
            }
            if result.ok {
                stderr(summary(result, terminal: terminal))
            } else {
                stderr(failure(result, terminal: terminal, service: service(connection)))
                throw ExitCode(1)
            }
        } catch let failure as CLIFailure {
            if json { failure.printJSON() }
            stderr("supervisorctl: \(UntrustedText.escapedLines(failure.message))")
            if failure.previousVersionKnownToServe {
                stderr("Nothing was changed: the previous version is still serving.")
            } else if failure.code == .configInvalid {
                stderr("Nothing was changed.")
            }
            if failure.exitCode == 1 { stderr("Next: \(hint(for: failure.code, service: service(connection)))") }
            throw ExitCode(failure.exitCode)
        }
    }

    static func summary(_ result: SwapResult, terminal: Bool) -> String {
        let mark = terminal ? "\u{1B}[32m✓\u{1B}[0m" : "ok:"
        let to = describe(result.to)
        let phases = SwapPhase.allCases.compactMap { phase -> String? in
            result.phasesMS[phase.rawValue].map { "\(phase.rawValue) \($0)" }
        }.joined(separator: ", ")
        let serving = result.servingMS.map { " (serving after \($0) ms)" } ?? ""
        let backup = result.backup.map { "\n  backup: \($0.path) (\(ByteCount.human($0.sizeBytes)))" } ?? ""
        return "\(mark) \(result.action.rawValue) done in \(result.totalMS) ms\(serving): now serving \(to) (pid \(result.pid.map(String.init) ?? "-"), port \(result.port.map(String.init) ?? "-"))\n  phases (ms): \(phases)\(backup)"
    }

    /// The service's name for commands in hints (`journalctl -u supervisor@NAME`).
    static func service(_ connection: ConnectionOptions) -> String {
        connection.name ?? (try? connection.socketPath()).map { serviceName(socketPath: $0) } ?? "NAME"
    }

    static func failure(_ result: SwapResult, terminal: Bool, service: String) -> String {
        let mark = terminal ? "\u{1B}[31m✗\u{1B}[0m" : "failed:"
        let error = result.error
        var lines = ["\(mark) \(result.action.rawValue) failed in phase \(result.failedPhase?.rawValue ?? "?"): \(UntrustedText.escapedLines(error?.message ?? "unknown error")) [\(error?.code.rawValue ?? "?")]"]
        if result.failedPhase == .commit {
            lines.append("  The new version is serving (pid \(result.pid.map(String.init) ?? "-")), but the binary files were not committed; check the binary's directory.")
        } else if error?.code == .switchBackFailed {
            lines.append("  The previous version \(describe(result.from)) is running and supervised (pid \(result.pid.map(String.init) ?? "-"), port \(result.port.map(String.init) ?? "-")), but the proxy may not route to it.")
            lines.append("  Next: \(hint(for: error?.code, service: service))")
        } else {
            lines.append("  The previous version is still serving: \(describe(result.from)) (pid \(result.pid.map(String.init) ?? "-"), port \(result.port.map(String.init) ?? "-")).")
            lines.append("  Next: \(hint(for: error?.code, service: service))")
        }
        return lines.joined(separator: "\n")
    }

    static func describe(_ identity: BinaryIdentity) -> String {
        let sha = identity.sha256.map { "sha256 \($0.prefix(12))" } ?? "unknown binary"
        if let version = identity.version { return "\(UntrustedText.escaped(version)) (\(sha))" }
        return sha
    }

    static func hint(for code: SwapError.Code?, service: String) -> String {
        switch code {
        case .binaryNotFound?, .binaryNotRegular?, .binaryNotExecutable?, .binaryEmpty?:
            return "check the path you gave (ls -l it); it must be an executable file."
        case .binaryNotReadable?:
            return "supervisord reads the file with your rights, not root's: make it readable to you (ls -l it and every directory above it)."
        case .binaryPathInvalid?:
            return "rename the file so its path has no control characters, and swap again."
        case .forbidden?:
            return "run it as root, or from a login that holds the group in [control] group (`id` shows yours)."
        case .unexpectedAnswer?:
            return "supervisorctl and supervisord may be different versions (compare --version); `supervisorctl status` and the service log say what happened."
        case .stagedBinaryReplaced?:
            return "something else wrote the binary's directory during the swap; make it writable by root only (supervisord --check warns), then swap again."
        case .appExited?, .healthTimeout?:
            return "read the new binary's output in the service log (journalctl -u supervisor@\(service)), fix it, and swap again."
        case .schemaChanged?:
            return "decide as the message says: --restore-backup puts the release's backup back first, --force runs it on the schema as it is."
        case .unknownRelease?, .ambiguousRelease?:
            return "`supervisorctl releases` lists the kept releases with their versions and sha256; name one exactly."
        case .portInUse?:
            return "find what holds the side port (ss -ltnp) and stop it, or change [app] ports."
        case .preflightFailed?:
            return "run the preflight command by hand against the new binary to see why it fails."
        case .hookFailed?:
            return "the hook's output is above; fix the hook (or what it checks) and swap again."
        case .stageFailed?:
            return "check free space and permissions in the binary's directory (df -h, ls -ld)."
        case .journalFailed?:
            return "check free space and permissions of state_dir (df -h, ls -ld); nothing was changed."
        case .startFailed?:
            return "the new binary could not be executed; check its format and permissions."
        case .noBackup?:
            return "nothing was swapped yet; swap to the binary you want instead."
        case .notRunning?:
            return "supervisorctl status and the service log say why the app is down; if the live binary is the problem: supervisorctl rollback --emergency --config /etc/supervisor/\(service).toml."
        case .shuttingDown?:
            return "supervisord is stopping; ask again once the service is back (systemctl status supervisor@\(service))."
        case .switchBackFailed?:
            return "fix the proxy (the message says what failed), then `systemctl kill --kill-whom=main --signal=SIGKILL supervisor@\(service)`: systemd starts the supervisor again, which keeps the running app and points the proxy at it (`systemctl restart` would stop the app)."
        case .configInvalid?:
            return "fix the config file (`supervisord --config /etc/supervisor/\(service).toml --check` lists every problem), then restart again."
        case .proxyNotWired?:
            return "put the upstream file's include back inside the `upstream` block your proxy_pass uses (`supervisord --config /etc/supervisor/\(service).toml --check` says what is missing); then swap again."
        case .proxyWriteFailed?, .proxyValidateFailed?, .proxyReloadFailed?, .proxyNotConfirmed?:
            return "check the proxy (is it running? does its config validate?) and its admin endpoint; then swap again."
        default:
            return "see `supervisorctl status` and the service log."
        }
    }

    static func stderr(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
