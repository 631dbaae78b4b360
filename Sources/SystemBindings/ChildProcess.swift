#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import Synchronization

/// How a process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32)
    /// Not our child (re-adopted): it is gone, but its status is not ours to read.
    case unknown

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal): "killed by signal \(signal) (\(SignalName.name(of: signal)))"
        case .unknown: "exited (status unknown)"
        }
    }
}

public struct ProcessError: Error, Sendable, CustomStringConvertible {
    public let pid: Int32
    public let errno: Int32
    public var description: String { "process \(pid): \(String(cString: strerror(errno)))" }
}

/// A process watched through a pidfd: signals go to exactly this process
/// (no pid-reuse race) and its exit is observed without polling.
public final class ChildProcess: Sendable {
    public let pid: Int32
    private let pidfd: Int32
    private let state: Mutex<WaitState>

    private struct WaitState: ~Copyable {
        var status: ExitStatus?
        var waiters: [Int: CheckedContinuation<ExitStatus?, Never>] = [:]
        var nextWaiterID = 0
        var cancelledWaiters: Set<Int> = []
        var pidfdClosed = false
    }

    /// Watches `pid`. `isOurChild` controls whether its exit status is reaped.
    public init(pid: Int32, isOurChild: Bool) throws(ProcessError) {
        let fd = csup_pidfd_open(pid)
        guard fd >= 0 else { throw ProcessError(pid: pid, errno: errno) }
        self.pid = pid
        self.pidfd = fd
        self.state = Mutex(WaitState())
        startWaiterThread(isOurChild: isOurChild)
    }

    /// Adopts a process started by a previous supervisor: one that is no
    /// longer our child (its parent died), or still is (this process
    /// re-executed itself in place), whose exit status is then reaped.
    public static func adopt(pid: Int32) throws(ProcessError) -> ChildProcess {
        try ChildProcess(pid: pid, isOurChild: csup_is_child(pid) != 0)
    }

    /// Sends `signal`; false once the process is gone.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        state.withLock { state in
            guard !state.pidfdClosed else { return false }
            return csup_pidfd_send_signal(pidfd, signal) == 0
        }
    }

    public var exitStatus: ExitStatus? { state.withLock { $0.status } }

    /// Waits until the process has exited (returns at once if it has).
    /// Returns nil only when the calling task is cancelled first.
    public func waitForExit() async -> ExitStatus? {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ExitStatus?, Never>) in
                let ready: ExitStatus?? = state.withLock { state in
                    if let status = state.status { return .some(status) }
                    if state.cancelledWaiters.contains(id) { return .some(nil) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.cancelledWaiters.insert(id)
                return state.waiters.removeValue(forKey: id)
            }
            waiter?.resume(returning: nil)
        }
    }

    private func startWaiterThread(isOurChild: Bool) {
        let fd = pidfd
        let pid = self.pid
        BlockingThread.start(name: "pidfd-\(pid)") { [self] in
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while true {
                let rc = poll(&pollfd, 1, -1)
                if rc > 0 { break }
                if rc < 0 && errno != EINTR { break }
            }
            var status: ExitStatus = .unknown
            if isOurChild {
                var code: Int32 = 0
                var value: Int32 = 0
                if csup_pidfd_reap(fd, &code, &value) == 0 {
                    switch Int(code) {
                    case Int(CLD_EXITED): status = .exited(code: value)
                    case Int(CLD_KILLED), Int(CLD_DUMPED): status = .signaled(signal: value)
                    default: status = .unknown
                    }
                }
            }
            let waiters = self.state.withLock { state in
                state.status = status
                state.pidfdClosed = true
                close(fd)
                let waiters = Array(state.waiters.values)
                state.waiters = [:]
                return waiters
            }
            for waiter in waiters { waiter.resume(returning: status) }
        }
    }
}

public enum SignalName {
    static let table: [(String, Int32)] = [
        ("SIGHUP", SIGHUP), ("SIGINT", SIGINT), ("SIGQUIT", SIGQUIT), ("SIGKILL", SIGKILL),
        ("SIGUSR1", SIGUSR1), ("SIGUSR2", SIGUSR2), ("SIGTERM", SIGTERM), ("SIGSEGV", SIGSEGV),
        ("SIGABRT", SIGABRT), ("SIGPIPE", SIGPIPE), ("SIGWINCH", SIGWINCH), ("SIGBUS", SIGBUS),
        ("SIGILL", SIGILL), ("SIGFPE", SIGFPE),
    ]
    public static func name(of signal: Int32) -> String {
        table.first { $0.1 == signal }?.0 ?? "signal \(signal)"
    }
}
