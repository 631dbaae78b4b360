#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

/// The `.deb`s the package tests install: this tree's version and a higher
/// one, built by `scripts/package.sh` (scripts/test.sh builds them before the
/// tests and names the directory in SUPERVISOR_TEST_PACKAGES; without it the
/// first test that needs them builds them, which takes minutes).
enum PackagesUnderTest {
    struct Built {
        let current: String
        let next: String
        let currentVersion: String
        let nextVersion: String
        /// demo-app with the Swift runtime linked in: it runs where the toolchain is hidden.
        let staticDemoApp: String
    }

    static var version: String {
        ((try? String(contentsOfFile: Repository.path("VERSION"), encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static let built: Result<Built, SandboxError> = {
        let directory = ProcessInfo.processInfo.environment["SUPERVISOR_TEST_PACKAGES"] ?? Repository.path(".build-package/test-dist")
        let current = version, next = version + "+next"
        let arch = (try? Command.run("/usr/bin/dpkg", ["--print-architecture"]))?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? "amd64"
        func deb(_ subdirectory: String, _ version: String) -> String {
            "\(directory)/\(subdirectory)/supervisor-swap_\(version)_\(arch).deb"
        }
        for (subdirectory, packageVersion, extra) in [("current", current, ["--with-demo-app"]), ("next", next, [])]
        where !FileManager.default.fileExists(atPath: deb(subdirectory, packageVersion)) {
            print("building \(deb(subdirectory, packageVersion)) with scripts/package.sh (set SUPERVISOR_TEST_PACKAGES to reuse one)")
            guard let result = try? Command.run(
                "/bin/bash", [Repository.path("scripts/package.sh"), "--version", packageVersion, "--out", "\(directory)/\(subdirectory)"] + extra,
                timeout: 1800), result.exitCode == 0
            else {
                return .failure(SandboxError(description: "scripts/package.sh --version \(packageVersion) failed"))
            }
        }
        return .success(Built(
            current: deb("current", current), next: deb("next", next), currentVersion: current, nextVersion: next,
            staticDemoApp: "\(directory)/current/demo-app"))
    }()
}

extension UnderLoad {
    /// The `.deb` installed the way an operator installs it, into a real
    /// systemd (the sandbox, with /usr and /etc as overlays so the host is
    /// untouched) where the Swift toolchain is hidden; the app runs as
    /// www-data behind the host's Caddy, under wrk throughout.
    @Suite(.timeLimit(.minutes(30)), .enabled(if: SystemdSandbox.shouldRun, SystemdSandbox.skipReason))
    struct PackageTests {
        static let toolchain: String = {
            // The directory the swift driver lives in, two levels up: /opt/swift for /opt/swift/usr/bin/swift.
            let swift = (try? Command.run("/bin/sh", ["-c", "command -v swift"]))?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: swift)).map { $0.hasPrefix("/") ? $0 : (swift as NSString).deletingLastPathComponent + "/" + $0 } ?? swift
            let bin = (resolved as NSString).deletingLastPathComponent
            return bin.hasSuffix("/usr/bin") ? String(bin.dropLast("/usr/bin".count)) : bin
        }()

        /// ansible-playbook inside the sandbox, against the sandbox itself (local connection).
        func playbook(_ sandbox: SystemdSandbox, _ name: String, _ extra: [String], work: TemporaryDirectory) throws -> CommandResult {
            let inventory = work.write("inventory.ini", "[web]\nweb1 ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
            let environment = [
                "ANSIBLE_HOME=\(work.file("ansible-home"))", "ANSIBLE_LOCAL_TEMP=\(work.file("ansible-tmp"))", "ANSIBLE_NOCOLOR=1",
                "ANSIBLE_RETRY_FILES_ENABLED=0", "HOME=\(work.path)",
            ]
            return try sandbox.run(
                ["/usr/bin/env"] + environment + [FleetTests.ansiblePlaybook, "-i", inventory, Repository.path("examples/ansible/\(name)")] + extra,
                timeout: 300)
        }

        @Test func theDebInstallsSwapsAndUpgradesInPlaceUnderLoad() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            try #require(FileManager.default.isExecutableFile(atPath: FleetTests.ansiblePlaybook), "ansible-playbook (ansible-core from PyPI): run scripts/test.sh")
            let packages = try PackagesUnderTest.built.get()
            let work = TemporaryDirectory("package")
            chmod(work.path, 0o755)
            try FileManager.default.createDirectory(atPath: work.file("srv"), withIntermediateDirectories: true)
            chmod(work.file("srv"), 0o755)
            let ports = FreePort.pick(2)
            let caddy = CaddyUnderTest(initialUpstreamPort: ports[0])
            try caddy.start()
            defer { caddy.stop() }
            let packagesDirectory = (((packages.current as NSString).deletingLastPathComponent) as NSString).deletingLastPathComponent
            let carried = [work.path, caddy.directory.path] + (packagesDirectory.hasPrefix(Repository.root + "/") ? [] : [packagesDirectory])
            let sandbox = try SystemdSandbox(carrying: carried, packages: true, hiding: [Self.toolchain])
            defer { sandbox.tearDown() }
            func inside(_ command: String, timeout: TimeInterval = 60) throws -> CommandResult {
                try sandbox.run(["/bin/sh", "-c", command], timeout: timeout)
            }
            let unit = "supervisor@demo.service"
            let ctl = "/usr/sbin/supervisorctl --socket /run/supervisor/demo.sock"
            func status() -> [String: Any]? {
                guard let result = try? inside("\(ctl) status --json"), result.exitCode == 0 || result.exitCode == 1 else { return nil }
                return try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            }
            var log: String { (try? String(contentsOfFile: work.file("supervisord.log"), encoding: .utf8)) ?? "" }

            // The toolchain is not there: no swift, an empty directory.
            #expect(try inside("command -v swift").exitCode != 0, "swift must not be found inside")
            #expect(try inside("ls -A \(Self.toolchain)").stdout.isEmpty, "\(Self.toolchain) must look empty inside")

            // Install with the fleet playbook (apt-get install of the .deb).
            let install = try playbook(sandbox, "install.yml", ["-e", "deb=\(packages.current)"], work: work)
            print("ANSIBLE install.yml (first install):\n\(install.stdout.suffix(1500))")
            #expect(install.exitCode == 0, "\(install.stdout.suffix(3000))\n\(install.stderr)")
            #expect(try inside("dpkg-query --showformat='${Version}' --show supervisor-swap").stdout == packages.currentVersion)
            let ldd = try inside("ldd /usr/sbin/supervisord /usr/sbin/supervisorctl")
            #expect(ldd.exitCode == 0 && !ldd.stdout.contains("not found") && !ldd.stdout.contains("swift") && !ldd.stdout.contains(Self.toolchain), "\(ldd.stdout)")
            #expect(try inside("/usr/sbin/supervisord --version").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == packages.currentVersion)
            #expect(try inside("systemctl is-enabled supervisor@demo.service").stdout.trimmingCharacters(in: .whitespacesAndNewlines) != "enabled", "nothing enabled behind the operator's back")
            #expect(try inside("systemctl show -P FragmentPath supervisor@demo.service").stdout.contains("/lib/systemd/system/supervisor@.service"))

            // demo-app (Swift runtime linked in) as the app, run by www-data.
            let live = work.file("srv/app")
            func version(_ tag: String, flags: [String] = []) -> String {
                let path = AppVersions.make(tag, in: work, flags: flags, source: packages.staticDemoApp)
                chmod(work.file("versions"), 0o755)
                return path
            }
            try FileManager.default.copyItem(atPath: version("v1"), toPath: live)
            let config = work.write("demo.toml", SupervisorUnderSystemd.behindCaddy(name: "demo", live: live, ports: ports, caddy: caddy, extraApp: "user = \"www-data\""))
            #expect(try inside("install -D -m 0644 \(config) /etc/supervisor/demo.toml").exitCode == 0)
            try sandbox.install(
                "supervisor@demo.service.d/test.conf",
                "[Service]\nStandardOutput=append:\(work.file("supervisord.log"))\nStandardError=inherit\n"
                    + caddy.environment.filter { ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"].contains($0.key) }
                    .map { "Environment=\($0.key)=\($0.value)" }.sorted().joined(separator: "\n") + "\n")
            let enable = try inside("systemctl enable --now supervisor@demo", timeout: 90)
            #expect(enable.exitCode == 0, "\(enable.stderr)\n\(log)")
            let first = try #require(status(), "\(log)")
            #expect(first["phase"] as? String == "running", "\(first)")
            #expect(first["supervisor_version"] as? String == packages.currentVersion)
            let firstApp = try #require(first["pid"] as? Int)
            let appStatus = (try? String(contentsOfFile: "/proc/\(sandbox.pid)/root/proc/\(firstApp)/status", encoding: .utf8)) ?? ""
            #expect(appStatus.contains("Uid:\t33\t"), "the app runs as www-data: \(appStatus.prefix(600))")
            #expect(caddy.servedVersion() == "v1")

            // A swap and a rollback under wrk through Caddy.
            var load = try LoadGenerator(port: caddy.listenPort)
            var keepAlive = try LoadGenerator(port: caddy.listenPort, connections: 8, closeConnections: false)
            let swap = try inside("\(ctl) swap \(version("v2")) --json")
            #expect(swap.exitCode == 0, "\(swap.stderr)\n\(log.suffix(3000))")
            #expect(caddy.servedVersion() == "v2")
            let rollback = try inside("\(ctl) rollback --json")
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            #expect(caddy.servedVersion() == "v1")
            load.finish().expectNothingFailed("package: swap + rollback, installed from the .deb (Connection: close)", through: .caddy, caddyReloads: 2)
            keepAlive.finish().expectNothingFailed("package: swap + rollback, installed from the .deb (keep-alive)", through: .caddy, caddyReloads: 2)

            // `systemctl reload` during a swap: the swap completes, then the re-exec.
            let daemonPID = Int(sandbox.property("MainPID", of: unit)) ?? 0
            let slowSwap = try TestProcess(
                "/usr/bin/nsenter", sandbox.inside(["/bin/sh", "-c", "\(ctl) swap \(version("v3", flags: ["--start-delay-ms", "2000"])) --json"]),
                stdout: work.file("slow-swap.out"), stderr: work.file("slow-swap.err"))
            #expect(eventually(timeout: 20, interval: 0.02) { (status()?["phase"] as? String).map { $0.hasPrefix("swap:start") || $0.hasPrefix("swap:health") } == true })
            let reload = try inside("systemctl reload supervisor@demo")
            #expect(reload.exitCode == 0, "\(reload.stderr)")
            #expect(slowSwap.waitForExit(timeout: 60))
            #expect(slowSwap.exitCode == 0, "\((try? String(contentsOfFile: work.file("slow-swap.err"), encoding: .utf8)) ?? "")")
            #expect(eventually(timeout: 30) { log.contains("re-executed in place (pid \(daemonPID))") }, "\(log.suffix(3000))")
            let swapDone = try #require(log.range(of: "swap done in"), "\(log.suffix(3000))")
            #expect(swapDone.lowerBound < (log.range(of: "re-executed in place")?.lowerBound ?? swapDone.lowerBound), "the swap ended before the exec")
            #expect(eventually(timeout: 20) { status()?["phase"] as? String == "running" && sandbox.property("ActiveState", of: unit) == "active" })
            #expect(status()?["version"] as? String == "v3")
            let appAfterReload = try #require(status()?["pid"] as? Int)
            let children = try inside("ps -o pid= --ppid \(daemonPID)").stdout.split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            #expect(children == [appAfterReload], "one app process, no stray child: \(children)")
            #expect(try inside("ls \(work.file("srv"))").stdout.split(separator: "\n").sorted() == ["app", "app.bak"], "no .new left")

            // The upgrade, under wrk: the same daemon pid, the same app pid, the new version.
            load = try LoadGenerator(port: caddy.listenPort)
            keepAlive = try LoadGenerator(port: caddy.listenPort, connections: 8, closeConnections: false)
            let upgrade = try playbook(sandbox, "install.yml", ["-e", "deb=\(packages.next)"], work: work)
            print("ANSIBLE install.yml (upgrade):\n\(upgrade.stdout.suffix(2000))")
            #expect(upgrade.exitCode == 0, "\(upgrade.stdout.suffix(3000))\n\(upgrade.stderr)\n\(log.suffix(3000))")
            #expect(upgrade.stdout.contains("now runs supervisord \(packages.nextVersion) (pid \(daemonPID) unchanged)"), "\(upgrade.stdout.suffix(3000))")
            #expect(Int(sandbox.property("MainPID", of: unit)) == daemonPID, "the daemon was re-executed, not restarted")
            #expect(Int(sandbox.property("NRestarts", of: unit)) == 0)
            let upgraded = try #require(status())
            #expect(upgraded["pid"] as? Int == appAfterReload, "the app was not restarted")
            #expect(upgraded["supervisor_version"] as? String == packages.nextVersion)
            #expect(try inside("/usr/sbin/supervisord --version").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == packages.nextVersion)
            // The upgrade reloads no proxy: strictly nothing fails, keep-alive included.
            load.finish().expectNothingFailed("package: apt-get install of a newer .deb, supervisord re-executed in place (Connection: close)")
            keepAlive.finish().expectNothingFailed("package: apt-get install of a newer .deb, supervisord re-executed in place (keep-alive)")
            load = try LoadGenerator(port: caddy.listenPort)
            let afterUpgrade = try inside("\(ctl) swap \(version("v4")) --json")
            #expect(afterUpgrade.exitCode == 0, "a swap works after the upgrade: \(afterUpgrade.stderr)")
            #expect(caddy.servedVersion() == "v4")
            load.finish().expectNothingFailed("package: a swap after the upgrade (Connection: close)", through: .caddy, caddyReloads: 1)

            // A broken supervisord in a newer package: refused, the running one goes on.
            let broken = work.file("broken")
            #expect(try inside("dpkg-deb -R \(packages.next) \(broken)").exitCode == 0)
            _ = work.write("broken/usr/sbin/supervisord", "#!/bin/sh\necho 'this supervisord is broken' >&2\nexit 1\n", mode: 0o755)
            let brokenVersion = packages.nextVersion + "2"
            #expect(try inside("sed -i 's/^Version: .*/Version: \(brokenVersion)/' \(broken)/DEBIAN/control && dpkg-deb --root-owner-group --build \(broken) \(work.file("broken.deb")) >/dev/null").exitCode == 0)
            load = try LoadGenerator(port: caddy.listenPort)
            let brokenInstall = try inside("DEBIAN_FRONTEND=noninteractive dpkg -i \(work.file("broken.deb")) 2>&1", timeout: 180)
            print("DPKG broken supervisord:\n\(brokenInstall.stdout.suffix(1500))")
            #expect(brokenInstall.stdout.contains("re-exec refused"), "\(brokenInstall.stdout)")
            #expect(Int(sandbox.property("MainPID", of: unit)) == daemonPID)
            #expect(sandbox.property("ActiveState", of: unit) == "active")
            #expect(sandbox.property("StatusText", of: unit).contains("re-exec refused"))
            let stillThere = try #require(status())
            #expect(stillThere["supervisor_version"] as? String == packages.nextVersion, "the working image goes on")
            #expect((stillThere["problem"] as? String)?.contains("this supervisord is broken") == true, "\(stillThere)")
            let afterBroken = try inside("\(ctl) swap \(version("v5")) --json")
            #expect(afterBroken.exitCode == 0, "it still swaps: \(afterBroken.stderr)")
            #expect(caddy.servedVersion() == "v5")
            load.finish().expectNothingFailed("package: a broken supervisord refused, then a swap (Connection: close)", through: .caddy, caddyReloads: 1)

            let stop = try inside("systemctl stop supervisor@demo", timeout: 90)
            #expect(stop.exitCode == 0, "\(stop.stderr)")
        }
    }
}
