import Foundation
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ConfigCheckTests {
    @Test func brokenConfigListsEveryProblemAndExits2WithoutASocket() throws {
        let directory = TemporaryDirectory()
        let socket = directory.file("control.sock")
        let config = directory.write(
            "broken.toml",
            """
            name = "broken"
            [app]
            binary = "relative/path"
            ports = [8081, 8081]
            stop_timeout = "soon"
            [health]
            healthy_after = 0
            intervall = "1s"
            [proxy]
            kind = "apache"
            [control]
            socket = "\(socket)"
            """)
        for arguments in [["--config", config, "--check"], ["--config", config]] {
            let result = try Command.run(Binaries.supervisord, arguments)
            #expect(result.exitCode == 2, "\(arguments): \(result.stderr)")
            for expected in [
                "app.binary: must be an absolute path",
                "app.ports: the two ports must differ",
                "app.stop_timeout: \"soon\" is not a duration",
                "health.healthy_after: must be between 1 and 1000",
                "health.intervall: unknown key; did you mean \"interval\"?",
                "proxy.kind: must be one of",
            ] {
                #expect(result.stderr.contains(expected), "missing \"\(expected)\" in:\n\(result.stderr)")
            }
            #expect(result.stderr.contains("6 problems"))
            #expect(!FileManager.default.fileExists(atPath: socket))
        }
    }

    @Test func invalidTOMLSaysWhere() throws {
        let directory = TemporaryDirectory()
        let config = directory.write("bad.toml", "name = \"x\"\n[app\nbinary = 3\n")
        let result = try Command.run(Binaries.supervisord, ["--config", config, "--check"])
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("is not valid TOML (line 2"), "\(result.stderr)")
    }

    @Test func missingFileAndMissingBinaryAreConfigErrors() throws {
        let directory = TemporaryDirectory()
        let none = try Command.run(Binaries.supervisord, ["--config", directory.file("absent.toml"), "--check"])
        #expect(none.exitCode == 2)
        #expect(none.stderr.contains("cannot read"))

        let notExecutable = directory.write("app", "#!/bin/sh\n", mode: 0o644)
        let config = directory.write(
            "c.toml",
            """
            name = "x"
            [app]
            binary = "\(notExecutable)"
            ports = [8081, 8082]
            [control]
            socket = "\(directory.file("c.sock"))"
            group = "no-such-group-here"
            """)
        let result = try Command.run(Binaries.supervisord, ["--config", config, "--check"])
        #expect(result.exitCode == 2)
        #expect(result.stderr.contains("app.binary: \(notExecutable) is not executable"), "\(result.stderr)")
        #expect(result.stderr.contains("control.group: no group named \"no-such-group-here\""))
    }

    @Test func validConfigChecksClean() throws {
        let daemon = DaemonUnderTest()
        let result = try Command.run(Binaries.supervisord, ["--config", daemon.configPath, "--check"])
        #expect(result.exitCode == 0, "\(result.stderr)")
        #expect(result.stdout.contains("ok"))
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }
}
