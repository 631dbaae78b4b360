#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import SupervisorDaemon
import Testing

extension UnderLoad {
    /// `[app] keep_releases`, `supervisorctl releases` and `rollback --to`, with each
    /// swap's `SUPERVISOR_BACKUP_DIR` kept with the release it protects.
    @Suite(.timeLimit(.minutes(5)))
    struct ReleaseLedgerTests {
        /// A before_start hook that writes a "dump" of the serving version into the swap's backup directory.
        static let backupHook = #"[["/bin/sh", "-c", "echo \"dump of $SUPERVISOR_OLD_VERSION\" > \"$SUPERVISOR_BACKUP_DIR/db.dump\""]]"#

        @Test func threeSwapsAreListedWithTheirBackupsAndRollbackToTheFirstWorks() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            let stack = try ProxyStack(.nginx) { options in
                options.extraControl += "\n[hooks]\nbefore_start = \(Self.backupHook)\n"
            }
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            for tag in ["v2", "v3", "v4"] {
                let (swap, json) = try stack.swap(stack.version(tag, flags: []))
                #expect(swap.exitCode == 0, "\(swap.stderr)")
                let backup = try #require(json?["backup"] as? [String: Any], "\(swap.stdout)")
                #expect((backup["path"] as? String)?.hasPrefix(stack.daemon.directory.file("state/backups/")) == true, "\(backup)")
                #expect(backup["size_bytes"] as? Int == "dump of v1\n".count, "\(backup)")
                #expect(swap.stderr.contains("backup: \(backup["path"] as? String ?? "?")"), "\(swap.stderr)")
            }
            let releases = try stack.daemon.ctl(["releases", "--json"])
            #expect(releases.exitCode == 0, "\(releases.stderr)")
            let report = try JSONDecoder().decode(ReleasesReport.self, from: Data(releases.stdout.utf8))
            #expect(report.releases.map(\.release.version) == ["v4", "v3", "v2", "v1"], "\(releases.stdout)")
            #expect(report.releases.map(\.serving) == [true, false, false, false])
            #expect(report.releases.map(\.backupFile) == [false, true, false, false])
            #expect(report.releases.first?.release.backup == nil, "nothing replaced v4 yet")
            for entry in report.releases.dropFirst() {
                // The backup the swap that replaced it took: a dump of that very version.
                let path = try #require(entry.release.backup?.path, "\(entry)")
                #expect(try String(contentsOfFile: path + "/db.dump", encoding: .utf8) == "dump of \(entry.release.version ?? "?")\n")
                #expect(FileManager.default.fileExists(atPath: stack.daemon.directory.file("state/releases/\(entry.release.sha256)")))
            }
            let history = try stack.daemon.ctl(["history"])
            #expect(history.stdout.contains("backup") && history.stdout.contains("state/backups/"), "\(history.stdout)")
            let human = try stack.daemon.ctl(["releases"])
            #expect(human.stdout.contains("serving") && human.stdout.contains(".bak") && human.stdout.contains("keep_releases = 5"), "\(human.stdout)")

