#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

/// A real systemd booted as PID 1 of private namespaces by
/// `scripts/lib/systemd-sandbox.sh`: it sees only the units a test writes
/// into `units`, its own /run, /tmp and /var, and the directories the test
/// carries in at their own paths. Everything it started dies with it (PID
/// namespace); the test talks to it through `nsenter … systemctl`.
final class SystemdSandbox {
    static let script = Repository.path("scripts/lib/systemd-sandbox.sh")

    /// Why the sandbox cannot run here, or nil when it can.
    static let unavailableReason: String? = {
        if getuid() != 0 { return "needs root (it boots systemd in private namespaces)" }
        let unified = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers")
            || FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified/cgroup.procs")
        if !unified { return "no cgroup2 (unified) hierarchy on this machine" }
        for tool in ["/usr/bin/unshare", "/usr/bin/nsenter", "/lib/systemd/systemd"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is missing"
        }
        return nil
    }()

    /// False (with a loud line) when the machine cannot run these tests and
    /// this is not CI; with `CI=true` they run, and fail on the reason.
    static var shouldRun: Bool {
        guard unavailableReason != nil else { return true }
        if ProcessInfo.processInfo.environment["CI"] == "true" { return true }
        print("SKIPPED: \(skipReason)")
        return false
    }

    /// What a skip says, in the test report and on its own line.
    static var skipReason: Comment {
        "systemd end-to-end tests skipped: \(unavailableReason ?? "nothing missing"); they run as root with cgroup2, and CI (CI=true) always runs them"
    }

    let units = TemporaryDirectory("systemd-units")
    private let output = TemporaryDirectory("systemd-boot")
    private let launcher: TestProcess
    /// systemd's pid as the host sees it (PID 1 inside).
    private(set) var pid: Int32 = -1
    private var cgroup: String?

