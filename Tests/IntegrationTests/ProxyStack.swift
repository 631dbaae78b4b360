#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// A live service behind a real proxy: supervisord running v1 from a binary
/// in a directory of its own, the proxy routing to it.
final class ProxyStack {
    let work = TemporaryDirectory("stack")
    let proxy: any ProxyUnderTest
    let daemon: DaemonUnderTest
    let live: String

    init(
        _ kind: ProxyKindUnderTest = .caddy, v1Flags: [String] = [], fault: ProxyFault? = nil,
        daemonEnvironment: [String: String] = [:],
        options: (inout DaemonUnderTest.Options) -> Void = { _ in },
        checkURL: ((_ proxyPort: Int) -> String)? = nil, caddyTryDuration: String = "2s"
    ) throws {
        let ports = FreePort.pick(2)
        proxy = kind.make(initialUpstreamPort: ports[0], caddyTryDuration: caddyTryDuration)
        // An ELF (demo-app with v1 baked in), whose /proc/PID/exe follows renames of the file.
        let v1 = AppVersions.make("v1", in: work, flags: v1Flags)
        live = work.file("bin/app")
        try FileManager.default.createDirectory(atPath: work.file("bin"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: v1, toPath: live)
        var settings = DaemonUnderTest.Options()
        settings.binary = live
        let proxyPort = proxy.listenPort
        settings.proxySection = proxy.proxySection(fault: fault) + (checkURL.map { "\ncheck_url = \"\($0(proxyPort))\"\n" } ?? "")
        settings.ports = ports
        settings.extraApp = #"version_command = ["{binary}", "--version"]"#
        options(&settings)
        daemon = DaemonUnderTest(settings)
        try proxy.start()
        try daemon.start(environment: proxy.environment.merging(daemonEnvironment) { $1 })
    }

    /// Waits until the proxy serves `version`.
    func serves(_ version: String, timeout: TimeInterval = 20) -> Bool {
        eventually(timeout: timeout) { proxy.servedVersion() == version }
    }

    func version(_ tag: String, flags: [String] = ["--start-delay-ms", "500"]) -> String {
        AppVersions.make(tag, in: work, flags: flags)
    }

    func swap(_ path: String) throws -> (CommandResult, [String: Any]?) {
        let result = try daemon.ctl(["swap", path, "--json"])
        let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (result, json)
    }

    func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    /// What the proxy alone costs for `times` upstream switches: flips it by
    /// hand between the serving instance and a second static demo-app, under
    /// load, with the given spacing. Ends on the serving one.
    func switchByHandUnderLoad(times: Int, spacing: TimeInterval) throws -> LoadReport {
        let servingPort = try #require(daemon.status()?["port"] as? Int)
        let otherPort = daemon.ports.first { $0 != servingPort }!
        let side = try TestProcess(Binaries.demoApp, ["--port", String(otherPort), "--version-tag", "side"])
        defer { side.stop(SIGKILL) }
        #expect(eventually(timeout: 10) { isListening(port: otherPort) })
        let load = try LoadGenerator(port: proxy.listenPort)
        for index in 0..<times {
            try proxy.switchByHand(to: index % 2 == 0 ? otherPort : servingPort)
            usleep(useconds_t(spacing * 1_000_000))
        }
        if times % 2 == 1 { try proxy.switchByHand(to: servingPort) }
        return load.finish()
    }

    /// No `.new`, and the daemon's only child is the serving app.
    func expectNothingStray(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!FileManager.default.fileExists(atPath: live + ".new"), "stray \(live).new", sourceLocation: sourceLocation)
        let serving = daemon.status()?["pid"] as? Int
        let children = childPIDs(of: daemon.pid)
        #expect(children.map(Int.init) == [serving].compactMap { $0 }, "daemon children \(children), serving \(String(describing: serving))", sourceLocation: sourceLocation)
    }
}
