import Testing
@testable import SupervisorCore

@Suite struct ReleaseLedgerUnitTests {
    static func release(_ version: String, _ sha: String, schema: String? = nil, backup: String? = nil) -> ReleaseLedger.Release {
        ReleaseLedger.Release(
            sha256: sha, version: version, schema: schema, servedAt: "2026-12-03T10:00:00Z", callerUID: 0,
            backup: backup.map { .init(path: $0, sizeBytes: 10, swapID: "s") })
    }

    @Test func servedPutsTheReleaseFirstAndKeepsWhatItKnew() {
        var ledger = ReleaseLedger()
        ledger.served(Self.release("v1", "aaaa1111", schema: "1"))
        ledger.served(Self.release("v2", "bbbb2222"))
        ledger.attach(.init(path: "/s/backups/x", sizeBytes: 5, swapID: "x"), to: "aaaa1111")
        ledger.served(ReleaseLedger.Release(sha256: "aaaa1111", version: nil, servedAt: "later", callerUID: 1000))
        #expect(ledger.releases.map(\.sha256) == ["aaaa1111", "bbbb2222"])
        #expect(ledger.releases[0].version == "v1" && ledger.releases[0].schema == "1")
        #expect(ledger.releases[0].backup?.path == "/s/backups/x")
        #expect(ledger.releases[0].servedAt == "later" && ledger.releases[0].callerUID == 1000)
    }

    @Test func pruneKeepsTheNewestAndEveryProtectedOne() {
        var ledger = ReleaseLedger(releases: ["v5", "v4", "v3", "v2", "v1"].map { Self.release($0, $0 + "0000") })
        let dropped = ledger.prune(keep: 2, protecting: ["v1" + "0000"])
        #expect(ledger.releases.map(\.version) == ["v5", "v4", "v1"])
        #expect(dropped.map(\.version) == ["v3", "v2"])
    }

    @Test func selectByVersionOrHashPrefix() {
        let ledger = ReleaseLedger(releases: [Self.release("v2", "abcd1234"), Self.release("v1", "abce9999"), Self.release("v1", "ffff0000")])
        #expect(ledger.select("v2") == .found(ledger.releases[0]))
        #expect(ledger.select("ABCD") == .found(ledger.releases[0]), "a prefix in capitals still matches")
        #expect(ledger.select("abc") == .unknown(ledger.releases), "shorter than four hex digits is not a prefix")
        #expect(ledger.select("abc9") == .unknown(ledger.releases))
        if case .ambiguous(let candidates) = ledger.select("v1") { #expect(candidates.count == 2) } else { Issue.record("v1 names two releases") }
        if case .ambiguous(let candidates) = ledger.select("abc") { #expect(candidates.isEmpty) }
        #expect(ledger.select("ffff") == .found(ledger.releases[2]))
    }
}

@Suite struct RollbackSchemaGuardTests {
    static let ledger = ReleaseLedger(releases: [
        ReleaseLedgerUnitTests.release("v2", "bbbb", schema: "2"),
        ReleaseLedgerUnitTests.release("v1", "aaaa", schema: "1", backup: "/state/backups/s2"),
        ReleaseLedgerUnitTests.release("v0", "0000", schema: "1"),
    ])

    func decide(target: String, field: String? = "db_migration", force: Bool = false, restore: Bool = false) -> RollbackSchemaGuard.Decision {
        RollbackSchemaGuard.decide(ledger: Self.ledger, schemaField: field, serving: "bbbb", target: target, force: force, restoreBackup: restore)
    }

    @Test func aRollbackAcrossASchemaChangeIsRefusedNamingBothAndTheBackup() {
        guard case .refuse(let error) = decide(target: "aaaa") else {
            Issue.record("not refused")
            return
        }
        #expect(error.code == .schemaChanged)
        #expect(error.message.contains("v1 ran on schema \"1\" and v2, serving, on \"2\""))
        #expect(error.message.contains("/state/backups/s2") && error.message.contains("--restore-backup") && error.message.contains("--force"))
    }

    @Test func forceWithoutAFieldOrTheSameSchemaProceed() {
        #expect(decide(target: "aaaa", force: true) == .proceed)
        #expect(decide(target: "aaaa", field: nil) == .proceed)
        #expect(RollbackSchemaGuard.decide(ledger: Self.ledger, schemaField: "x", serving: "aaaa", target: "0000", force: false, restoreBackup: false) == .proceed)
        #expect(decide(target: "unknown") == .proceed, "a release the ledger does not know has no schema to compare")
    }

    @Test func restoreNeedsTheReleasesBackup() {
        #expect(decide(target: "aaaa", restore: true) == .restore(.init(path: "/state/backups/s2", sizeBytes: 10, swapID: "s")))
        guard case .refuse(let error) = decide(target: "0000", restore: true) else {
            Issue.record("a release without a backup cannot be restored")
            return
        }
        #expect(error.code == .noBackup)
    }
}