    /// Boots it, carrying `directories` in (the built binaries and the
    /// repository always are). `packages`: Debian packages can be installed
    /// inside without touching the host (overlays; see the script), and
    /// systemd also reads /etc/systemd/system and /lib/systemd/system.
    /// `hiding`: directories that look empty inside (the Swift toolchain).
    init(carrying directories: [String], packages: Bool = false, hiding: [String] = []) throws {
        if let reason = Self.unavailableReason {
            Issue.record("systemd sandbox unavailable: \(reason)")
            throw SandboxError(description: reason)
        }
        for target in ["sysinit", "basic", "sockets", "timers", "paths", "shutdown", "sandbox", "multi-user", "network-online"] {
            _ = units.write("\(target).target", "[Unit]\nDescription=\(target) (empty, test sandbox)\n")
        }
        var seen = Set<String>()
        let carried = ([units.path, Binaries.directory, Repository.root] + directories).filter { seen.insert($0).inserted }
        var environment = ProcessInfo.processInfo.environment
        if packages { environment["SANDBOX_PACKAGES"] = "1" }
        if !hiding.isEmpty { environment["SANDBOX_HIDE"] = hiding.joined(separator: " ") }
        launcher = try TestProcess("/bin/bash", [Self.script, units.path] + carried, environment: environment, stdout: output.file("boot.log"))
        var booted = false
        // Generous: on 2 cores shared with the rest of the suite, systemd once took over 20 s to reach running.
        _ = eventually(timeout: 120) {
            if cgroup == nil, let line = bootLog.split(separator: "\n").first(where: { $0.hasPrefix("cgroup: ") }) {
                cgroup = String(line.dropFirst("cgroup: ".count))
            }
            // unshare's child, or (should unshare be gone) the process systemd put in its init.scope.
            if pid < 0, let child = childPIDs(of: launcher.pid).first ?? cgroup.flatMap({ Self.processes(inCgroup: $0 + "/init.scope").first }) {
                pid = child
            }
            guard pid > 0, launcher.isRunning else { return !launcher.isRunning }
            let state = try? systemctl(["is-system-running"], timeout: 5).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            booted = state == "running" || state == "degraded"
            return booted
        }
        if !booted {
            let log = bootLog
            let state = (try? systemctl(["is-system-running"], timeout: 5).stdout) ?? "unknown"
            let jobs = (try? systemctl(["list-jobs"], timeout: 5).stdout) ?? ""
            let inside = cgroup.map { Self.processes(inCgroup: $0, recursive: true) } ?? []
            let processes = inside.map { pid in
                let comm = ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
                let state = ((try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? "").split(separator: "\n").first { $0.hasPrefix("State:") } ?? "?"
                return "\(pid) \(comm) \(state)"
            }.joined(separator: "; ")
            let (found, launcherRan) = (pid, launcher.isRunning)
            tearDown()
            throw SandboxError(description: "systemd did not boot in the sandbox within 120 s (pid \(found), launcher running: \(launcherRan), in its cgroup: \(processes); is-system-running: \(state.trimmingCharacters(in: .whitespacesAndNewlines)); jobs:\n\(jobs)): \(log)")
        }
    }

    deinit { tearDown() }

    var bootLog: String { (try? String(contentsOfFile: output.file("boot.log"), encoding: .utf8)) ?? "" }

    /// `nsenter` arguments that run `arguments` inside its namespaces (mount and PID).
    func inside(_ arguments: [String]) -> [String] { ["-t", String(pid), "-m", "-p", "--"] + arguments }

    /// Runs a command inside its namespaces, to completion.
    func run(_ arguments: [String], timeout: TimeInterval = 30) throws -> CommandResult {
        try Command.run("/usr/bin/nsenter", inside(arguments), timeout: timeout)
    }

    func systemctl(_ arguments: [String], timeout: TimeInterval = 30) throws -> CommandResult {
        try run(["systemctl", "--no-pager"] + arguments, timeout: timeout)
    }

    /// One property of a unit (`systemctl show -P`).
    func property(_ name: String, of unit: String) -> String {
        ((try? systemctl(["show", "-P", name, unit]))?.stdout ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes a unit (or drop-in, "name.d/x.conf") and reloads systemd.
    func install(_ name: String, _ text: String) throws {
        _ = units.write(name, text)
        let reload = try systemctl(["daemon-reload"])
        #expect(reload.exitCode == 0, "\(reload.stderr)")
    }

    /// Whether a pid of the sandbox's own numbering is alive.
    func exists(_ pidInside: Int) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/root/proc/\(pidInside)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// SIGKILL of systemd ends the PID namespace and everything in it; then
    /// the cgroups it made are removed, deepest first.
    func tearDown() {
        if pid > 0, launcher.isRunning { kill(pid, SIGKILL) }
        launcher.stop(SIGKILL, grace: 0)
        launcher.waitForExit(timeout: 10)
        pid = -1
        guard let cgroup else { return }
        self.cgroup = nil
        // Whatever is left in its cgroups (a systemd whose unshare parent died first) is ours: killed.
        for process in Self.processes(inCgroup: cgroup, recursive: true) { kill(process, SIGKILL) }
        var directories: [String] = []
        if let walker = FileManager.default.enumerator(atPath: cgroup) {
            while let relative = walker.nextObject() as? String {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: cgroup + "/" + relative, isDirectory: &isDirectory), isDirectory.boolValue {
                    directories.append(cgroup + "/" + relative)
                }
            }
        }
        for directory in directories.sorted(by: { $0.count > $1.count }) + [cgroup] {
            _ = eventually(timeout: 5) { rmdir(directory) == 0 || errno == ENOENT }
        }
    }
}

extension SystemdSandbox {
    /// The pids in a cgroup (and, `recursive`, in the cgroups below it).
    static func processes(inCgroup path: String, recursive: Bool = false) -> [Int32] {
        var directories = [path]
        if recursive, let walker = FileManager.default.enumerator(atPath: path) {
            while let relative = walker.nextObject() as? String {
                if relative.hasSuffix("/cgroup.procs") { directories.append(path + "/" + String(relative.dropLast("/cgroup.procs".count))) }
            }
        }
        return directories.flatMap { directory in
            ((try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
        }
    }
}

struct SandboxError: Error, CustomStringConvertible {
    let description: String
}
