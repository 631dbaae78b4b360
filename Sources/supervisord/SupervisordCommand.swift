#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CommandLineSupport
import Logging
import SupervisorCore
import SupervisorDaemon
import SupervisorShared
import SystemBindings

@main
struct SupervisordCommand: AsyncParsableCommand {
    static func main() async {
        await mainExitingTwoOnUsageErrors()
    }

    static let configuration = CommandConfiguration(
        commandName: "supervisord",
        abstract: "Run one web service and swap its binary with zero failed requests.",
        discussion: """
            Runs in the foreground (systemd runs it as Type=notify). It starts
            [app] binary, waits until it is healthy, then serves the control
            socket that supervisorctl talks to. SIGTERM or SIGINT first lets a
            swap, rollback or warm hold in progress finish (requests meanwhile
            are refused), then stops the app (stop_signal, then SIGKILL after
            stop_timeout) and exits 0. SIGHUP (systemctl reload) re-executes
            the installed supervisord in place once any swap is over: same
            pid, the app untouched and re-adopted; if the new file fails its
            checks (--version, --handover-protocol, --check), this one goes
            on. SIGUSR1, SIGUSR2 and other
            signals are logged and ignored.

            Exit codes: 0 stopped cleanly; 1 could not start; 2 bad config,
            another supervisord already runs for this service (its lock in the
            state directory is held), or every [app] port is held by a process
            that is not the app (the message names each holder). The shipped
            unit does not restart on 2.

            Examples:
              supervisord --config /etc/supervisor/myapp.toml
              supervisord --config /etc/supervisor/myapp.toml --check
            """,
        version: SupervisorVersion.current)

    @Option(name: .long, help: "The service's TOML config file.", completion: .file(extensions: ["toml"]))
    var config: String

    @Flag(name: .long, help: "Validate the config, print every problem, and exit (0 valid, 2 invalid).")
    var check = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.", completion: .list(["trace", "debug", "info", "notice", "warning", "error"]))
    var logLevel: String = "info"

    @Flag(name: .long, help: "Print the in-place re-exec protocol this binary speaks and exit (a running supervisord asks the installed one, with its own arguments, before it re-executes).")
    var handoverProtocol = false

    func run() async throws {
        if handoverProtocol {
            print(ReexecHandover.protocolVersion)
            return
        }
        // Exec'd by a previous image (SIGHUP): should this one not start, that one runs again.
        let handover: ReexecHandover.Received?
        do {
            handover = check ? nil : try ReexecHandover.take()
        } catch {
            printError("supervisord: \(error)")
            throw ExitCode(1)
        }
        func fail(_ code: Int32, _ reason: String) -> ExitCode {
            handover?.runPreviousImage(because: reason)
            // An image run again after a failed re-exec that fails too: exit 1, which
            // systemd restarts (a fresh start re-adopts the app), never 2, which it does not.
            return ExitCode(handover?.failed != nil ? 1 : code)
        }
        let environment = ProcessEnvironment.current()
        let loaded = ConfigLoader.load(path: config, environment: environment)
        let settings: SupervisorConfig
        switch loaded {
        case .failure(let problems):
            printError("supervisord: \(config) has \(problems.problems.count) problem\(problems.problems.count == 1 ? "" : "s"):")
            for problem in problems.problems {
                printError("  \(problem)")
            }
            throw fail(2, "\(config): \(problems.problems.first.map { "\($0)" } ?? "invalid")")
        case .success(let parsed):
            settings = parsed
        }
        if check {
            let rights = PrivilegeCheck(settings)
            var problems = rights.problems, warnings = rights.warnings + StrategyCheck.warnings(settings)
            var wiring: String?
            switch await ProxyWiringCheck.run(settings) {
            case .wired(let evidence): wiring = evidence
            case .notWired(let problem): problems.append("proxy.config: \(problem)")
            case .proxyFailed(let why), .notChecked(let why): warnings.append(why)
            case .notApplicable: break
            }
            if !problems.isEmpty {
                printError("supervisord: \(config) has \(problems.count) problem\(problems.count == 1 ? "" : "s"):")
                for problem in problems { printError("  \(problem)") }
                throw ExitCode(2)
            }
            for warning in warnings { print("warning: \(warning)") }
            if let wiring { print("proxy: \(wiring)") }
            print("\(config): ok (service \"\(settings.name)\", binary \(settings.app.binary), proxy \(settings.proxy.kind.rawValue), socket \(settings.control.socket))")
            return
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            printError("supervisord: --log-level: \"\(logLevel)\" is not one of trace, debug, info, notice, warning, error")
            throw fail(2, "--log-level \(logLevel) is not a log level")
        }
        LoggingSystem.bootstrap { label in
            var handler = JournalLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "supervisord")
        logger[metadataKey: "service"] = "\(settings.name)"
        do {
            try await Daemon(config: settings, logger: logger, configPath: config, handover: handover).run()
        } catch let error as DaemonAlreadyRunning {
            printError("supervisord: \(error)")
            throw fail(2, "\(error)")
        } catch let error as StartRefused {
            logger.critical("\(error)")
            printError("supervisord: \(error)")
            throw fail(2, "\(error)")
        } catch let error as PortsHeldByOthers {
            logger.critical("\(error)")
            printError("supervisord: \(error)")
            throw fail(2, "\(error)")
        } catch {
            logger.critical("cannot start: \(error)")
            throw fail(1, "cannot start: \(error)")
        }
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
