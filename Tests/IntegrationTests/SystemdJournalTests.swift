#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

extension UnderLoad {
    /// Under systemd with journald (both real, in the sandbox): each app
    /// instance writes to a journal stream of its own, connected by the app's
    /// process itself, so its lines carry its pid and uid, never pass through
    /// the daemon, and a new binary that exits is reported with its last lines.
    @Suite(.timeLimit(.minutes(3)), .enabled(if: SystemdSandbox.shouldRun, SystemdSandbox.skipReason))
    struct SystemdJournalTests {
        @Test func aNewBinaryThatExitsIsReportedWithItsLastLinesFromTheJournal() throws {
            let ports = FreePort.pick(2)
            let service = try SupervisorUnderSystemd(config: { live in
                """
                name = "itest"
                [app]
                binary = "\(live)"
                args = ["--port", "{port}"]
                ports = [\(ports[0]), \(ports[1])]
                stop_timeout = "5s"
                user = "nobody"
                [health]
                interval = "50ms"
                start_timeout = "20s"
                [control]
                socket = "/run/supervisor/itest.sock"
                """
            })
            // v1 holds an exclusive lock on a file (as an SQLite app does), which nobody can open.
            let lock = service.work.write("app.lock", "", mode: 0o666)
            try FileManager.default.copyItem(atPath: AppVersions.make("v1", in: service.work, flags: ["--lock-file", lock]), toPath: service.live)
            // journald, as Debian ships it, and the service's output to it.
            for unit in ["systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket"] {
                _ = service.sandbox.units.write(unit, try String(contentsOfFile: "/lib/systemd/system/" + unit, encoding: .utf8))
            }
            try service.sandbox.install("supervisor@itest.service.d/zz-journal.conf", "[Service]\nStandardOutput=journal\nStandardError=inherit\n")
            let journald = try service.sandbox.systemctl(["start", "systemd-journald.socket", "systemd-journald.service"])
            try #require(journald.exitCode == 0, "journald: \(journald.stderr)")
            let start = try service.sandbox.systemctl(["start", service.unit])
            #expect(start.exitCode == 0, "\(start.stderr)")
            #expect(eventually(timeout: 30) { service.status()?["phase"] as? String == "running" })
            let pid = try #require(service.status()?["pid"] as? Int)

            // The app's own lines: its pid, its uid (nobody), the service's name; under the unit too.
            let own = try service.sandbox.run(["journalctl", "--no-pager", "-o", "verbose", "_PID=\(pid)"])
            #expect(own.stdout.contains("MESSAGE=demo-app v1: listening on"), "\(own.stdout)")
            #expect(own.stdout.contains("SYSLOG_IDENTIFIER=itest") && own.stdout.contains("_UID=65534"), "\(own.stdout)")
            let unit = try service.sandbox.run(["journalctl", "--no-pager", "-u", service.unit])
            #expect(unit.stdout.contains("itest[\(pid)]: demo-app v1: listening on"), "\(unit.stdout)")

            // A new binary that exits before it is healthy: its last lines in the answer.
            let broken = AppVersions.make("broken", in: service.work, flags: ["--crash-at-start"])
            let swap = try service.ctl(["swap", broken])
            print("JOURNAL a failed swap under journald:\n\(swap.stderr)")
            #expect(swap.exitCode == 1, "\(swap.stderr)")
            #expect(swap.stderr.contains("[app_exited]"), "\(swap.stderr)")
            #expect(swap.stderr.contains("its last lines (journalctl _PID="), "\(swap.stderr)")
            #expect(swap.stderr.contains("demo-app broken: crashing at start (--crash-at-start)"), "\(swap.stderr)")
            #expect(service.status()?["pid"] as? Int == pid, "the old version still serves")

            // The default strategy (overlap) with an app that cannot run twice: the new instance
            // cannot take the lock, says so, and exits; its words are in the answer, v1 serves on.
            let load = try LoadGenerator(port: ports[0])
            let locked = try service.ctl(["swap", AppVersions.make("v2", in: service.work, flags: ["--lock-file", lock])])
            print("JOURNAL an overlap swap of a lock-holding app:\n\(locked.stderr)")
            #expect(locked.exitCode == 1, "\(locked.stderr)")
            #expect(locked.stderr.contains("[app_exited]") && locked.stderr.contains("exited with code 5"), "\(locked.stderr)")
            #expect(locked.stderr.contains("\(lock) is locked by another instance (pid \(pid)); only one instance may run at a time"), "\(locked.stderr)")
            #expect(service.status()?["pid"] as? Int == pid, "the old version still serves")
            load.finish().expectNothingFailed("systemd: overlap swap of a lock-holding app refused by its lock, v1 serving")
            _ = try? service.sandbox.systemctl(["stop", service.unit])
        }
    }
}
