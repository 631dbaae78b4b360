#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import SupervisorCore
import SupervisorShared
import SystemBindings

/// SIGHUP (`systemctl reload supervisor@NAME`, a package upgrade): the daemon
/// replaces its own image with the installed `supervisord`, keeping its pid
/// (systemd keeps tracking it), its lock, its control socket and the app's
/// listening sockets; the new image re-adopts the app from the state journal
/// as it would after a crash, without restarting it.
///
/// Two steps, so that a broken new binary never leaves the service without a
/// supervisor: `check()` runs the new file's `--version` and `--config …
/// --check` as children (an image that cannot even do that is refused, and
/// this one goes on); `exec()` then replaces the image and returns only if
/// execve failed.
struct InPlaceReexec: Sendable {
    /// The arguments this image was started with: the new one gets the same.
    let arguments: [String]
    let configPath: String
    /// What crosses execve (the lock, the control socket, the app's sockets).
    let carried: [ReexecHandover.Descriptor]

    /// The installed `supervisord`: the file this image was started from. A
    /// package upgrade replaces it (the running image then shows as
    /// "(deleted)"), and that path is what runs next.
    static func installedPath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let deleted = " (deleted)"
        return target.hasSuffix(deleted) ? String(target.dropLast(deleted.count)) : target
    }

    struct Checked: Sendable {
        let path: String
        /// What the new image says with `--version`.
        let version: String
        let reexec: InPlaceReexec

        /// Replaces this process's image. Returns only when execve failed, with why.
        func exec() -> String {
            reexec.exec(path: path)
        }
    }

    /// Why the new image is not run.
    struct Refusal: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs the installed binary's `--version` and `--check` (each bounded).
    func check(timeout: Duration = .seconds(30)) async -> Result<Checked, Refusal> {
        guard let path = Self.installedPath() else {
            return .failure(Refusal(description: "cannot read /proc/self/exe: \(String(cString: strerror(errno)))"))
        }
        guard access(path, X_OK) == 0 else {
            return .failure(Refusal(description: "\(path) is not there or not executable: \(String(cString: strerror(errno)))"))
        }
        // The checks are not this service: no notify socket, no sockets of ours.
        let environment = ProcessEnvironment.current().filter { key, _ in
            !["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"].contains(key)
                && !key.hasPrefix(ReexecHandover.prefix)
        }
        let version: String
        switch await Self.run([path, "--version"], environment: environment, timeout: .seconds(10)) {
        case .failure(let refusal): return .failure(refusal)
        case .success(let output): version = output.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
        }
        guard !version.isEmpty else { return .failure(Refusal(description: "\(path) --version printed nothing")) }
        // With this image's own arguments: the new binary must accept them, speak this
        // handover, and find the config good.
        let ownArguments = Array(arguments.dropFirst())
        switch await Self.run([path] + ownArguments + ["--handover-protocol"], environment: environment, timeout: .seconds(10)) {
        case .failure(let refusal):
            return .failure(Refusal(description: "\(refusal) (a supervisord that cannot take over a running one in place: restart the service to switch to it)"))
        case .success(let output) where output.trimmingCharacters(in: .whitespaces) != ReexecHandover.protocolVersion:
            return .failure(Refusal(description: "\(path) speaks handover protocol \"\(UntrustedText.escaped(String(output.prefix(40))))\", not \(ReexecHandover.protocolVersion): restart the service to switch to it"))
        case .success:
            break
        }
        if case .failure(let refusal) = await Self.run([path] + ownArguments + ["--check"], environment: environment, timeout: timeout) {
            return .failure(refusal)
        }
        return .success(Checked(path: path, version: UntrustedText.escaped(String(version.prefix(100))), reexec: self))
    }

    private static func run(_ argv: [String], environment: [String: String], timeout: Duration) async -> Result<String, Refusal> {
        let shown = argv.joined(separator: " ")
        do {
            let outcome = try await CommandRunner.run(argv, environment: environment, timeout: timeout, outputLimit: 1 << 16)
            guard outcome.succeeded else {
                return .failure(Refusal(description: outcome.failureDescription))
            }
            return .success(outcome.output)
        } catch {
            return .failure(Refusal(description: "`\(shown)` could not run: \(error)"))
        }
    }

    /// execve with the carried descriptors made inheritable and named in the
    /// environment, every other one close-on-exec (libraries open some without
    /// it), and this image's file open as `previous`, to be run again should
    /// the new one not start. On failure they are made close-on-exec again.
    private func exec(path: String) -> String {
        _ = csup_cloexec_from(3)
        var carried = carried
        let previous = open("/proc/self/exe", O_RDONLY)
        if previous >= 0 { carried.append(.init(name: "previous", fd: previous)) }
        defer { if previous >= 0 { close(previous) } }
        for descriptor in carried { _ = fcntl(descriptor.fd, F_SETFD, 0) }
        // systemd's LISTEN_* were for the first image (its pid is ours): the handover names what is open now.
        var environment = ProcessEnvironment.current().filter { key, _ in
            !key.hasPrefix(ReexecHandover.prefix) && !["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"].contains(key)
        }
        for (key, value) in ReexecHandover.environment(carried, from: SupervisorVersion.current, arguments: arguments) { environment[key] = value }
        let argv = [path] + arguments.dropFirst()
        let envp = environment.map { "\($0.key)=\($0.value)" }
        let failure = withCStrings(argv) { argvPointers in
            withCStrings(envp) { envPointers in
                execve(path, argvPointers, envPointers)
                return errno
            }
        }
        for descriptor in carried { _ = fcntl(descriptor.fd, F_SETFD, FD_CLOEXEC) }
        return String(cString: strerror(failure))
    }
}

/// NULL-terminated C string arrays for execve, alive for `body`.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
