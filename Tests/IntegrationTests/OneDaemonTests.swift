#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// One daemon per service: a second `supervisord` on the same config refuses
/// to start before it reads or changes anything.
@Suite(.timeLimit(.minutes(2)))
struct OneDaemonTests {
    func inode(_ path: String) -> UInt64? {
        var info = stat()
        return lstat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    @Test func aSecondDaemonForTheSameServiceExitsTwoAndTouchesNothing() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let before = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
        let state = daemon.directory.file("state")
        let stateBytes = FileManager.default.contents(atPath: state + "/state.json")
        let socketInode = try #require(inode(daemon.socket))

        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "NOTIFY_SOCKET")
        environment.removeValue(forKey: "JOURNAL_STREAM")
        let second = try Command.run(Binaries.supervisord, ["--config", daemon.configPath], environment: environment, timeout: 20)

        #expect(second.exitCode == 2, "\(second.stderr)")
        let lock = state + "/supervisord.lock"
        #expect(
            second.stderr.contains("supervisord: another supervisord (pid \(daemon.pid)) is already running for this service (lock \(lock)); not starting"),
            "\(second.stderr)")
        // The first still serves, on the socket it bound, with the same app.
        #expect(daemon.process?.isRunning == true)
        #expect(inode(daemon.socket) == socketInode, "the control socket was not removed or bound again")
        let after = try #require(daemon.status(), "the first daemon's socket still answers")
        #expect(after["pid"] as? Int == before["pid"] as? Int)
        #expect(after["supervisor_pid"] as? Int == Int(daemon.pid))
        #expect(FileManager.default.contents(atPath: state + "/state.json") == stateBytes, "state.json untouched")
        #expect(!FileManager.default.fileExists(atPath: state + "/state.json.corrupt-"))
        #expect(!isListening(port: daemon.ports[1]), "no second app")
        #expect(try String(contentsOfFile: lock, encoding: .utf8) == "\(daemon.pid)\n")
    }
}
