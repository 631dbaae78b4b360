#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// examples/ansible for real: ansible-core from PyPI (scripts/test.sh puts
/// it in .build/ansible), local connection, three supervisord instances on
/// this machine, one of which refuses the swap (a failing migration hook).
@Suite(.timeLimit(.minutes(5)))
struct FleetTests {
    static let playbooks = Repository.path("examples/ansible")
    static let ansiblePlaybook = ProcessInfo.processInfo.environment["SUPERVISOR_ANSIBLE_PLAYBOOK"]
        ?? Repository.path(".build/ansible/bin/ansible-playbook")

    final class Host {
        let name: String
        let port: Int
        let daemon: DaemonUnderTest

        init(_ name: String, in work: TemporaryDirectory, hooks: String = "") throws {
            self.name = name
            port = FreePort.pick()[0]
            let live = work.file("\(name)/bin/app")
            try FileManager.default.createDirectory(atPath: work.file("\(name)/bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: AppVersions.make("v1", in: work, flags: []), toPath: live)
            var options = DaemonUnderTest.Options()
            options.binary = live
            options.ports = []
            options.extraApp = "listen = [\"127.0.0.1:\(port)\"]\nversion_command = [\"{binary}\", \"--version\"]"
            options.extraHealth = "mode = \"notify\""
            options.proxySection = "[proxy]\nkind = \"none\"\n" + hooks
            daemon = DaemonUnderTest(options, handoff: true)
            try daemon.start()
        }

        var serves: String? { servedVersion(port: port) }

        var swapsInHistory: Int {
            let history = (try? daemon.ctl(["history", "--json"]))?.stdout ?? ""
            return history.split(separator: "\n").filter { $0.contains("\"action\":\"swap\"") }.count
        }
    }

    func playbook(_ name: String, hosts: [Host], newBinary: String, in work: TemporaryDirectory) throws -> CommandResult {
        let inventory = work.write(
            "inventory.ini",
            "[web]\n" + hosts.map { host in
                "\(host.name) ansible_connection=local supervisor_socket=\(host.daemon.socket) staged_binary=\(work.file("\(host.name)/staged"))"
            }.joined(separator: "\n") + "\n\n[web:vars]\nansible_python_interpreter=/usr/bin/python3\nsupervisorctl=\(Binaries.supervisorctl)\n")
        var environment = ProcessInfo.processInfo.environment
        environment["ANSIBLE_HOME"] = work.file("ansible-home")
        environment["ANSIBLE_LOCAL_TEMP"] = work.file("ansible-tmp")
        environment["ANSIBLE_NOCOLOR"] = "1"
        environment["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
        environment["HOME"] = work.path
        return try Command.run(
            Self.ansiblePlaybook, ["-i", inventory, Self.playbooks + "/" + name, "-e", "new_binary=\(newBinary)"],
            environment: environment, timeout: 240)
    }

    @Test func rolloutStopsAtTheFirstFailingHostAndRollbackUndoesOnlyTheHostsDone() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.ansiblePlaybook), "ansible-playbook (ansible-core from PyPI): run scripts/test.sh")
        let work = TemporaryDirectory("fleet")
        let migrationFixed = work.file("migration-fixed")
        let failingHook = """
            [hooks]
            before_start = [["/bin/sh", "-c", "test -e \(migrationFixed) || { echo 'migration failed: schema lock held' >&2; exit 1; }"]]
            """
        let hosts = [try Host("web1", in: work), try Host("web2", in: work, hooks: failingHook), try Host("web3", in: work)]
        for host in hosts { #expect(host.daemon.waitUntilRunning() != nil, "\(host.daemon.log)") }
        #expect(hosts.map(\.serves) == ["v1", "v1", "v1"])
        let v2 = AppVersions.make("v2", in: work, flags: [])

        // web1 swaps, web2 refuses (old version still serving), web3 is never touched.
        let rollout = try playbook("rollout.yml", hosts: hosts, newBinary: v2, in: work)
        print("ANSIBLE rollout with a failing host:\n\(rollout.stdout.suffix(2500))")
        #expect(rollout.exitCode != 0, "the rollout must report the failure")
        #expect(rollout.stdout.contains("swap failed on web2"), "\(rollout.stdout)")
        #expect(rollout.stdout.contains("migration failed: schema lock held"), "\(rollout.stdout)")
        #expect(hosts.map(\.serves) == ["v2", "v1", "v1"], "\(rollout.stdout)")
        #expect(hosts[2].swapsInHistory == 0, "the rollout stopped before web3")
        #expect(!FileManager.default.fileExists(atPath: work.file("web2/staged")), "the hand-over copy is removed")

        // The rollback play undoes web1 only.
        let rollback = try playbook("rollback.yml", hosts: hosts, newBinary: v2, in: work)
        print("ANSIBLE rollback:\n\(rollback.stdout.suffix(2500))")
        #expect(rollback.exitCode == 0, "\(rollback.stdout)\n\(rollback.stderr)")
        #expect(hosts.map(\.serves) == ["v1", "v1", "v1"])
        #expect(rollback.stdout.contains("skipping: [web2]") && rollback.stdout.contains("skipping: [web3]"), "\(rollback.stdout)")

        // Once the cause is fixed, the same playbook rolls out everywhere.
        _ = FileManager.default.createFile(atPath: migrationFixed, contents: Data())
        let again = try playbook("rollout.yml", hosts: hosts, newBinary: v2, in: work)
        #expect(again.exitCode == 0, "\(again.stdout)\n\(again.stderr)")
        #expect(hosts.map(\.serves) == ["v2", "v2", "v2"])
        #expect(again.stdout.contains("web3 now serves v2"), "\(again.stdout)")

        // Idempotent: hosts already on v2 are skipped, their .bak (v1) kept.
        let swapsBefore = hosts.map(\.swapsInHistory)
        let noop = try playbook("rollout.yml", hosts: hosts, newBinary: v2, in: work)
        #expect(noop.exitCode == 0, "\(noop.stdout)\n\(noop.stderr)")
        #expect(hosts.map(\.swapsInHistory) == swapsBefore, "\(noop.stdout)")
        #expect(noop.stdout.contains("changed=0"), "\(noop.stdout)")
    }
}
