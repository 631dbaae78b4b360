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

    /// POSTs `body` and hands each NDJSON line to `onLine` as it arrives.
    /// Returns the HTTP status and, for non-200 answers, the whole body.
    func postStreaming(_ path: String, body: [UInt8], onLine: (String) -> Void) throws(CLIFailure) -> HTTPResponse {
        try checkSocket()
        let request = HTTPRequest(
            method: "POST", url: "http://localhost\(path)", unixSocketPath: socketPath,
            headers: ["Content-Type: application/json"], body: body, timeout: .seconds(3600),
            connectTimeout: .seconds(3))
        var pending: [UInt8] = []
        var everything: [UInt8] = []
        let status: Int
        do {
            status = try request.perform { chunk in
                everything.append(contentsOf: chunk)
                pending.append(contentsOf: chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    onLine(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
            }
        } catch {
            throw describe(error)
        }
        if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
        return HTTPResponse(status: status, body: everything)
    }

    private func checkSocket() throws(CLIFailure) {
        var info = stat()
        if stat(socketPath, &info) != 0 {
            throw CLIFailure(
                exitCode: 3, code: .unreachable,
                message: "supervisord is not reachable: \(socketPath) \(errno == ENOENT ? "does not exist" : String(cString: strerror(errno))). Is the daemon running? (systemctl status supervisor@\(serviceName(socketPath: socketPath)))")
        }
        if (info.st_mode & S_IFMT) != S_IFSOCK {
            throw CLIFailure(exitCode: 3, code: .unreachable, message: "\(socketPath) is not a socket")
        }
    }

    private func describe(_ error: HTTPTransportError) -> CLIFailure {
        if error.osErrno == EACCES || error.osErrno == EPERM {
            return CLIFailure(
                exitCode: 1, code: .forbidden,
                message: "permission denied on \(socketPath): run as root or as a member of the group in [control] group")
        }
        if error.kind == .timedOut {
            return CLIFailure(exitCode: 3, code: .unreachable, message: "supervisord at \(socketPath) did not answer in time (\(error.message)); it may be hung")
        }
        return CLIFailure(exitCode: 3, code: .unreachable, message: "supervisord is not reachable at \(socketPath): \(error.message)")
    }

    /// The error a non-2xx answer carries, as the daemon put it.
    static func failure(from response: HTTPResponse) -> CLIFailure {
        if let decoded = try? JSONDecoder().decode(ControlFailure.self, from: Data(response.body)) {
            let code: Int32 = decoded.error.code == .busy ? 4 : 1
            let message = "\(decoded.error.message) [\(decoded.error.code)]"
            return CLIFailure(exitCode: code, code: decoded.error.code, message: message, phase: decoded.error.phase)
        }
        return CLIFailure(exitCode: 1, code: .unexpectedAnswer, message: "supervisord answered HTTP \(response.status): \(response.bodyText)")
    }
}
