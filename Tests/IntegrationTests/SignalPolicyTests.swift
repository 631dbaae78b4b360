#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// No signal kills the daemon silently, and the app still gets default
/// dispositions.
@Suite(.timeLimit(.minutes(2)))
struct SignalPolicyTests {
    /// A `SigIgn:`/`SigBlk:` mask from a /proc/PID/status text.
    func mask(_ field: String, in status: String) -> UInt64? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
        return UInt64(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16)
    }

    func bit(_ signal: Int32) -> UInt64 { 1 << UInt64(signal - 1) }

    @Test func straySignalsAreLoggedAndIgnoredAndTheAppKeepsDefaultDispositions() throws {
        let scratch = TemporaryDirectory("signals")
        let probe = scratch.file("version-command-status")
        // The version command is a child the daemon spawns like the app:
        // plain sh and cat, which change no disposition of their own.
        let daemon = DaemonUnderTest(.init(extraApp: #"version_command = ["/bin/sh", "-c", "cat /proc/self/status > \#(probe); echo v1"]"#))
        try daemon.start()
        let before = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
        let appPID = try #require(before["pid"] as? Int)

        let sent: [(Int32, String)] = [
            // SIGHUP re-executes in place (ReexecTests): same pid, the app untouched.
            (SIGHUP, "re-executed in place (pid \(daemon.pid))"),
            (SIGUSR1, "received SIGUSR1; ignored"),
            (SIGUSR2, "received SIGUSR2; ignored"),
            (SIGALRM, "received SIGALRM; ignored"),
            (SIGPWR, "received SIGPWR; ignored"),
        ]
        for (signal, line) in sent {
            #expect(kill(daemon.pid, signal) == 0)
            #expect(eventually(timeout: 10) { daemon.log.contains(line) }, "no \"\(line)\" in the log:\n\(daemon.log)")
        }
        #expect(kill(daemon.pid, __libc_current_sigrtmin() + 3) == 0)
        #expect(eventually(timeout: 10) { daemon.log.contains("received SIGRTMIN+3; ignored") })

        #expect(daemon.process?.isRunning == true, "the daemon survived every one")
        let after = try #require(daemon.status(), "status still answers")
        #expect(after["pid"] as? Int == appPID, "the app was not touched")
        #expect(after["restarts"] as? Int == 0)

        // The app: SIGHUP and SIGUSR1 not ignored (demo-app ignores SIGPIPE itself).
        let appStatus = try String(contentsOfFile: "/proc/\(appPID)/status", encoding: .utf8)
        let appIgnored = try #require(mask("SigIgn", in: appStatus))
        #expect(appIgnored & bit(SIGHUP) == 0, "SigIgn \(String(appIgnored, radix: 16))")
        #expect(appIgnored & bit(SIGUSR1) == 0, "SigIgn \(String(appIgnored, radix: 16))")
        // A plain child: nothing ignored (SIGPIPE included, which the daemon ignores) and nothing blocked.
        let childStatus = try String(contentsOfFile: probe, encoding: .utf8)
        #expect(mask("SigIgn", in: childStatus) == 0, "\(childStatus)")
        #expect(mask("SigBlk", in: childStatus) == 0, "\(childStatus)")

        // SIGTERM still stops it, cleanly.
        #expect(daemon.terminate() == 0, "\(daemon.log)")
        #expect(!processExists(pid_t(appPID)))
    }
}