            // Back to the first release, by version; .bak then holds v4.
            let rollback = try stack.daemon.ctl(["rollback", "--to", "v1", "--json"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            #expect(stack.serves("v1"))
            let status = try #require(stack.daemon.status())
            #expect(status["version"] as? String == "v1")
            #expect((status["backup"] as? [String: Any])?["version"] as? String == "v4", "\(status)")
            // And forward again by a sha256 prefix.
            let v3 = try #require(report.releases.first { $0.release.version == "v3" }?.release.sha256)
            let forward = try stack.daemon.ctl(["rollback", "--to", String(v3.prefix(10))])
            #expect(forward.exitCode == 0, "\(forward.stderr)")
            #expect(stack.serves("v3"))
            load.finish().expectNothingFailed("nginx: 3 swaps with backups, rollback --to v1, rollback --to a sha256 prefix")
            stack.expectNothingStray()
        }

        @Test func keepReleasesPrunesButNeverWhatServesOrWhatBakHolds() throws {
            let stack = try ProxyStack(.nginx) { options in
                options.extraApp += "\nkeep_releases = 2"
                options.extraControl += "\n[hooks]\nbefore_start = \(Self.backupHook)\n"
            }
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            var shas: [String: String] = [:]
            shas["v1"] = stack.daemon.status()?["sha256"] as? String
            for tag in ["v2", "v3", "v4"] {
                let (swap, json) = try stack.swap(stack.version(tag, flags: []))
                #expect(swap.exitCode == 0, "\(swap.stderr)")
                shas[tag] = (json?["to"] as? [String: Any])?["sha256"] as? String
            }
            func kept() throws -> ReleasesReport {
                let releases = try stack.daemon.ctl(["releases", "--json"])
                return try JSONDecoder().decode(ReleasesReport.self, from: Data(releases.stdout.utf8))
            }
            let report = try kept()
            #expect(report.releases.map(\.release.version) == ["v4", "v3"])
            let releaseFiles = Set((try? FileManager.default.contentsOfDirectory(atPath: stack.daemon.directory.file("state/releases"))) ?? [])
            #expect(releaseFiles == Set([shas["v4"], shas["v3"]].compactMap { $0 }), "\(releaseFiles)")
            // v1's and v2's backups went with them; v3's (taken when v4 came) is kept.
            let backups = (try? FileManager.default.contentsOfDirectory(atPath: stack.daemon.directory.file("state/backups"))) ?? []
            #expect(backups.count == 1, "\(backups)")

            let unknown = try stack.daemon.ctl(["rollback", "--to", "v1", "--json"])
            #expect(unknown.exitCode == 1, "\(unknown.stderr)")
            #expect(unknown.stdout.contains("\"code\":\"unknown_release\""), "\(unknown.stdout)")
            #expect(unknown.stderr.contains("kept: v4") && unknown.stderr.contains("v3"), "\(unknown.stderr)")
            let ambiguous = try stack.daemon.ctl(["rollback", "--to", "zz"])
            #expect(ambiguous.exitCode == 1 && ambiguous.stderr.contains("[unknown_release]"), "\(ambiguous.stderr)")

            // A plain rollback: v3 serves, v4 is .bak; both stay, whatever the count.
            let rollback = try stack.daemon.ctl(["rollback"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            let after = try kept()
            #expect(Set(after.releases.map(\.release.version)) == ["v3", "v4"], "\(after)")
            #expect(after.releases.first { $0.serving }?.release.version == "v3")
            #expect(after.releases.first { $0.backupFile }?.release.version == "v4")
            stack.expectNothingStray()
        }
    }
}

/// Backups are written by the hooks' user and removed by root: the removal never follows what it finds.
@Suite struct BackupRemovalTests {
    @Test func aBackupIsRemovedWithoutFollowingSymlinksWhateverItsNames() throws {
        let state = TemporaryDirectory("backup-removal")
        let outside = state.write("precious", "keep me")
        let store = ReleaseStore(stateDirectory: state.path)
        let backup = try store.makeBackupDirectory(swapID: "s1", owner: nil)
        try FileManager.default.createDirectory(atPath: backup + "/nested/deeper", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: backup + "/nested/deeper/dump.sql", contents: Data("x".utf8)))
        #expect(symlink(outside, backup + "/link-to-file") == 0)
        #expect(symlink(state.path, backup + "/nested/link-to-dir") == 0)
        // A name that is not UTF-8 (Latin-1 "é").
        let latin1: [CChar] = Array((backup + "/caf").utf8CString.dropLast()) + [CChar(bitPattern: 0xE9), 0]
        let fd = open(latin1, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        #expect(fd >= 0)
        close(fd)

        store.removeBackup(backup)
        #expect(!FileManager.default.fileExists(atPath: backup), "\(String(describing: try? FileManager.default.contentsOfDirectory(atPath: backup)))")
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "keep me")
        #expect(FileManager.default.fileExists(atPath: state.path + "/precious"))

        // Only one name right under backups/ is ever removed.
        store.removeBackup(store.backupsDirectory + "/../precious")
        store.removeBackup(store.backupsDirectory)
        #expect(FileManager.default.fileExists(atPath: outside) && FileManager.default.fileExists(atPath: store.backupsDirectory))
    }
}
