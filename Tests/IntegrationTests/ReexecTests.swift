#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension UnderLoad {
    /// SIGHUP re-executes the installed `supervisord` in place: same pid,
    /// the app untouched and re-adopted, the sockets carried across execve,
    /// never in the middle of a swap, and never into a binary that cannot
    /// start (DESIGN.md, "Signals"). Real daemons, real signals, wrk on the
    /// app's socket, which the supervisor holds (socket handoff) and which
    /// must survive the exec.
    @Suite(.timeLimit(.minutes(4)))
    struct ReexecTests {
        /// A copy of supervisord the test can replace on disk (what a package upgrade does).
        static func installedCopy(in work: TemporaryDirectory) throws -> String {
            let path = work.file("sbin/supervisord")
            try FileManager.default.createDirectory(atPath: work.file("sbin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Binaries.supervisord, toPath: path)
            return path
        }

        /// Replaces `path` the way dpkg does: a new file renamed over it (the running image keeps its inode).
        static func replace(_ path: String, with contents: Data) {
            let temporary = path + ".dpkg-new"
            #expect(FileManager.default.createFile(atPath: temporary, contents: contents, attributes: [.posixPermissions: 0o755]))
            #expect(rename(temporary, path) == 0)
        }

        func childPIDs(_ pid: Int32) -> Set<Int> {
            Set(IntegrationTests.childPIDs(of: pid).map(Int.init))
        }

        /// A handoff daemon on a free port, started from a copy of supervisord the test can replace, and running.
        static func daemonFromAnInstalledCopy(_ name: String) throws -> (work: TemporaryDirectory, port: Int, daemon: DaemonUnderTest, installed: String, appPID: Int) {
            let work = TemporaryDirectory(name)
            let port = FreePort.pick()[0]
            let daemon = try HandoffTests.handoffDaemon(v1In: work, port: port)
            let installed = try installedCopy(in: work)
            try daemon.start(executable: installed)
            let before = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
            #expect(before["supervisor_version"] as? String != nil)
            return (work, port, daemon, installed, try #require(before["pid"] as? Int))
        }

        @Test func sighupReexecsInPlaceWhileRequestsRun() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let (work, port, daemon, installed, appPID) = try Self.daemonFromAnInstalledCopy("reexec")
            defer { daemon.stop() }

            let close = try LoadGenerator(port: port, connections: 8)
            let keepAlive = try LoadGenerator(port: port, connections: 8, closeConnections: false)
            // The upgrade: a new file over the installed one, then SIGHUP.
            Self.replace(installed, with: try Data(contentsOf: URL(fileURLWithPath: Binaries.supervisord)))
            // An idle control connection across the exec: closed (the client sees EOF), never left hanging.
            let idle = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { Glibc.close(idle) }
            #expect(unixSocket(idle, connect, path: daemon.socket) == 0)
            let sent = Date()
            #expect(kill(daemon.pid, SIGHUP) == 0)
            #expect(eventually(timeout: 30) { daemon.log.contains("re-executed in place (pid \(daemon.pid))") }, "\(daemon.log.suffix(3000))")
            let after = try #require(daemon.waitUntilRunning(), "\(daemon.log.suffix(3000))")
            // A figure for the note, not a bound: the checks of the new file, the exec, the re-adoption (debug build).
            print("REEXEC SIGHUP to a running status from the new image: \(Int(Date().timeIntervalSince(sent) * 1000)) ms")
            #expect(after["supervisor_pid"] as? Int == Int(daemon.pid), "same pid")
            #expect(after["pid"] as? Int == appPID, "the app was re-adopted, not restarted")
            #expect(after["restarts"] as? Int == 0)
            #expect(daemon.log.contains("re-adopted the running app (no restart)"))
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(idle, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var byte: UInt8 = 0
            let received = recv(idle, &byte, 1, 0)
            #expect(received == 0, "the connection open at the exec was closed (EOF), not left open: recv \(received), errno \(errno)")
            // The running image is the new file now (no longer a deleted one).
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(daemon.pid)/exe")) ?? ""
            #expect(exe == installed, "/proc/PID/exe: \(exe)")
            // Still the app's parent: its exit is reaped and seen as a crash with its status.
            #expect(childPIDs(daemon.pid).contains(appPID))

            // A swap after it works, and supervision does: a crash is restarted.
            let swap = try daemon.ctl(["swap", AppVersions.make("v2", in: work, flags: []), "--json"])
            #expect(swap.exitCode == 0, "\(swap.stderr)\n\(daemon.log.suffix(3000))")
            #expect(httpGet(port: port)?.body.contains("demo-app v2") == true)
            close.finish().expectNothingFailed("re-exec in place, then a swap (handoff, Connection: close)")
            keepAlive.finish().expectNothingFailed("re-exec in place, then a swap (handoff, keep-alive)")

            // The re-adopted instance was stopped by the swap; nothing else of ours is left.
            #expect(!processExists(pid_t(appPID)))
            let v2 = try #require(daemon.status()?["pid"] as? Int)
            #expect(childPIDs(daemon.pid) == [v2], "children: \(childPIDs(daemon.pid))")
            #expect(daemon.terminate() == 0, "\(daemon.log.suffix(2000))")
            #expect(!processExists(pid_t(v2)))
            #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the control socket, bound by the first image, is removed by the last")
        }

        @Test func aBrokenInstalledBinaryIsRefusedAndThisImageGoesOn() throws {
            let (work, port, daemon, installed, appPID) = try Self.daemonFromAnInstalledCopy("reexec-broken")
            defer { daemon.stop() }

            // A supervisord that dies at once, whatever it is asked.
            Self.replace(installed, with: Data("#!/bin/sh\necho 'broken build' >&2\nexit 1\n".utf8))
            #expect(kill(daemon.pid, SIGHUP) == 0)
            #expect(eventually(timeout: 30) { daemon.log.contains("re-exec refused") }, "\(daemon.log.suffix(3000))")
            #expect(daemon.log.contains("broken build"), "the refusal carries the binary's own words: \(daemon.log.suffix(2000))")
            let after = try #require(daemon.waitUntilRunning(), "\(daemon.log.suffix(3000))")
            #expect(after["supervisor_pid"] as? Int == Int(daemon.pid))
            #expect(after["pid"] as? Int == appPID)
            #expect((after["problem"] as? String)?.contains("re-exec refused") == true, "\(after)")
            #expect(httpGet(port: port)?.body.contains("demo-app v1") == true)
            let metrics = try Command.run("/usr/bin/curl", ["-s", "--unix-socket", daemon.socket, "http://localhost/metrics"], timeout: 10)
            #expect(metrics.stdout.contains("supervisor_reexecs_refused_total 1"), "\(metrics.stdout.prefix(3000))")
            // The image that goes on still swaps.
            let swap = try daemon.ctl(["swap", AppVersions.make("v2", in: work, flags: [])])
            #expect(swap.exitCode == 0, "\(swap.stderr)")

            // A supervisord from before in-place re-exec: it runs, checks configs, but knows no
            // handover (it would find the lock held and not start). Refused too.
            let real = work.file("sbin/supervisord-real")
            try FileManager.default.copyItem(atPath: Binaries.supervisord, toPath: real)
            Self.replace(installed, with: Data("""
                #!/bin/sh
                case "$*" in *--handover-protocol*) echo "Error: Unknown option '--handover-protocol'" >&2; exit 2;; esac
                exec \(real) "$@"

                """.utf8))
            #expect(kill(daemon.pid, SIGHUP) == 0)
            #expect(eventually(timeout: 30) { daemon.log.contains("cannot take over a running one in place") }, "\(daemon.log.suffix(3000))")
            #expect(daemon.waitUntilRunning()?["supervisor_pid"] as? Int == Int(daemon.pid))

            // A good binary installed again: the next SIGHUP re-executes.
            Self.replace(installed, with: try Data(contentsOf: URL(fileURLWithPath: Binaries.supervisord)))
            #expect(kill(daemon.pid, SIGHUP) == 0)
            #expect(eventually(timeout: 30) { daemon.log.contains("re-executed in place (pid \(daemon.pid))") }, "\(daemon.log.suffix(3000))")
            let fixed = try #require(daemon.waitUntilRunning())
            #expect(fixed["problem"] == nil || fixed["problem"] is NSNull, "\(fixed)")
            #expect(fixed["version"] as? String == "v2")
        }

        /// A new supervisord that passes its checks but cannot start once exec'd
        /// (here: a wrapper that gives the exec'd image a config that does not
        /// exist): the previous image runs again, same pid, and re-adopts the
        /// app; nothing fails and status says what happened.
        @Test func aNewImageThatCannotStartRunsThePreviousOneAgain() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let (work, port, daemon, installed, appPID) = try Self.daemonFromAnInstalledCopy("reexec-fallback")
            defer { daemon.stop() }
            let load = try LoadGenerator(port: port, connections: 8)

            let real = work.file("sbin/supervisord-real")
            try FileManager.default.copyItem(atPath: Binaries.supervisord, toPath: real)
            Self.replace(installed, with: Data("""
                #!/bin/sh
                if [ -n "$SUPERVISOR_REEXEC_FDS" ]; then exec \(real) --config \(work.file("missing.toml")); fi
                exec \(real) "$@"

                """.utf8))
            #expect(kill(daemon.pid, SIGHUP) == 0)
            #expect(eventually(timeout: 30) { daemon.log.contains("the new supervisord could not start") }, "\(daemon.log.suffix(3000))")
            let after = try #require(daemon.waitUntilRunning(), "\(daemon.log.suffix(3000))")
            #expect(after["supervisor_pid"] as? Int == Int(daemon.pid), "the same process")
            #expect(after["pid"] as? Int == appPID, "the app was re-adopted, not restarted")
            #expect((after["problem"] as? String)?.contains("missing.toml") == true, "\(after)")
            // The image that runs is the previous file (renamed over: deleted).
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(daemon.pid)/exe")) ?? ""
            #expect(exe == installed + " (deleted)", "/proc/PID/exe: \(exe)")
            let swap = try daemon.ctl(["swap", AppVersions.make("v2", in: work, flags: [])])
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            load.finish().expectNothingFailed("a new supervisord that cannot start: the previous image runs again (handoff)")
            #expect(daemon.terminate() == 0, "\(daemon.log.suffix(2000))")
        }

        /// SIGHUP during a swap: the swap finishes, then the re-exec; a swap
        /// asked meanwhile is refused as busy (exit 4), one after it works.
        @Test func sighupDuringASwapWaitsForIt() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let work = TemporaryDirectory("reexec-during-swap")
            let port = FreePort.pick()[0]
            let daemon = try HandoffTests.handoffDaemon(v1In: work, port: port)
            try daemon.start()
            defer { daemon.stop() }
            _ = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
            let load = try LoadGenerator(port: port, connections: 8)

            let slow = AppVersions.make("v2", in: work, flags: ["--start-delay-ms", "2000"])
            let swapOut = work.file("swap.out")
            let swap = try TestProcess(Binaries.supervisorctl, ["--socket", daemon.socket, "swap", slow, "--json"], stdout: swapOut)
            #expect(eventually(timeout: 20, interval: 0.01) { (daemon.status()?["phase"] as? String)?.hasPrefix("swap:health") == true || (daemon.status()?["phase"] as? String)?.hasPrefix("swap:start") == true })
            #expect(kill(daemon.pid, SIGHUP) == 0)
            #expect(eventually(timeout: 10) { daemon.log.contains("the re-exec waits until swap") }, "\(daemon.log.suffix(2000))")
            let meanwhile = try daemon.ctl(["swap", AppVersions.make("v3", in: work, flags: [])])
            #expect(meanwhile.exitCode == 4, "busy: \(meanwhile.stderr)")
            #expect(swap.waitForExit(timeout: 60))
            #expect(swap.exitCode == 0, "\((try? String(contentsOfFile: swapOut, encoding: .utf8)) ?? "")\n\(daemon.log.suffix(3000))")
            #expect(eventually(timeout: 30) { daemon.log.contains("re-executed in place (pid \(daemon.pid))") }, "\(daemon.log.suffix(3000))")
            // In that order: the swap's end, then the exec.
            let log = daemon.log
            let committed = try #require(log.range(of: "swap done in"), "\(log.suffix(3000))")
            let exec = try #require(log.range(of: "re-executed in place"))
            #expect(committed.lowerBound < exec.lowerBound)
            let after = try #require(daemon.waitUntilRunning())
            #expect(after["version"] as? String == "v2")
            let next = try daemon.ctl(["swap", AppVersions.make("v3", in: work, flags: [])])
            #expect(next.exitCode == 0, "\(next.stderr)")
            // Nothing stray: one instance, no staged file.
            let serving = try #require(daemon.status()?["pid"] as? Int)
            #expect(childPIDs(daemon.pid) == [serving], "children: \(childPIDs(daemon.pid))")
            #expect(!FileManager.default.fileExists(atPath: work.file("bin/app.new")))
            load.finish().expectNothingFailed("SIGHUP during a swap: the swap, the re-exec, another swap (handoff)")
        }
    }
}
