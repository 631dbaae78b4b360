#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore
import SupervisorShared

/// A test knob, documented in docs/operations.md: with
/// `SUPERVISOR_FAULT_EXIT_AT=<phase>` in its environment the daemon exits at
/// once (`_exit(99)`, like a crash: no clean-up, children left running) right
/// after journalling that phase. The fault-injection suite uses it to kill
/// the supervisor at every phase of a swap and check what recovery does.
enum FaultInjection {
    static let phase: String? = getenv("SUPERVISOR_FAULT_EXIT_AT").map { String(cString: $0) }

    static func exitIfRequested(at current: SwapPhase) {
        guard let phase, phase == current.rawValue else { return }
        let message = "supervisord: SUPERVISOR_FAULT_EXIT_AT=\(phase): exiting now, as a crash would\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
        _exit(99)
    }
}
