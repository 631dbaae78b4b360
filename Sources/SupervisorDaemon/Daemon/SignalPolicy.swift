#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization

/// No signal kills the daemon silently. SIGTERM and SIGINT stop it
/// (ServiceGroup's graceful shutdown); SIGHUP re-executes it in place once
/// the daemon has set `onHangup` (before that, it is logged and ignored); the
/// others below would otherwise end it at once with no log line, leaving its
/// socket behind. They are logged and ignored instead. Signals
/// whose default is a core dump (SIGQUIT, SIGSEGV, SIGABRT, SIGXCPU …) or a
/// stop keep their default.
///
/// The app never inherits any of this: the spawner resets every disposition
/// to the default in the child (an ignored signal would survive execve).
enum SignalPolicy {
    /// Logged and ignored (SIGHUP: handed to `onHangup` once set).
    static let logged: [(number: Int32, name: String)] = [
        (SIGHUP, "SIGHUP"), (SIGUSR1, "SIGUSR1"), (SIGUSR2, "SIGUSR2"), (SIGALRM, "SIGALRM"),
        (SIGVTALRM, "SIGVTALRM"), (SIGPROF, "SIGPROF"), (SIGIO, "SIGIO"), (SIGPWR, "SIGPWR"), (SIGSTKFLT, "SIGSTKFLT"),
    ] + (__libc_current_sigrtmin()...__libc_current_sigrtmax()).map { ($0, "SIGRTMIN+\($0 - __libc_current_sigrtmin())") }

    private static let sources = Mutex<[any DispatchSourceSignal]>([])
    private static let hangup = Mutex<(@Sendable () -> Void)?>(nil)

    /// What SIGHUP does from now on (the daemon sets it once it can re-exec).
    static func onHangup(_ handler: @escaping @Sendable () -> Void) {
        hangup.withLock { $0 = handler }
    }
    private static let queue = DispatchQueue(label: "supervisord.signals")

    /// Installs the policy once; the sources live as long as the process.
    static func install(logger: Logger) {
        // Ignored without a word: a broken pipe is an EPIPE from write(2)
        // where it happens, and a line per SIGPIPE could loop when the
        // broken pipe is stderr itself.
        signal(SIGPIPE, SIG_IGN)
        sources.withLock { sources in
            guard sources.isEmpty else { return }
            for (number, name) in logged {
                // Ignored until libdispatch installs its own handler for the source.
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler {
                    let times = source.data > 1 ? " (\(source.data) times)" : ""
                    if number == SIGHUP {
                        if let handler = hangup.withLock({ $0 }) {
                            handler()
                        } else {
                            logger.warning("SIGHUP received\(times) while starting; ignored: send it again once the service is ready")
                        }
                    } else {
                        logger.warning("received \(name)\(times); ignored")
                    }
                }
                source.resume()
                sources.append(source)
            }
        }
    }
}
