#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// What to start. `executable` is argv[0] and the path executed.
public struct SpawnRequest: Sendable {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    /// Open descriptors passed to the child as 3, 4, … in this order.
    public var passedDescriptors: [Int32]
    /// Set `LISTEN_PID` to the child's own pid (socket activation protocol).
    public var setListenPID: Bool
    /// When set, the child's stdout and stderr (stdin is /dev/null); else all are inherited.
    public var outputDescriptor: Int32?
    /// When set, the child's stderr, overriding `outputDescriptor` for it.
    public var errorDescriptor: Int32?
    /// Start in a new session (setsid): apps yes, short commands no.
    public var newSession: Bool
    /// Run as this identity (nil: the supervisor's own). `environment` is
    /// used as given: the caller sets HOME, USER and LOGNAME.
    public var credentials: ProcessCredentials?
    /// Under journald: the child connects a journal stream of its own under
    /// this identifier as its stdout and stderr (nil: inherited, as are they
    /// when there is no journald to connect to). See `JournalStream`.
    public var journalIdentifier: String?

    public init(
        executable: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String? = nil, passedDescriptors: [Int32] = [], setListenPID: Bool = false,
        outputDescriptor: Int32? = nil, errorDescriptor: Int32? = nil, newSession: Bool = true,
        credentials: ProcessCredentials? = nil
    ) {
        self.credentials = credentials
        self.outputDescriptor = outputDescriptor
        self.errorDescriptor = errorDescriptor
        self.newSession = newSession
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.passedDescriptors = passedDescriptors
        self.setListenPID = setListenPID
    }
}

public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public let executable: String
    public let errno: Int32
    public var description: String {
        "could not start \(executable): \(String(cString: strerror(errno)))"
    }
}

/// Starts long-lived children in their own session, without a parent-death
/// signal, so they can outlive the supervisor.
public enum ProcessSpawner {
    public static func spawn(_ request: SpawnRequest) throws(SpawnError) -> ChildProcess {
        let argv = [request.executable] + request.arguments
        let journal = request.journalIdentifier.flatMap(JournalStream.init(identifier:))
        var envEntries = request.environment
            .filter { $0.key != "LISTEN_PID" && !(journal != nil && $0.key == "JOURNAL_STREAM") }
            .sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value)" }

        // A "LISTEN_PID=" entry with room for the digits the child writes in.
        let listenPIDPrefix = "LISTEN_PID="
        if request.setListenPID {
            envEntries.append(listenPIDPrefix + String(repeating: "0", count: 15))
        }

        let cArgv = argv.map { strdup($0) } + [nil]
        // The JOURNAL_STREAM entry, last, is the child's to fill in (see `JournalStream`).
        var cEnv = envEntries.map { strdup($0) }
        if let journal { cEnv.append(journal.environmentEntry) }
        cEnv.append(nil)
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        let slot: UnsafeMutablePointer<CChar>? =
            request.setListenPID
            ? cEnv[envEntries.count - 1].map { $0 + listenPIDPrefix.utf8.count } : nil

        var error: Int32 = 0
        func spawn(_ credentials: UnsafePointer<csup_credentials>?) -> pid_t {
            request.passedDescriptors.withUnsafeBufferPointer { fds in
                cArgv.withUnsafeBufferPointer { argvPointer in
                    cEnv.withUnsafeBufferPointer { envPointer in
                        JournalStream.withC(journal, slot: journal.map { _ in cEnv[cEnv.count - 2] }) { stream in
                            csup_spawn(
                                request.executable, argvPointer.baseAddress, envPointer.baseAddress,
                                request.workingDirectory, fds.baseAddress, Int32(fds.count), slot,
                                request.outputDescriptor ?? -1, request.errorDescriptor ?? request.outputDescriptor ?? -1,
                                request.newSession ? 1 : 0, credentials, stream, &error)
                        }
                    }
                }
            }
        }
        let pid = request.credentials.map { $0.withC(spawn) } ?? spawn(nil)
        guard pid > 0 else {
            throw SpawnError(executable: request.executable, errno: error)
        }
        do {
            return try ChildProcess(pid: pid, isOurChild: true)
        } catch {
            // pidfd_open cannot fail for a child we have not reaped; be safe anyway.
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw SpawnError(executable: request.executable, errno: error.errno)
        }
    }
}
