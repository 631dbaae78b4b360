import SupervisorCore
import Testing

/// What a daemon does about an emergency rollback done while no daemon ran:
/// every row of `EmergencyRollbackPlanner`'s table.
@Suite struct EmergencyRollbackPlannerTests {
    let record = EmergencyRollbackRecord(id: "emergency-1", time: "t", callerUID: 0, fromSHA256: "v2", toSHA256: "v1")

    func decide(fresh: Bool = false, serving: String?, binary: String?, backup: String?) -> EmergencyRollbackPlanner.Decision {
        EmergencyRollbackPlanner.decide(record, .init(startedFresh: fresh, servingSHA256: serving, binarySHA256: binary, backupSHA256: backup))
    }

    @Test func theRolledAwayInstanceStillServingIsMovedAfterTheFilesAreTradedBack() {
        #expect(decide(serving: "v2", binary: "v1", backup: "v2") == .move(exchangeBack: true))
        // Found by port (the journal lost), what it runs unknown: the files say it is the rolled-away one.
        #expect(decide(serving: nil, binary: "v1", backup: "v2") == .move(exchangeBack: true))
    }

    @Test func filesAlreadyTradedBackByAnEarlierDaemonAreNotTradedAgain() {
        #expect(decide(serving: "v2", binary: "v2", backup: "v1") == .move(exchangeBack: false))
    }

    @Test func theRestoredBinaryAlreadyServingIsDone() {
        guard case .done = decide(serving: "v1", binary: "v1", backup: "v2") else {
            Issue.record("adopted and already the restored binary: nothing to move")
            return
        }
        guard case .done = decide(fresh: true, serving: "v1", binary: "v1", backup: "v2") else {
            Issue.record("started fresh from the restored binary (the rolled-away instance had died): done")
            return
        }
    }

    @Test func anythingElseFailsWithoutMoving() {
        let cases: [(Bool, String?, String?, String?)] = [
            (true, "v3", "v3", "v2"),  // started fresh, but the file changed after the exchange
            (false, "v3", "v1", "v2"),  // serving neither version
            (false, "v2", "v3", "v2"),  // the binary changed after the exchange
            (false, "v2", "v1", "v1"),  // .bak changed after the exchange
            (false, "v2", nil, "v2"),  // the binary is gone
        ]
        for (fresh, serving, binary, backup) in cases {
            guard case .failed(let message) = decide(fresh: fresh, serving: serving, binary: binary, backup: backup) else {
                Issue.record("fresh \(fresh), serving \(serving ?? "nil"), binary \(binary ?? "nil"), backup \(backup ?? "nil"): expected a failure")
                continue
            }
            #expect(!message.isEmpty)
        }
    }
}
