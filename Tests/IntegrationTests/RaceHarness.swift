#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// A command left running in the background (a `supervisorctl swap` the test
/// acts during, a burst of requests that overlap on the control socket), its
/// output in files. Killed when dropped if it is still running.
final class BackgroundCommand {
    let scratch = TemporaryDirectory("background")
    let process: TestProcess
    let arguments: [String]

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        self.arguments = arguments
        process = try TestProcess(executable, arguments, environment: environment, stdout: scratch.file("stdout"), stderr: scratch.file("stderr"))
    }

    /// `supervisorctl --socket <daemon's> arguments...`, started now.
    static func ctl(_ daemon: DaemonUnderTest, _ arguments: [String]) throws -> BackgroundCommand {
        try BackgroundCommand(Binaries.supervisorctl, ["--socket", daemon.socket] + arguments)
    }

    deinit { process.stop(SIGKILL) }

    var isRunning: Bool { process.isRunning }
    var stdout: String { (try? String(contentsOfFile: scratch.file("stdout"), encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: scratch.file("stderr"), encoding: .utf8)) ?? "" }

    /// Waits for it to end (a hang is a failure: killed and recorded).
    func wait(timeout: TimeInterval = 90, sourceLocation: SourceLocation = #_sourceLocation) -> CommandResult {
        if !process.waitForExit(timeout: timeout) {
            process.signal(SIGKILL)
            process.waitForExit(timeout: 10)
            Issue.record("\(arguments.joined(separator: " ")) did not finish within \(timeout)s", sourceLocation: sourceLocation)
        }
        return CommandResult(exitCode: process.exitCode ?? -1, stdout: stdout, stderr: stderr)
    }
}

/// Starts every command at once (back to back, before any is waited for, so
/// their requests overlap on the control socket) and waits for them all.
func ctlTogether(_ daemon: DaemonUnderTest, _ commands: [[String]], timeout: TimeInterval = 90) throws -> [CommandResult] {
    let started = try commands.map { try BackgroundCommand.ctl(daemon, $0) }
    return started.map { $0.wait(timeout: timeout) }
}

func jsonObject(_ text: String) -> [String: Any]? {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !trimmed.isEmpty else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any]
}

/// `error.code` of a `--json` result object, if stdout holds one.
func errorCode(_ result: CommandResult) -> String? {
    (jsonObject(result.stdout)?["error"] as? [String: Any])?["code"] as? String
}

extension CommandResult {
    /// One line for failure messages and summaries.
    var brief: String {
        let last = stderr.split(separator: "\n").suffix(3).joined(separator: " | ")
        return "exit \(exitCode): \(last)"
    }
}

extension DaemonUnderTest {
    /// `status --json` parsed whatever the exit code (status exits 1 while
    /// the app is starting or in backoff); nil when nothing answered.
    func statusAnyway() -> [String: Any]? {
        guard let result = try? ctl(["status", "--json"]), result.exitCode == 0 || result.exitCode == 1 else { return nil }
        return jsonObject(result.stdout)
    }

    /// `history --json`, oldest first; nil when it is not a JSON list.
    func historyEntries(sourceLocation: SourceLocation = #_sourceLocation) -> [[String: Any]]? {
        guard let result = try? ctl(["history", "--json"]) else { return nil }
        let trimmed = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let list = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [[String: Any]] else {
            Issue.record("history --json is not a list: exit \(result.exitCode), \(result.stdout.prefix(500)) \(result.stderr.prefix(500))", sourceLocation: sourceLocation)
            return nil
        }
        return list
    }

    var stateDirectory: String { directory.file("state") }

    /// The entries of `<state_dir>/history.jsonl` that parse, oldest first
    /// (read from the file: the daemon may be gone).
    func historyFromFile() -> [[String: Any]] {
        let text = (try? String(contentsOfFile: stateDirectory + "/history.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { jsonObject(String($0)) }
    }

    /// The environment `start` gives the daemon, for a second supervisord
    /// started by hand (its apps, if any, are then found and killed by `stop()`).
    func daemonEnvironment(adding extra: [String: String] = [:]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "JOURNAL_STREAM")
        env.merge(extra) { $1 }
        let ownerEntry = owner.split(separator: "=", maxSplits: 1)
        env[String(ownerEntry[0])] = String(ownerEntry[1])
        return env
    }
}

/// A history entry's `to.version` / `from.version`.
func entryVersion(_ entry: [String: Any], _ side: String) -> String? {
    (entry[side] as? [String: Any])?["version"] as? String
}

/// What the file answers to `--version` (every test version is a wrapper
/// that prints its tag): the version a file on disk holds.
func versionOfFile(_ path: String) -> String? {
    guard let result = try? Command.run(path, ["--version"], timeout: 10), result.exitCode == 0 else { return nil }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: " ").last
}

/// The `ok` entries after the first `skip` ones must form a chain: each
/// starts from the version the previous one went to (the first from
/// `serving`). A double flip (two rollbacks from the same version) breaks it.
/// Returns the version the chain ends on.
@discardableResult
func expectConsistentChain(_ entries: [[String: Any]], after skip: Int, from serving: String?, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    var current = serving
    for entry in entries.dropFirst(skip) where entry["result"] as? String == "ok" {
        let from = entryVersion(entry, "from"), to = entryVersion(entry, "to")
        #expect(from == current, "\(label): history entry \(entry["action"] ?? "?") \(from ?? "?") -> \(to ?? "?") does not start from \(current ?? "?") (the version serving before it)", sourceLocation: sourceLocation)
        current = to
    }
    return current
}

/// The same HTTP request sent on `count` control-socket connections as close
/// together as the kernel allows: every connection is opened first, then the
/// requests are written back to back (microseconds apart, tighter than
/// separate supervisorctl processes can manage), then each full answer is
/// read until the daemon closes it.
func rawBurst(socket path: String, _ request: String, count: Int, timeout: Int = 60) -> [String] {
    let fds: [Int32] = (0..<count).map { _ in
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return unixSocket(fd, connect, path: path) == 0 ? fd : -1
    }
    defer { fds.forEach { if $0 >= 0 { close($0) } } }
    let bytes = Array(request.utf8)
    for fd in fds where fd >= 0 {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    }
    return fds.map { fd in fd >= 0 ? readUntilClosed(fd) : "connect failed" }
}

/// What one raw `/swap` or `/rollback` answer amounts to: "ok" (200 and a
/// result line with "ok":true), "busy" (409, code busy), or the first line.
func rawOutcome(_ answer: String) -> String {
    if answer.hasPrefix("HTTP/1.1 200"), answer.contains("\"ok\":true") { return "ok" }
    if answer.hasPrefix("HTTP/1.1 409"), answer.contains("\"code\":\"busy\"") { return "busy" }
    let code = answer.range(of: #""code":"[a-z_]+""#, options: .regularExpression).map { String(answer[$0]) } ?? ""
    return "other: \(answer.split(separator: "\r\n").first ?? "") \(code)"
}
