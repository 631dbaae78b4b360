#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization

/// No signal kills the daemon silently. SIGTERM and SIGINT stop it
/// (ServiceGroup's graceful shutdown); the signals below would otherwise end
/// it at once with no log line, leaving its socket behind (and systemd counts
/// a death by SIGHUP as clean). They are logged and ignored instead. Signals
/// whose default is a core dump (SIGQUIT, SIGSEGV, SIGABRT, SIGXCPU …) or a
/// stop keep their default.
///
/// The app never inherits any of this: the spawner resets every disposition
/// to the default in the child (an ignored signal would survive execve).
enum SignalPolicy {
    /// Logged and ignored. SIGHUP is reserved for the in-place re-exec.
    static let logged: [(number: Int32, name: String)] = [
        (SIGHUP, "SIGHUP"), (SIGUSR1, "SIGUSR1"), (SIGUSR2, "SIGUSR2"), (SIGALRM, "SIGALRM"),
        (SIGVTALRM, "SIGVTALRM"), (SIGPROF, "SIGPROF"), (SIGIO, "SIGIO"), (SIGPWR, "SIGPWR"), (SIGSTKFLT, "SIGSTKFLT"),
    ] + (__libc_current_sigrtmin()...__libc_current_sigrtmax()).map { ($0, "SIGRTMIN+\($0 - __libc_current_sigrtmin())") }

    private static let sources = Mutex<[any DispatchSourceSignal]>([])
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
                        logger.warning("SIGHUP received\(times): re-exec is not built yet; ignored")
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
