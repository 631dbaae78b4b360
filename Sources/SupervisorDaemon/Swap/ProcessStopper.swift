#if canImport(Glibc)
import Glibc
#endif
import SystemBindings

/// Stops a process: `signal`, then SIGKILL after `timeout`.
enum ProcessStopper {
    enum Result: Sendable, CustomStringConvertible {
        case stopped(ExitStatus)
        case killed(ExitStatus)
        case unkillable

        var description: String {
            switch self {
            case .stopped(let status): "\(status)"
            case .killed(let status): "SIGKILLed after the stop timeout (\(status))"
            case .unkillable: "survived SIGKILL"
            }
        }
    }

    static func stop(_ process: ChildProcess, signal: Int32, timeout: Duration) async -> Result {
        if let status = process.exitStatus { return .stopped(status) }
        process.signal(signal)
        if let status = await wait(process, timeout) { return .stopped(status) }
        process.signal(SIGKILL)
        if let status = await wait(process, .seconds(10)) { return .killed(status) }
        return .unkillable
    }

    private static func wait(_ process: ChildProcess, _ timeout: Duration) async -> ExitStatus? {
        await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask { await process.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? process.exitStatus
        }
    }
}
