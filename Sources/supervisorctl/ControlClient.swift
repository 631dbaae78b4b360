#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import SystemBindings

/// HTTP over the daemon's unix socket (libcurl), mapping transport failures
/// to the CLI's exit codes: 3 unreachable, 1 permission denied.
struct ControlClient {
    let socketPath: String
    var timeout: Duration = .seconds(10)

    func get(_ path: String) throws(CLIFailure) -> HTTPResponse {
        try checkSocket()
        let request = HTTPRequest(
            url: "http://localhost\(path)", unixSocketPath: socketPath, timeout: timeout,
            connectTimeout: .seconds(3))
        do {
            return try request.perform()
        } catch {
            throw describe(error)
        }
    }

    private func checkSocket() throws(CLIFailure) {
        var info = stat()
        if stat(socketPath, &info) != 0 {
            throw CLIFailure(
                exitCode: 3,
                message: "supervisord is not reachable: \(socketPath) \(errno == ENOENT ? "does not exist" : String(cString: strerror(errno))). Is the daemon running? (systemctl status supervisor@NAME)")
        }
        if (info.st_mode & S_IFMT) != S_IFSOCK {
            throw CLIFailure(exitCode: 3, message: "\(socketPath) is not a socket")
        }
    }

    private func describe(_ error: HTTPTransportError) -> CLIFailure {
        if error.osErrno == EACCES || error.osErrno == EPERM {
            return CLIFailure(
                exitCode: 1,
                message: "permission denied on \(socketPath): run as root or as a member of the group in [control] group")
        }
        if error.kind == .timedOut {
            return CLIFailure(exitCode: 3, message: "supervisord at \(socketPath) did not answer in time (\(error.message)); it may be hung")
        }
        return CLIFailure(exitCode: 3, message: "supervisord is not reachable at \(socketPath): \(error.message)")
    }

    /// The error a non-2xx answer carries, as the daemon put it.
    static func failure(from response: HTTPResponse) -> CLIFailure {
        if let decoded = try? JSONDecoder().decode(ControlFailure.self, from: Data(response.body)) {
            let code: Int32 = decoded.error.code == .busy ? 4 : 1
            var message = "\(decoded.error.message) [\(decoded.error.code)]"
            if let phase = decoded.error.phase { message += " (phase: \(phase))" }
            return CLIFailure(exitCode: code, message: message)
        }
        return CLIFailure(exitCode: 1, message: "supervisord answered HTTP \(response.status): \(response.bodyText)")
    }
}
