#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorDaemon
import SystemBindings
import Testing

extension UnderLoad {
    /// The daemon is root; nothing it does for a caller or the app uses more
    /// rights than that party has. Exercised as an unprivileged member of
    /// `[control] group` (`setpriv`, so the group is in the process's
    /// credentials, not in /etc/group), against a daemon whose app runs as
    /// `nobody`, behind nginx under wrk load: zero failed requests throughout.
    @Suite(.timeLimit(.minutes(10)))
    struct LeastPrivilegeTests {
        static let callerUID = 1  // Debian's "daemon" user: not root, not in the test group

        @Test func anUnprivilegedCallerSwapsOnlyWhatItCouldReadAndTheAppRunsAsItsUser() throws {
            try #require(getuid() == 0, "needs root: the app is started as another user and the caller is another user")
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx is not installed: run scripts/test.sh, which installs it")
            try #require(LoadGenerator.isInstalled, "wrk is not installed: run scripts/test.sh, which installs it")
            try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "setpriv (util-linux) is missing")
            // `nobody` is listed as a member of the control group; the caller is not.
            let group = try TestGroup(members: ["nobody"])
            // demo-app's own tag must stay plain (it goes into HTTP headers); the
            // version command says something hostile for v5.
            let tools = TemporaryDirectory("least-privilege-tools")
            let versionCommand = tools.write("version", """
                #!/bin/sh
                v=$("$1" --version)
                if [ "$v" = v5 ]; then printf 'v5\\033[31mred\\rX\\n'; else echo "$v"; fi
                """, mode: 0o755)
            let stack = try ProxyStack(.nginx) { options in
                options.extraApp = "version_command = [\"\(versionCommand)\", \"{binary}\"]\nuser = \"nobody\""
                options.extraControl += "\ngroup = \"\(group.name)\""
                options.startTimeout = "20s"
            }
            _ = try #require(stack.daemon.waitUntilRunning(), "log:\n\(stack.daemon.log)")
            #expect(stack.serves("v1"))
            let nobodyGroups = try Set(Command.run("/usr/bin/id", ["-G", "nobody"]).stdout.split(separator: " ").map { String($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
            func expectRunsAsNobody(_ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
                guard let pid = stack.daemon.status()?["pid"] as? Int else {
                    Issue.record("\(label): no pid in status", sourceLocation: sourceLocation)
                    return
                }
                let status = procStatus(pid)
                #expect(status["Uid"]?.split(separator: "\t").allSatisfy { $0 == "65534" } == true, "\(label): \(status)", sourceLocation: sourceLocation)
                #expect(status["Gid"]?.split(separator: "\t").allSatisfy { $0 == "65534" } == true, "\(label): \(status)", sourceLocation: sourceLocation)
                #expect(Set((status["Groups"] ?? "").split(separator: " ").map(String.init)) == nobodyGroups, "\(label): \(status)", sourceLocation: sourceLocation)
                for capabilities in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                    #expect(status[capabilities] == "0000000000000000", "\(label): \(capabilities) \(status[capabilities] ?? "-")", sourceLocation: sourceLocation)
                }
                #expect(status["NoNewPrivs"] == "1", "\(label)", sourceLocation: sourceLocation)
                let environment = (try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8))?.split(separator: "\0").map(String.init) ?? []
                #expect(environment.contains("USER=nobody") && environment.contains("LOGNAME=nobody"), "\(label): \(environment)", sourceLocation: sourceLocation)
            }
            expectRunsAsNobody("first start")

            func asCaller(_ arguments: [String], groups: String? = nil) throws -> CommandResult {
                let credentials = ["--reuid=\(Self.callerUID)", "--regid=\(Self.callerUID)"] + (groups.map { ["--groups=\($0)"] } ?? ["--clear-groups"])
                return try Command.run("/usr/bin/setpriv", credentials + [Binaries.supervisorctl, "--socket", stack.daemon.socket] + arguments)
            }
            func swapAsCaller(_ path: String) throws -> (CommandResult, [String: Any]?) {
                let result = try asCaller(["swap", path, "--json"], groups: String(group.gid))
                return (result, try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            }
            func errorCode(_ json: [String: Any]?) -> String? { (json?["error"] as? [String: Any])?["code"] as? String }
            func errorMessage(_ json: [String: Any]?) -> String { (json?["error"] as? [String: Any])?["message"] as? String ?? "" }

            let v1Bytes = stack.bytes(stack.live)
            let load = try LoadGenerator(port: stack.proxy.listenPort)

            // 1. A file in a directory only root may enter: refused, and whether it
            //    exists (or is executable) is not told apart from a missing one.
            let secret = stack.work.file("secret")
            try FileManager.default.createDirectory(atPath: secret, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            try FileManager.default.copyItem(atPath: stack.version("v2"), toPath: secret + "/app")
            _ = stack.work.write("secret/not-executable", "#!/bin/sh\n", mode: 0o600)
            var secretMessages: [String] = []
            for name in ["app", "not-executable", "missing"] {
                let (result, json) = try swapAsCaller(secret + "/" + name)
                #expect(result.exitCode == 1, "\(name): \(result.stdout) \(result.stderr)")
                #expect(errorCode(json) == "binary_not_readable", "\(name): \(result.stdout)")
                secretMessages.append(errorMessage(json).replacingOccurrences(of: name, with: "NAME"))
            }
            #expect(Set(secretMessages).count == 1, "the answers tell the files apart: \(secretMessages)")
            #expect(!secretMessages[0].contains("exist") && !secretMessages[0].contains("mode"), "\(secretMessages[0])")

            // 2. A FIFO, a device, a socket and a path with a newline: refused at once.
            let fifo = stack.work.file("fifo")
            #expect(mkfifo(fifo, 0o755) == 0)
            let socketPath = stack.work.file("sock")
            let listener = try UnixListener(path: socketPath)
            defer { listener.close() }
            chmod(socketPath, 0o755)
            let newline = stack.work.file("new\nline")
            try FileManager.default.copyItem(atPath: stack.version("v2"), toPath: newline)
            for path in [fifo, "/dev/zero", socketPath] {
                let (result, json) = try swapAsCaller(path)
                #expect(result.exitCode == 1, "\(path): \(result.stdout) \(result.stderr)")
                #expect(errorCode(json) == "binary_not_regular", "\(path): \(result.stdout)")
            }
            // A newline is refused by supervisorctl before it sends anything, and by
            // the daemon for a caller that sends the JSON itself (curl).
            let (newlineResult, _) = try swapAsCaller(newline)
            #expect(newlineResult.exitCode == 1 && newlineResult.stderr.contains("[binary_path_invalid]"), "\(newlineResult.stderr)")
            #expect(!newlineResult.stderr.contains("new\nline"), "the raw newline reached the terminal: \(newlineResult.stderr.debugDescription)")
            let curl = try Command.run(
                "/usr/bin/setpriv",
                ["--reuid=\(Self.callerUID)", "--regid=\(Self.callerUID)", "--groups=\(group.gid)", "/usr/bin/curl", "-s", "--unix-socket", stack.daemon.socket,
                 "-d", #"{"binary": "\#(stack.work.file("new\\nline"))"}"#, "http://localhost/swap"])
            #expect(curl.stdout.contains("binary_path_invalid"), "\(curl.stdout) \(curl.stderr)")
            // A release only its owner (the caller) may execute: the app (nobody) could not run it.
            let ownerOnly = stack.work.file("owner-only")
            try FileManager.default.copyItem(atPath: stack.version("v2"), toPath: ownerOnly)
            #expect(chown(ownerOnly, uid_t(Self.callerUID), gid_t(Self.callerUID)) == 0 && chmod(ownerOnly, 0o700) == 0)
            let (ownerOnlyResult, ownerOnlyJSON) = try swapAsCaller(ownerOnly)
            #expect(ownerOnlyResult.exitCode == 1)
            #expect(errorCode(ownerOnlyJSON) == "binary_not_executable" && errorMessage(ownerOnlyJSON).contains("g+rx"), "\(ownerOnlyResult.stdout)")
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(stack.bytes(stack.live) == v1Bytes, "nothing was committed by a refusal")
            stack.expectNothingStray()

            // 3. Right after: a 0750 release the caller reads through its group swaps
            //    in, stays 0750 on disk (root's, the app's group) and runs as nobody.
            let release = stack.work.file("releases/v2")
            try FileManager.default.createDirectory(atPath: stack.work.file("releases"), withIntermediateDirectories: false)
            try FileManager.default.copyItem(atPath: stack.version("v2"), toPath: release)
            #expect(chown(release, 0, group.gid) == 0 && chmod(release, 0o750) == 0)
            let (swapped, swappedJSON) = try swapAsCaller(release)
            #expect(swapped.exitCode == 0, "\(swapped.stdout)\n\(swapped.stderr)\nlog:\n\(stack.daemon.log.suffix(3000))")
            #expect(swappedJSON?["ok"] as? Bool == true)
            #expect(stack.serves("v2"))
            var live = stat()
            #expect(stat(stack.live, &live) == 0)
            #expect(live.st_mode & 0o7777 == 0o750, "mode \(String(live.st_mode & 0o7777, radix: 8))")
            #expect(live.st_uid == 0 && live.st_gid == 65534, "owner \(live.st_uid):\(live.st_gid)")
            expectRunsAsNobody("after the swap")
            let v2Bytes = stack.bytes(stack.live)

            // 4. `<binary>.new` replaced during the health phase: the swap fails
            //    before the switch; status and history say v2 serves.
            let slow = stack.version("v3", flags: ["--start-delay-ms", "3000"])
            let other = stack.version("v4")
            let scratch = TemporaryDirectory("least-privilege")
            let background = try TestProcess(
                "/usr/bin/setpriv", ["--reuid=\(Self.callerUID)", "--regid=\(Self.callerUID)", "--groups=\(group.gid)", Binaries.supervisorctl, "--socket", stack.daemon.socket, "swap", slow, "--json"],
                stdout: scratch.file("out"), stderr: scratch.file("err"))
            #expect(eventually(timeout: 20, interval: 0.02) { (stack.daemon.status()?["phase"] as? String)?.contains("health") == true }, "never saw the health phase")
            try FileManager.default.copyItem(atPath: other, toPath: stack.live + ".replacement")
            #expect(rename(stack.live + ".replacement", stack.live + ".new") == 0)
            #expect(background.waitForExit(timeout: 60))
            let replacedOut = (try? String(contentsOfFile: scratch.file("out"), encoding: .utf8)) ?? ""
            let replacedJSON = try? JSONSerialization.jsonObject(with: Data(replacedOut.utf8)) as? [String: Any]
            #expect(background.exitCode == 1, "\(replacedOut)\nlog:\n\(stack.daemon.log.suffix(3000))")
            #expect(errorCode(replacedJSON) == "staged_binary_replaced", "\(replacedOut)")
            #expect(stack.proxy.servedVersion() == "v2")
            #expect(stack.daemon.status()?["version"] as? String == "v2")
            #expect(stack.bytes(stack.live) == v2Bytes, "the replacement was not committed")
            let history = try stack.daemon.ctl(["history", "--json"]).stdout
            #expect(history.contains("staged_binary_replaced"), "\(history)")
            stack.expectNothingStray()

            // 5. A version string with escape sequences is shown escaped.
            let colourful = stack.version("v5")
            let (escapedSwap, escapedJSON) = try swapAsCaller(colourful)
            #expect(escapedSwap.exitCode == 0, "\(escapedSwap.stdout)\n\(escapedSwap.stderr)")
            #expect((escapedJSON?["to"] as? [String: Any])?["version"] as? String == "v5\\e[31mred\\rX", "\(escapedSwap.stdout)")
            let human = try asCaller(["status"], groups: String(group.gid))
            let historyText = try asCaller(["history"], groups: String(group.gid))
            for (label, text) in [("swap", escapedSwap.stdout + escapedSwap.stderr), ("status", human.stdout), ("history", historyText.stdout)] {
                #expect(!text.contains("\u{1b}") && !text.contains("\r"), "\(label) printed a raw control character: \(text.debugDescription)")
            }
            #expect(human.stdout.contains("v5\\e[31mred"), "\(human.stdout)")
            // The app's own output shares the log file; supervisord's lines carry no raw escape.
            let ours = stack.daemon.log.split(separator: "\n").filter { $0.contains(" supervisord: ") }
            #expect(!ours.isEmpty && !ours.contains { $0.contains("\u{1b}") }, "supervisord logged a raw escape")

            // 6. Authorisation from the kernel: nobody is listed in the group in
            //    /etc/group, but a process of its that dropped the group is refused.
            // The socket file's 0660 already keeps such a process out; open it
            // (as a socket unit with SocketMode=0666 would) so the daemon decides.
            chmod(stack.daemon.socket, 0o666)
            let dropped = try Command.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.supervisorctl, "--socket", stack.daemon.socket, "status"])
            #expect(dropped.exitCode != 0)
            #expect(dropped.stderr.contains("forbidden") || dropped.stderr.contains("not root"), "\(dropped.stderr)")
            let withoutGroup = try asCaller(["status"])
            #expect(withoutGroup.exitCode != 0 && withoutGroup.stderr.contains("control group"), "the caller without the group was let in: \(withoutGroup.stderr)")
            chmod(stack.daemon.socket, 0o660)

            load.finish().expectNothingFailed("nginx: refusals, swaps and a replaced staged file by an unprivileged caller")
            stack.expectNothingStray()
        }
    }
}

/// `/proc/PID/status` as key → value.
func procStatus(_ pid: Int) -> [String: String] {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    var fields: [String: String] = [:]
    for line in text.split(separator: "\n") {
        guard let colon = line.firstIndex(of: ":") else { continue }
        fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return fields
}

/// A group made for one test (groupadd), with `members` listed in
/// /etc/group; removed (groupdel) when the test ends.
final class TestGroup {
    let name: String
    let gid: UInt32

    init(members: [String]) throws {
        name = "suptest\(getpid() % 100_000)\(Int.random(in: 100..<999))"
        let added = try Command.run("/usr/sbin/groupadd", [name])
        guard added.exitCode == 0 else { throw TestGroupError(description: "groupadd \(name): \(added.stderr)") }
        for member in members {
            _ = try Command.run("/usr/bin/gpasswd", ["-a", member, name])
        }
        guard let entry = getgrnam(name) else { throw TestGroupError(description: "no group \(name) after groupadd") }
        gid = entry.pointee.gr_gid
    }

    deinit { _ = try? Command.run("/usr/sbin/groupdel", [name]) }
}

struct TestGroupError: Error, CustomStringConvertible {
    let description: String
}

/// A listening unix socket file (to be refused as a swap's source).
final class UnixListener {
    private let fd: Int32
    private let path: String

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() where index < raw.count - 1 { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 1) == 0 else { throw TestGroupError(description: "cannot listen on \(path)") }
    }

    func close() {
        Glibc.close(fd)
        unlink(path)
    }
}

@Suite struct PeerGroupsTests {
    /// SO_PEERGROUPS' answer is sorted and its unused tail zeroed by NIO.
    @Test func theKernelsListIsReadWithoutItsZeroedTail() {
        #expect(PeerCredentials.groups(fromPeerGroups: [5, 10, 0, 0]) == [5, 10])
        #expect(PeerCredentials.groups(fromPeerGroups: [0, 5, 10, 0]) == [0, 5, 10])
        #expect(PeerCredentials.groups(fromPeerGroups: [0, 0, 0]) == [])
        #expect(PeerCredentials.groups(fromPeerGroups: []) == [])
    }

    @Test func authorisationUsesTheConnectionsGroupsOnly() {
        let member = PeerCredentials(pid: 1, uid: 1000, gid: 1000, groups: [27, 1001])
        #expect(member.isAuthorized(group: 1001))
        #expect(!member.isAuthorized(group: 1002))
        #expect(PeerCredentials(pid: 1, uid: 1000, gid: 1002, groups: []).isAuthorized(group: 1002), "primary group")
        #expect(!PeerCredentials(pid: 1, uid: 1000, gid: 1000, groups: nil).isAuthorized(group: 1001))
        #expect(PeerCredentials(pid: 1, uid: 0, gid: 0, groups: nil).isAuthorized(group: nil), "root")
        #expect(!member.isAuthorized(group: nil), "no control group: root only")
    }
}
