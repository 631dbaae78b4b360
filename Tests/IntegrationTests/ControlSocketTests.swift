#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// Sends raw bytes to a unix socket and returns what comes back until close.
func rawExchange(socket path: String, _ request: String, timeout: Int = 5) -> String {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    let rc = unixSocket(fd, connect, path: path)
    guard rc == 0 else { return "connect failed: errno \(errno)" }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = request.withCString { send(fd, $0, strlen($0), 0) }
    return readUntilClosed(fd)
}

/// Everything `fd` delivers until the peer closes it (or its receive timeout passes).
func readUntilClosed(_ fd: Int32) -> String {
    var response = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        response.append(contentsOf: buffer[0..<count])
    }
    return String(decoding: response, as: UTF8.self)
}

@Suite(.timeLimit(.minutes(2)))
struct ControlSocketTests {
    @Test func socketIsGroupOnly() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        _ = try #require(daemon.waitUntilRunning())
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
    }

    @Test(arguments: [
        "BLAH / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: banana\r\n\r\n",
        "\u{01}\u{02}\u{03} not http at all\r\n\r\n",
    ])
    func malformedHTTPGets400AndTheDaemonKeepsServing(request: String) throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let before = try #require(daemon.waitUntilRunning())
        let answer = rawExchange(socket: daemon.socket, request)
        #expect(answer.hasPrefix("HTTP/1.1 400"), "got: \(answer)")
        #expect(answer.contains("\"code\":\"bad_request\""))
        #expect(answer.contains("malformed HTTP request"))
        let after = try #require(daemon.status())
        #expect(after["pid"] as? Int == before["pid"] as? Int)
        #expect(daemon.process?.isRunning == true)
    }

    @Test func unknownPathsAndMethodsGetJSONErrors() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        _ = try #require(daemon.waitUntilRunning())
        let notFound = rawExchange(socket: daemon.socket, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(notFound.hasPrefix("HTTP/1.1 404"))
        #expect(notFound.contains("\"code\":\"not_found\""))
        let wrongMethod = rawExchange(socket: daemon.socket, "DELETE /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(wrongMethod.hasPrefix("HTTP/1.1 405"))
        let huge = String(repeating: "x", count: 70_000)
        let tooLarge = rawExchange(socket: daemon.socket, "POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: \(huge.utf8.count)\r\nConnection: close\r\n\r\n\(huge)")
        #expect(tooLarge.hasPrefix("HTTP/1.1 400"), "got: \(tooLarge.prefix(200))")
        #expect(daemon.status() != nil)
    }

    @Test func unprivilegedUserIsRefusedAndNothingChanges() throws {
        guard getuid() == 0 else {
            Issue.record("SKIPPED LOUDLY: this test needs root to run a client as 'nobody' (run scripts/test.sh as root, as CI does)")
            return
        }
        let daemon = DaemonUnderTest()
        try daemon.start()
        let before = try #require(daemon.waitUntilRunning())
        let asNobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", Binaries.supervisorctl, "--socket", daemon.socket, "status", "--json"]

        // With the socket at its 0660 mode, the kernel refuses to connect.
        let denied = try Command.run("/usr/bin/setpriv", asNobody)
        #expect(denied.exitCode == 1, "stderr: \(denied.stderr)")
        #expect(denied.stderr.contains("permission denied"), "stderr: \(denied.stderr)")

        // Loosened by hand (a wrong SocketMode, a chmod), the peer-credential check still refuses.
        chmod(daemon.socket, 0o666)
        let forbidden = try Command.run("/usr/bin/setpriv", asNobody)
        #expect(forbidden.exitCode == 1, "stderr: \(forbidden.stderr)")
        #expect(forbidden.stderr.contains("[forbidden]"), "stderr: \(forbidden.stderr)")
        #expect(forbidden.stderr.contains("user nobody (uid 65534) is not root and no [control] group is configured"), "\(forbidden.stderr)")
        // --json: one object, the refusal; no status leaked to a refused peer.
        let refusal = try? JSONSerialization.jsonObject(with: Data(forbidden.stdout.utf8)) as? [String: Any]
        #expect((refusal?["error"] as? [String: Any])?["code"] as? String == "forbidden", "\(forbidden.stdout)")
        #expect(refusal?["pid"] == nil && !forbidden.stdout.contains("sha256"), "\(forbidden.stdout)")
        #expect(daemon.log.contains("refused control request from user nobody (uid 65534)"))

        let after = try #require(daemon.status())
        #expect(after["pid"] as? Int == before["pid"] as? Int)
        #expect(after["restarts"] as? Int == 0)
    }

    @Test func memberOfTheControlGroupIsAllowed() throws {
        guard getuid() == 0 else {
            Issue.record("SKIPPED LOUDLY: this test needs root to run a client as another user (run scripts/test.sh as root, as CI does)")
            return
        }
        let daemon = DaemonUnderTest(.init(extraControl: "group = \"nogroup\""))
        try daemon.start()
        _ = try #require(daemon.waitUntilRunning())
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0)
        let nogroup = getgrnam("nogroup").pointee.gr_gid
        #expect(info.st_gid == nogroup)
        let result = try Command.run("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", Binaries.supervisorctl, "--socket", daemon.socket, "status", "--json"])
        #expect(result.exitCode == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("\"phase\":\"running\""))
    }

    @Test func unreachableDaemonExits3() throws {
        let directory = TemporaryDirectory()
        let missing = try Command.run(Binaries.supervisorctl, ["--socket", directory.file("nothing.sock"), "status"])
        #expect(missing.exitCode == 3)
        #expect(missing.stderr.contains("not reachable"))
        #expect(missing.stderr.contains("does not exist"))

        // A socket file nobody listens on (a daemon that died).
        let stale = directory.file("stale.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        _ = unixSocket(fd, bind, path: stale)
        close(fd)
        let dead = try Command.run(Binaries.supervisorctl, ["--socket", stale, "status"])
        #expect(dead.exitCode == 3, "stderr: \(dead.stderr)")
        #expect(dead.stderr.contains("not reachable"))
        #expect(dead.stderr.contains("connection refused (nothing is listening there)"), "plain words, not libcurl's: \(dead.stderr)")
    }

    @Test func socketChoice() throws {
        let both = try Command.run(Binaries.supervisorctl, ["--socket", "/tmp/x.sock", "--name", "x", "status"])
        #expect(both.exitCode == 2)
        #expect(both.stderr.contains("not both"))

        let daemon = DaemonUnderTest()
        try daemon.start()
        _ = try #require(daemon.waitUntilRunning())
        var environment = ProcessInfo.processInfo.environment
        environment["SUPERVISOR_SOCKET"] = daemon.socket
        let fromEnvironment = try Command.run(Binaries.supervisorctl, ["status", "--json"], environment: environment)
        #expect(fromEnvironment.exitCode == 0, "stderr: \(fromEnvironment.stderr)")
        #expect(fromEnvironment.stdout.contains("\"name\":\"itest\""))
    }
}
