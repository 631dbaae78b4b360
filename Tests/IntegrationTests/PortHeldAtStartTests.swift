#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// A first start whose port is held by a process that is not the app: the
/// daemon names the holder and either uses the other port or exits 2; it
/// never starts the app into a held port again and again.
@Suite(.timeLimit(.minutes(2)))
struct PortHeldAtStartTests {
    /// demo-app itself on `port`: an HTTP server that is not the configured binary (a copy).
    func stranger(on port: Int) throws -> TestProcess {
        let process = try TestProcess(Binaries.demoApp, ["--port", String(port), "--version-tag", "stranger"])
        #expect(eventually(timeout: 10) { servedVersion(port: port) == "stranger" }, "the stranger listens on \(port)")
        return process
    }

    @Test func everyPortHeldExitsTwoNamingTheHolders() throws {
        let stack = try LocalStack.unstarted()
        let ports = stack.daemon.ports
        let first = try stranger(on: ports[0]), second = try stranger(on: ports[1])
        defer { first.stop(SIGKILL); second.stop(SIGKILL) }

        try stack.daemon.start()
        let daemon = try #require(stack.daemon.process)
        #expect(daemon.waitForExit(timeout: 30), "supervisord exits instead of looping: \(stack.daemon.log)")
        #expect(daemon.exitCode == 2, "\(stack.daemon.log)")
        let log = stack.daemon.log
        #expect(log.contains("port \(ports[0]) is held by pid \(first.pid)"), "\(log)")
        #expect(log.contains("port \(ports[1]) is held by pid \(second.pid)"), "\(log)")
        #expect(log.contains("none of them is this service's app"), "\(log)")
        #expect(!log.contains("Address already in use"), "no app was started into a held port: \(log)")
        #expect(servedVersion(port: ports[0]) == "stranger" && servedVersion(port: ports[1]) == "stranger", "the strangers are untouched")
    }

    @Test func theFirstPortHeldStartsTheAppOnTheOther() throws {
        let stack = try LocalStack.unstarted()
        let ports = stack.daemon.ports
        let first = try stranger(on: ports[0])
        defer { first.stop(SIGKILL) }

        try stack.daemon.start()
        let status = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
        #expect(status["port"] as? Int == ports[1])
        #expect(status["restarts"] as? Int == 0)
        #expect(stack.daemon.log.contains("port \(ports[0]) is held by pid \(first.pid)"), "\(stack.daemon.log)")
        #expect(servedVersion(port: ports[1]) == "v1")
        // Swaps go on alternating, skipping nothing: the next one needs ports[0], which is held.
        let swap = try stack.daemon.ctl(["swap", AppVersions.make("v2", in: stack.work, flags: [])])
        #expect(swap.exitCode == 1)
        #expect(swap.stderr.contains("port_in_use") || swap.stderr.contains("already in use"), "\(swap.stderr)")
        #expect(servedVersion(port: ports[1]) == "v1", "the serving version is untouched")
    }
}
