import Dispatch
import SupervisorCore
import SupervisorShared

/// Writes `state.json` and `history.jsonl` on a serial queue of its own:
/// the fsyncs never block a thread of Swift's cooperative pool, and the
/// writes land in the order the owner asked for them (each one a snapshot
/// taken when it was asked). `write` returns once the snapshot is durable:
/// the journal-before-act rule waits on it.
final class JournalWriter: Sendable {
    private let queue = DispatchQueue(label: "supervisor.journal")
    private let effects: SupervisorEffects

    init(effects: SupervisorEffects) {
        self.effects = effects
    }

    func write(_ state: JournalState) async throws {
        let effects = self.effects
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                do {
                    try effects.writeState(state)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Writes `state` after whatever is queued, blocking the caller until it is
    /// durable: only just before an in-place re-exec, which must not leave a write behind.
    func writeNow(_ state: JournalState) throws {
        let effects = self.effects
        try queue.sync { try effects.writeState(state) }
    }

    /// Queues a write nobody waits for (the serving instance's record); `failed` hears of an error.
    func writeLater(_ state: JournalState, failed: @escaping @Sendable (any Error) -> Void) {
        let effects = self.effects
        queue.async {
            do { try effects.writeState(state) } catch { failed(error) }
        }
    }

    /// Appends a history line; returns once it is written (or failed, which `failed` hears of).
    func append(_ entry: HistoryEntry, failed: @escaping @Sendable (any Error) -> Void) async {
        let effects = self.effects
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                do { try effects.appendHistory(entry) } catch { failed(error) }
                continuation.resume()
            }
        }
    }
}
