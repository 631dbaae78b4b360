#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

/// A process a test starts, watched through a pidfd (reaped reliably, never
/// mistaken for another), with default signal dispositions and its output in
/// files. Foundation's Process is not used: its exit monitoring was seen to
/// hang here once other children were reaped through pidfds.
final class TestProcess {
    let child: ChildProcess
    let executable: String

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, stdout: String? = nil, stderr: String? = nil, newSession: Bool = false) throws {
        func openForWriting(_ path: String?) -> Int32? {
            guard let path else { return nil }
            return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        }
        // Default: output discarded.
        let out = openForWriting(stdout ?? "/dev/null")
        let err = openForWriting(stderr ?? stdout ?? "/dev/null")
        defer {
            if let out { close(out) }
            if let err { close(err) }
        }
        self.executable = executable
        child = try ProcessSpawner.spawn(
            SpawnRequest(
                executable: executable, arguments: arguments,
                environment: environment ?? ProcessInfo.processInfo.environment,
                outputDescriptor: out, errorDescriptor: err, newSession: newSession))
    }

    var pid: Int32 { child.pid }
    var isRunning: Bool { child.exitStatus == nil }

    /// The exit code, or 128 + signal, once it has exited.
    var exitCode: Int32? {
        switch child.exitStatus {
        case .exited(let code)?: code
        case .signaled(let signal)?: 128 + signal
        case .unknown?: -1
        case nil: nil
        }
    }

    func signal(_ signal: Int32) { child.signal(signal) }

    @discardableResult
    func waitForExit(timeout: TimeInterval) -> Bool {
        eventually(timeout: timeout, interval: 0.01) { !isRunning }
    }

    /// SIGTERM (or `signal`), then SIGKILL after `grace` seconds.
    func stop(_ signal: Int32 = SIGTERM, grace: TimeInterval = 10) {
        guard isRunning else { return }
        child.signal(signal)
        if !waitForExit(timeout: grace) {
            child.signal(SIGKILL)
            waitForExit(timeout: 10)
        }
    }
}
