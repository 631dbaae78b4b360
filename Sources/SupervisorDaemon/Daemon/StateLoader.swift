import Logging
import SupervisorCore

/// Reads the state journal once at start and says what it could not read.
enum StateLoader {
    static func load(journal: StateJournal, config: SupervisorConfig, logger: Logger) -> JournalState? {
        let unreadable = journal.unreadableHistoryLines()
        if unreadable > 0 {
            logger.warning("history.jsonl: skipped \(unreadable) unreadable line\(unreadable == 1 ? "" : "s") (\(journal.historyPath))")
        }
        return journal.read()
    }
}
