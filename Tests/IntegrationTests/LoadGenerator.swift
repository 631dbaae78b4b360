#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

/// What wrk counted.
struct LoadReport: CustomStringConvertible {
    var requests = 0
    var non2xx = 0
    var connectErrors = 0
    var readErrors = 0
    var writeErrors = 0
    var timeouts = 0
    /// wrk's slowest request (its "Latency" line's Max), in milliseconds.
    var maxLatencyMS: Double?
    var raw = ""

    var socketErrors: Int { connectErrors + readErrors + writeErrors + timeouts }

    var description: String {
        "\(requests) requests, \(non2xx) non-2xx, socket errors: connect \(connectErrors), read \(readErrors), write \(writeErrors), timeout \(timeouts)"
    }

    /// wrk's durations: "654.00us", "1.23ms", "2.05s", "1.00m".
    static func milliseconds(_ text: String) -> Double? {
        for (unit, scale) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)] where text.hasSuffix(unit) {
            return Double(text.dropLast(unit.count)).map { $0 * scale }
        }
        return nil
    }

    static func parse(_ output: String) -> LoadReport {
        var report = LoadReport(raw: output)
        for line in output.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let words = line.components(separatedBy: CharacterSet(charactersIn: " ,")).filter { !$0.isEmpty }
            if line.hasPrefix("Latency"), words.count >= 4 {
                report.maxLatencyMS = milliseconds(words[3])
            } else if line.contains("requests in"), let first = words.first, let count = Int(first) {
                report.requests = count
            } else if line.hasPrefix("Non-2xx or 3xx responses:"), let last = words.last, let count = Int(last) {
                report.non2xx = count
            } else if line.hasPrefix("Socket errors:") {
                func value(after key: String) -> Int {
                    guard let index = words.firstIndex(of: key), index + 1 < words.count else { return 0 }
                    return Int(words[index + 1]) ?? 0
                }
                report.connectErrors = value(after: "connect")
                report.readErrors = value(after: "read")
                report.writeErrors = value(after: "write")
                report.timeouts = value(after: "timeout")
            }
        }
        return report
    }
}

extension LoadReport {
    /// Prints the `LOAD` line the closing notes quote, and expects that not
    /// one request failed: no non-2xx answer and no socket error.
    func expectNothingFailed(_ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        print("LOAD \(label): \(self)")
        #expect(non2xx == 0 && socketErrors == 0, "\(label): \(self)", sourceLocation: sourceLocation)
    }

    /// Behind Caddy: no failed answer, and no more socket errors than Caddy 2.6 itself causes
    /// on a config reload, whoever reloads it (it resets a few queued client connections:
    /// 0–13 measured per reload, `ProxyConformanceTests`; docs/operations.md). Behind nginx,
    /// or with no reload, nothing may fail.
    func expectNothingFailed(_ label: String, through kind: ProxyKindUnderTest, caddyReloads: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        guard kind != .nginx else { return expectNothingFailed(label, sourceLocation: sourceLocation) }
        print("LOAD \(label): \(self)")
        #expect(non2xx == 0 && socketErrors <= 13 * caddyReloads, "\(label): \(self)", sourceLocation: sourceLocation)
    }
}

/// wrk through the proxy, running while a test acts; `finish()` stops it
/// (SIGINT, which wrk answers with its summary) and parses what it counted.
final class LoadGenerator {
    private let process: ChildProcess
    private let output: String
    private let scratch = TemporaryDirectory("wrk")

    static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") }

    init(port: Int, connections: Int = 16, closeConnections: Bool = true, maxSeconds: Int = 120) throws {
        output = scratch.file("wrk.out")
        var arguments = ["-t2", "-c\(connections)", "-d\(maxSeconds)s", "--timeout", "5s"]
        if closeConnections { arguments += ["-H", "Connection: close"] }
        arguments.append("http://127.0.0.1:\(port)/")
        // Spawned with default signal dispositions (the test runner's ignored
        // SIGINT would otherwise be inherited and wrk could not be stopped).
        let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(fd) }
        process = try ProcessSpawner.spawn(
            SpawnRequest(executable: "/usr/bin/wrk", arguments: arguments, environment: ProcessInfo.processInfo.environment, outputDescriptor: fd, newSession: false))
        usleep(300_000)  // let it reach a steady state before the test acts
    }

    deinit {
        if process.exitStatus == nil { process.signal(SIGKILL) }
    }

    func finish() -> LoadReport {
        usleep(300_000)
        process.signal(SIGINT)
        if !eventually(timeout: 15, { process.exitStatus != nil }) {
            process.signal(SIGKILL)
            Issue.record("wrk did not stop on SIGINT")
        }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        let report = LoadReport.parse(text)
        if report.requests == 0 { Issue.record("wrk counted no requests: \(text)") }
        return report
    }
}

/// Versions of the app to swap between: each a copy of the demo-app ELF
/// with its version and switches baked in (a trailer line demo-app reads from
/// /proc/self/exe), so each is a distinct compiled binary, as users' services
/// are: its own sha256, and a `/proc/PID/exe` that follows renames of the file.
enum AppVersions {
    /// `source`: another demo-app build (the package tests' one, with the Swift runtime linked in).
    static func make(_ tag: String, in directory: TemporaryDirectory, flags: [String] = ["--start-delay-ms", "500"], source: String = Binaries.demoApp) -> String {
        let path = directory.file("versions/\(tag)")
        try? FileManager.default.createDirectory(atPath: directory.file("versions"), withIntermediateDirectories: true)
        var bytes = FileManager.default.contents(atPath: source) ?? Data()
        bytes.append(Data("\n#demo-app-args: \((["--version-tag", tag] + flags).joined(separator: " "))\n".utf8))
        #expect(FileManager.default.createFile(atPath: path, contents: bytes, attributes: [.posixPermissions: 0o755]), "cannot write \(path)")
        return path
    }
}
