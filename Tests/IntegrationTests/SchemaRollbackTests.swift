#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import Testing

extension UnderLoad {
    /// `[health] schema_field` with a real SQLite database: demo-app reports the
    /// database's `PRAGMA user_version` as `db_migration`, a `before_start` hook
    /// backs it up into `SUPERVISOR_BACKUP_DIR` and migrates it for v2, and
    /// `[hooks] restore` puts a backup back.
    @Suite(.timeLimit(.minutes(5)))
    struct SchemaRollbackTests {
        static var sqliteInstalled: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3") }

        static func userVersion(_ database: String) throws -> String {
            try Command.run("/usr/bin/sqlite3", [database, "PRAGMA user_version;"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        static func hooks(database: String) -> String {
            """

            [hooks]
            before_start = [["/bin/sh", "-c", "cp \(database) \\"$SUPERVISOR_BACKUP_DIR/app.db\\" && if [ -z \\"$SUPERVISOR_RESTORE_BACKUP\\" ]; then case \\"$SUPERVISOR_NEW_VERSION\\" in v2) /usr/bin/sqlite3 \(database) 'PRAGMA user_version = 2' ;; esac; fi"]]
            restore = [["/bin/sh", "-c", "cp \\"$SUPERVISOR_BACKUP_DIR/app.db\\" \(database)"]]
            """
        }

        /// Handoff mode, stop-start (the app locks its database): a rollback across the
        /// migration is refused naming the backup; --restore-backup puts schema 1 back and
        /// v1 serves on it; --force crosses it as asked; no request fails.
        @Test func aRollbackAcrossAMigrationNeedsTheBackupOrForce() throws {
            try #require(LoadGenerator.isInstalled, "wrk: run scripts/test.sh")
            try #require(Self.sqliteInstalled, "sqlite3: run scripts/test.sh")
            let work = TemporaryDirectory("schema")
            let database = work.file("app.db"), lock = work.file("app.lock")
            let created = try Command.run("/usr/bin/sqlite3", [database, "CREATE TABLE notes(body TEXT); PRAGMA user_version = 1;"])
            try #require(created.exitCode == 0, "\(created.stderr)")
            let flags = ["--start-delay-ms", "300", "--lock-file", lock, "--schema-from-sqlite", database]
            let port = FreePort.pick()[0]
            let live = work.file("bin/app")
            try FileManager.default.createDirectory(atPath: work.file("bin"), withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: AppVersions.make("v1", in: work, flags: Array(flags.dropFirst(2))), toPath: live)
            var options = DaemonUnderTest.Options()
            options.binary = live
            options.appArgs = []
            options.ports = []
            options.extraApp = "listen = [\"127.0.0.1:\(port)\"]\nversion_command = [\"{binary}\", \"--version\"]\nstrategy = \"stop-start\""
            options.extraHealth = "mode = \"notify\"\nschema_field = \"db_migration\""
            options.proxySection = "[proxy]\nkind = \"none\"" + Self.hooks(database: database)
            let daemon = DaemonUnderTest(options, handoff: true)
            try daemon.start()
            #expect(daemon.waitUntilRunning() != nil, "\(daemon.log)")
            func releases() -> ReleasesReport? {
                guard let result = try? daemon.ctl(["releases", "--json"]) else { return nil }
                return try? JSONDecoder().decode(ReleasesReport.self, from: Data(result.stdout.utf8))
            }
            #expect(eventually(timeout: 10) { releases()?.releases.first?.release.schema == "1" }, "\(String(describing: releases()))")

            let load = try LoadGenerator(port: port)
            let keepAlive = try LoadGenerator(port: port, connections: 8, closeConnections: false)
            let swap = try daemon.ctl(["swap", AppVersions.make("v2", in: work, flags: flags), "--json"])
            #expect(swap.exitCode == 0, "\(swap.stderr)\n\(daemon.log.suffix(3000))")
            #expect(swap.stderr.contains("schema: db_migration = \"2\""), "\(swap.stderr)")
            #expect(try Self.userVersion(database) == "2")
            let backup = try #require(releases()?.releases.first { $0.release.version == "v1" }?.release.backup)
            #expect(try Self.userVersion(backup.path + "/app.db") == "1", "the backup is the database before the migration")

            // A plain rollback would run v1 on schema 2: refused, naming both schemas and the backup.
            let refused = try daemon.ctl(["rollback", "--json"])
            #expect(refused.exitCode == 1, "\(refused.stderr)")
            #expect(refused.stdout.contains("\"code\":\"schema_changed\""), "\(refused.stdout)")
            #expect(refused.stderr.contains("v1 ran on schema \"1\" and v2, serving, on \"2\""), "\(refused.stderr)")
            #expect(refused.stderr.contains(backup.path) && refused.stderr.contains("--restore-backup") && refused.stderr.contains("--force"), "\(refused.stderr)")
            #expect(daemon.status()?["version"] as? String == "v2", "nothing changed")

            let restored = try daemon.ctl(["rollback", "--restore-backup", "--json"])
            #expect(restored.exitCode == 0, "\(restored.stderr)\n\(daemon.log.suffix(3000))")
            #expect(restored.stderr.contains("restoring the backup \(backup.path) with [hooks] restore"), "\(restored.stderr)")
            #expect(try Self.userVersion(database) == "1")
            #expect(httpGet(port: port, path: "/health")?.body.contains("\"db_migration\":\"1\"") == true)
            // What v2 left (schema 2) was backed up before the restore, and is kept with v2.
            let left = try #require(releases()?.releases.first { $0.release.version == "v2" }?.release.backup, "\(String(describing: releases()))")
            #expect(try Self.userVersion(left.path + "/app.db") == "2")
            #expect(daemon.status()?["version"] as? String == "v1")

            // Forward again (migrates to 2), then back with --force: v1 runs on schema 2, as asked.
            let again = try daemon.ctl(["swap", AppVersions.make("v2", in: work, flags: flags)])
            #expect(again.exitCode == 0, "\(again.stderr)")
            let forced = try daemon.ctl(["rollback", "--force"])
            #expect(forced.exitCode == 0, "\(forced.stderr)")
            #expect(httpGet(port: port, path: "/health")?.body.contains("\"db_migration\":\"2\"") == true)
            #expect(daemon.status()?["version"] as? String == "v1")

            for (label, report) in [("Connection: close", load.finish()), ("keep-alive", keepAlive.finish())] {
                report.expectNothingFailed("handoff stop-start: migration, refused rollback, --restore-backup, swap, --force (\(label))")
            }
        }

        /// In the warm hold, a new version that fails after migrating is not rolled back
        /// automatically: the old code would run on the new schema. Reported instead.
        @Test func theWarmHoldDoesNotRollBackAcrossAMigration() throws {
            try #require(Self.sqliteInstalled, "sqlite3: run scripts/test.sh")
            let work = TemporaryDirectory("schema-hold")
            let database = work.file("app.db")
            let created = try Command.run("/usr/bin/sqlite3", [database, "PRAGMA user_version = 1;"])
            try #require(created.exitCode == 0, "\(created.stderr)")
            let stack = try ProxyStack(.nginx, v1Flags: ["--schema-from-sqlite", database]) { options in
                options.extraHealth += "\nwatch = \"60s\"\nschema_field = \"db_migration\""
                options.extraControl += Self.hooks(database: database)
            }
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            // The first start records v1's schema (read from its health answer) with its release.
            #expect(eventually(timeout: 10) { ((try? stack.daemon.ctl(["releases", "--json"]))?.stdout ?? "").contains("\"schema\":\"1\"") })
            let (swap, _) = try stack.swap(stack.version("v2", flags: ["--schema-from-sqlite", database, "--fail-health-after-ms", "1500"]))
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            #expect(swap.stderr.contains("the schema changed (db_migration \"1\" → \"2\")"), "\(swap.stderr)")
            #expect(eventually(timeout: 20) { (stack.daemon.status()?["problem"] as? String)?.contains("no automatic rollback: it would cross a schema change") == true },
                "\(stack.daemon.log.suffix(2000))")
            #expect(stack.proxy.servedVersion() == "v2", "v2 still serves")
            let metrics = try PrometheusText.parse(try stack.daemon.metrics())
            #expect(metrics.value("supervisor_auto_rollbacks_withheld_total", ["reason": "schema_changed"]) == 1)
            #expect(metrics.value("supervisor_rollbacks_total", ["kind": "auto", "result": "ok"]) == 0)
        }
    }
}
