#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// The outcome of a short command (preflight, proxy validate/reload, hooks).
public struct CommandOutcome: Sendable {
    public let argv: [String]
    public let status: ExitStatus
    public let output: String
    public let timedOut: Bool
    /// The output was longer than the runner's limit and was cut there.
    public var truncated = false

    public init(argv: [String], status: ExitStatus, output: String, timedOut: Bool, truncated: Bool = false) {
        self.argv = argv
        self.status = status
        self.output = output
        self.timedOut = timedOut
        self.truncated = truncated
    }

    public var succeeded: Bool { status == .exited(code: 0) && !timedOut }

    /// The last lines of output, for an error message.
    public var outputTail: String {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: true)
        return lines.suffix(6).joined(separator: "\n")
    }

    public var failureDescription: String {
        let what = timedOut ? "timed out" : status.description
        let tail = outputTail
        return "`\(argv.joined(separator: " "))` \(what)" + (tail.isEmpty ? "" : ": \(tail)")
    }
}

/// Runs a command to completion with a timeout, capturing stdout and stderr
/// together. The command is killed (SIGKILL) if it outlives the timeout.
public enum CommandRunner {
    public static func run(
        _ argv: [String], environment: [String: String], workingDirectory: String? = nil,
        credentials: ProcessCredentials? = nil,
        timeout: Duration, outputLimit: Int = 1 << 20, onOutputLine: (@Sendable (String) -> Void)? = nil,
        killedIfCancelled: Bool = false
    ) async throws(SpawnError) -> CommandOutcome {
        var fds: [Int32] = [0, 0]
        guard csup_pipe_cloexec(&fds) == 0 else {
            throw SpawnError(executable: argv.first ?? "", errno: errno)
        }
        let readEnd = fds[0], writeEnd = fds[1]
        let executable = resolve(argv[0], path: environment["PATH"])
        var environment = environment
        if let credentials { environment.merge(credentials.environment) { _, login in login } }
        let request = SpawnRequest(
            executable: executable, arguments: Array(argv.dropFirst()), environment: environment,
            workingDirectory: workingDirectory, outputDescriptor: writeEnd, newSession: false,
            credentials: credentials)
        let child: ChildProcess
        do {
            child = try ProcessSpawner.spawn(request)
        } catch {
            close(readEnd)
            close(writeEnd)
            throw error
        }
        close(writeEnd)

        // With `killedIfCancelled`, a caller that gives up (its task cancelled) takes
        // the command down with it; otherwise the command runs to its end or timeout.
        let output = await withTaskCancellationHandler {
            await collect(readEnd, child: child, limit: outputLimit, timeout: timeout, onOutputLine: onOutputLine)
        } onCancel: {
            if killedIfCancelled { child.signal(SIGKILL) }
        }
        let status = await child.waitForExit() ?? .unknown
        let timedOut = status == .signaled(signal: SIGKILL)
        return CommandOutcome(argv: argv, status: status, output: output.0, timedOut: timedOut, truncated: output.1)
    }

    /// The child's output until it closes it (at most `limit` bytes), or nothing if `timeout` passes first (the child is killed).
    private static func collect(
        _ readEnd: Int32, child: ChildProcess, limit: Int, timeout: Duration, onOutputLine: (@Sendable (String) -> Void)?
    ) async -> (String, Bool) {
        await withTaskGroup(of: (String, Bool)?.self) { group in
            group.addTask {
                await BlockingThread.run { () -> (String, Bool) in
                    readAll(readEnd, child: child, limit: limit, onLine: onOutputLine)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled && child.exitStatus == nil {
                    child.signal(SIGKILL)
                    return nil
                }
                return nil
            }
            let text = await group.next() ?? nil
            group.cancelAll()
            return text ?? ("", false)
        }
    }

    /// `argv[0]` as execve needs it: a path, looked up in PATH when bare.
    static func resolve(_ program: String, path: String?) -> String {
        if program.contains("/") { return program }
        let directories = (path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(separator: ":")
        for directory in directories {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return program
    }

    /// Reads until EOF, or until one second after the child exited (a
    /// grandchild it left behind may hold the pipe open forever).
    private static func readAll(_ fd: Int32, child: ChildProcess, limit: Int, onLine: (@Sendable (String) -> Void)?) -> (String, Bool) {
        defer { close(fd) }
        var collected: [UInt8] = []
        var truncated = false
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        var graceAfterExit = 10
        while true {
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollfd, 1, 100)
            if ready == 0 {
                if child.exitStatus != nil {
                    graceAfterExit -= 1
                    if graceAfterExit <= 0 { break }
                }
                continue
            }
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            if collected.count + count <= limit {
                collected.append(contentsOf: buffer[0..<count])
            } else {
                collected.append(contentsOf: buffer[0..<max(0, limit - collected.count)])
                truncated = true
            }
            if let onLine {
                pending.append(contentsOf: buffer[0..<count])
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    onLine(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
            }
        }
        if let onLine, !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
        return (String(decoding: collected, as: UTF8.self), truncated)
    }
}
