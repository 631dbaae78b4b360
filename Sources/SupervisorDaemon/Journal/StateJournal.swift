import Foundation
import SupervisorCore

/// `state.json` (atomic rewrite) and `history.jsonl` (one appended line per
/// swap or rollback) in the state directory.
public struct StateJournal: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public var statePath: String { directory + "/state.json" }
    public var historyPath: String { directory + "/history.jsonl" }

    public func prepare() throws {
        try AtomicFile.makeDirectories(directory, mode: 0o750)
    }

    public func write(_ state: JournalState) throws {
        try AtomicFile.write(ControlJSON.encode(state), to: statePath, mode: 0o640)
    }

    public func read() -> JournalState? {
        guard let bytes = AtomicFile.read(statePath) else { return nil }
        return try? JSONDecoder().decode(JournalState.self, from: Data(bytes))
    }

    public func append(_ entry: HistoryEntry) throws {
        try AtomicFile.appendLine(String(decoding: ControlJSON.encode(entry), as: UTF8.self), to: historyPath)
    }

    /// The newest history entry, reading only the end of the file.
    public func lastEntry() -> HistoryEntry? {
        guard let tail = AtomicFile.readTail(historyPath, bytes: 1 << 16) else { return nil }
        let lines = tail.split(separator: UInt8(ascii: "\n"))
        return lines.reversed().lazy.compactMap { try? JSONDecoder().decode(HistoryEntry.self, from: Data($0)) }.first
    }

    /// Every history entry, oldest first; unreadable lines are skipped.
    public func history() -> [HistoryEntry] {
        historyLines().entries
    }

    /// How many non-empty lines of `history.jsonl` are not a history entry
    /// (a torn write, a hand edit): `history()` and `lastEntry()` skip them.
    public func unreadableHistoryLines() -> Int {
        historyLines().unreadable
    }

    private func historyLines() -> (entries: [HistoryEntry], unreadable: Int) {
        guard let bytes = AtomicFile.read(historyPath) else { return ([], 0) }
        let decoder = JSONDecoder()
        var entries: [HistoryEntry] = []
        var unreadable = 0
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            if let entry = try? decoder.decode(HistoryEntry.self, from: Data(line)) {
                entries.append(entry)
            } else {
                unreadable += 1
            }
        }
        return (entries, unreadable)
    }
}
