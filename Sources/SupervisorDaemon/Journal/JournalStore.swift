import Logging
import SupervisorCore

/// The one writer of `state.json`: the runtime records the serving instance,
/// a swap records its phase; each change rewrites the file atomically.
public actor JournalStore {
    public let journal: StateJournal
    private var state: JournalState
    private let logger: Logger

    public init(journal: StateJournal, initial: JournalState?, logger: Logger) {
        self.journal = journal
        self.state = initial ?? JournalState(serving: nil, swap: nil)
        self.logger = logger
    }

    public var current: JournalState { state }

    public func setServing(_ instance: JournalState.Instance?) {
        state.serving = instance
        write()
    }

    /// Records a swap's phase (and who serves); throws when the file cannot be written.
    public func setSwap(_ swap: JournalState.SwapInProgress?, serving: JournalState.Instance?) throws {
        state.swap = swap
        if let serving { state.serving = serving }
        try journal.write(state)
    }

    private func write() {
        do {
            try journal.write(state)
        } catch {
            logger.error("cannot write the state journal \(journal.statePath): \(error)")
        }
    }
}
