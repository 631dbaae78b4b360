import ArgumentParser
import SupervisorCore
import SupervisorShared
import CommandLineSupport

@main
struct SupervisorctlCommand: AsyncParsableCommand {
    static func main() async {
        await mainExitingTwoOnUsageErrors()
    }

    static let configuration = CommandConfiguration(
        commandName: "supervisorctl",
        abstract: "Control a supervisord: status, swap, rollback, restart, history.",
        discussion: """
            Talks to supervisord over its unix control socket: --socket PATH,
            or --name NAME for /run/supervisor/NAME.sock, or SUPERVISOR_SOCKET.

            Exit codes: 0 done; 1 refused or failed (the previous version is
            still serving); 2 command-line error; 3 daemon unreachable;
            4 another swap in progress; 5 an emergency rollback that failed
            after exchanging the binaries. `status` exits 1 while the app
            does not serve. With --json, stdout holds one object for every
            exit code.
            """,
        version: SupervisorVersion.current,
        subcommands: [StatusCommand.self, SwapCommand.self, RollbackCommand.self, RestartCommand.self, HistoryCommand.self, ReleasesCommand.self])

    @OptionGroup var connection: ConnectionOptions
}
