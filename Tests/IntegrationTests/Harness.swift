#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

/// Where the built executables are: `SUPERVISOR_BIN_DIR`, else next to the test binary.
enum Binaries {
    static let directory: String = {
        if let fromEnvironment = ProcessInfo.processInfo.environment["SUPERVISOR_BIN_DIR"] {
            return fromEnvironment
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // swift test may run .build/debug/xxx.xctest directly, or from inside a bundle dir.
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("supervisord").path), url.path != "/" {
            url = url.deletingLastPathComponent()
        }
        return url.path
    }()

    static var supervisord: String { directory + "/supervisord" }
    static var supervisorctl: String { directory + "/supervisorctl" }
    static var demoApp: String { directory + "/demo-app" }
}

/// The repository's files: docs, examples, units, scripts.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func path(_ relative: String) -> String { root + "/" + relative }
}

/// A temporary directory removed when the test ends (even on failure).
final class TemporaryDirectory {
    let path: String

    init(_ prefix: String = "supervisor-test") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(created != nil, "mkdtemp failed")
        path = String(cString: created!)
        chmod(path, 0o755)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ contents: String, mode: Int = 0o644) -> String {
        let target = file(name)
        try? FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: target, contents: Data(contents.utf8), attributes: [.posixPermissions: mode])
        return target
    }
}

/// Ports nobody listens on right now.
enum FreePort {
    static func pick(_ count: Int = 1) -> [Int] {
        var ports: [Int] = []
        var sockets: [Int32] = []
        while ports.count < count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
            sockets.append(fd)
        }
        sockets.forEach { close($0) }
        return ports
    }
}

/// The result of running a command to completion.
struct CommandResult {
    let exitCode: Int32
    let stdout: String
    let stderr: String
}

enum Command {
    /// Runs a command, killing it if it outlives `timeout` (a hang is a failure, not a wait).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, timeout: TimeInterval = 30) throws -> CommandResult {
        // Output goes to files, not pipes: nothing to drain while we wait.
        let scratch = TemporaryDirectory("command")
        let outPath = scratch.file("stdout"), errPath = scratch.file("stderr")
        let process = try TestProcess(executable, arguments, environment: environment, stdout: outPath, stderr: errPath)
        if !process.waitForExit(timeout: timeout) {
            process.signal(SIGKILL)
            process.waitForExit(timeout: 10)
            Issue.record("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)s")
        }
        return CommandResult(
            exitCode: process.exitCode ?? -1,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: TimeInterval = 20, interval: TimeInterval = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(useconds_t(interval * 1_000_000))
    }
    return try condition()
}

func processExists(_ pid: Int32) -> Bool {
    if kill(pid, 0) != 0 { return errno == EPERM }
    // A zombie still answers kill(0); read its state.
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    guard let close = stat.lastIndex(of: ")") else { return true }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

/// One GET to 127.0.0.1:port with curl's CLI semantics, via URLSession-free sockets.
func httpGet(port: Int, path: String = "/") -> (status: Int, body: String)? {
    let result = try? Command.run("/usr/bin/curl", ["-s", "-m", "2", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"], timeout: 5)
    guard let result, result.exitCode == 0 else { return nil }
    var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
    guard let code = lines.popLast().flatMap({ Int($0) }) else { return nil }
    return (code, lines.joined(separator: "\n"))
}

/// The version demo-app answers with on `port` (its `GET /` says
/// "demo-app <version>"), or nil when nothing answers 200.
func servedVersion(port: Int) -> String? {
    guard let answer = httpGet(port: port), answer.status == 200 else { return nil }
    return answer.body.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: " ").last
}

/// bind(2) or connect(2) of `fd` to the unix socket at `path`; 0 or -1 (errno set).
func unixSocket(_ fd: Int32, _ operation: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32, path: String) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { operation(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// The pids whose parent is `pid` (from /proc), zombies excluded.
func childPIDs(of pid: Int32) -> [Int32] {
    ProcessTable.children(of: pid).sorted()
}

/// Whether something listens on a loopback TCP port.
func isListening(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return rc == 0
}
