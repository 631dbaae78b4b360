#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

@Suite(.timeLimit(.minutes(2)))
struct SystemdTests {
    /// `systemd-analyze verify` prints nothing for a clean unit (it exits 0 even on warnings).
    @Test(arguments: ["supervisor@.service", "supervisor@.socket"])
    func unitFilesVerifyClean(_ unit: String) throws {
        let analyze = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is missing (Debian's systemd package)")
        let scratch = TemporaryDirectory("units")
        for file in ["supervisor@.service", "supervisor@.socket"] {
            // ExecStart must name an executable that exists here: point it at the built one.
            let text = try String(contentsOfFile: Repository.path("systemd/" + file), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/supervisord", with: Binaries.supervisord)
            _ = scratch.write(file, text)
        }
        let instance = scratch.file(unit.replacingOccurrences(of: "@.", with: "@itest."))
        let result = try Command.run(analyze, ["verify", "--man=no", instance])
        #expect(result.exitCode == 0)
        #expect((result.stdout + result.stderr).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(result.stdout)\(result.stderr)")
    }

    @Test func theControlSocketCanComeFromSocketActivation() throws {
        let daemon = DaemonUnderTest()
        // What systemd does for supervisor@.socket: bind the socket, pass it as fd 3.
        let scratch = TemporaryDirectory("activation")
        let path = scratch.file("activated.sock")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let bound = unixSocket(fd, bind, path: path)
        try #require(bound == 0 && listen(fd, 16) == 0)
        var environment = ProcessInfo.processInfo.environment
        environment["LISTEN_FDS"] = "1"
        environment["LISTEN_FDNAMES"] = "control"
        let process = try ProcessSpawner.spawn(SpawnRequest(
            executable: Binaries.supervisord, arguments: ["--config", daemon.configPath],
            environment: environment, passedDescriptors: [fd], setListenPID: true,
            outputDescriptor: open(daemon.logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644), newSession: false))
        close(fd)
        defer {
            process.signal(SIGTERM)
            _ = eventually(timeout: 15) { process.exitStatus != nil }
            process.signal(SIGKILL)
        }
        var status: CommandResult?
        #expect(eventually(timeout: 20) {
            status = try? Command.run(Binaries.supervisorctl, ["--socket", path, "status", "--json"])
            return status?.stdout.contains("\"phase\":\"running\"") == true
        }, "\(daemon.log)")
        #expect(daemon.log.contains("control socket from systemd (socket activation)"))
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "it did not bind the configured path itself")
        // Stop: the app goes with it, and the systemd-owned socket file stays.
        process.signal(SIGTERM)
        #expect(eventually(timeout: 15) { process.exitStatus != nil })
        #expect(FileManager.default.fileExists(atPath: path))
        if let pid = (try? JSONSerialization.jsonObject(with: Data((status?.stdout ?? "").utf8)) as? [String: Any])?["pid"] as? Int {
            #expect(!processExists(pid_t(pid)))
        }
    }
}
