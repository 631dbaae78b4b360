#if canImport(Glibc)
import Glibc
#endif
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

    /// What `read()` found in `state.json`.
    public enum Loaded: Sendable, Equatable {
        /// No file: nothing was running under a supervisor (or it never wrote one).
        case missing
        case state(JournalState)
        /// The file is there but is not a state: it was renamed to `keptAs`
        /// (nil when even that failed; `reason` then says so too).
        case unreadable(reason: String, keptAs: String?)
    }

    /// Reads `state.json`. One that exists but does not parse is never
    /// silently ignored: it is moved aside to `state.json.corrupt-<UTC time>`
    /// (so the next write cannot destroy it) and reported.
    public func read(now: Date = Date()) -> Loaded {
        let reason: String
        if let bytes = AtomicFile.read(statePath) {
            do {
                return .state(try JSONDecoder().decode(JournalState.self, from: Data(bytes)))
            } catch {
                reason = bytes.isEmpty ? "the file is empty" : "\(bytes.count) bytes: \(Self.describe(error))"
            }
        } else {
            var info = stat()
            if lstat(statePath, &info) != 0 && errno == ENOENT { return .missing }
            reason = "cannot read it: \(String(cString: strerror(errno)))"
        }
        let aside = Self.asidePath(statePath, now: now)
        guard rename(statePath, aside) == 0 else {
            return .unreadable(reason: "\(reason); cannot rename it to \(aside): \(String(cString: strerror(errno)))", keptAs: nil)
        }
        AtomicFile.syncDirectory(of: statePath)
        return .unreadable(reason: reason, keptAs: aside)
    }

    /// `state.json.corrupt-20261202T174500Z`, with `-2`, `-3` … when taken.
    static func asidePath(_ path: String, now: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: now)
        func two(_ value: Int?) -> String { let text = String(value ?? 0); return text.count < 2 ? "0" + text : text }
        let base = "\(path).corrupt-\(c.year ?? 0)\(two(c.month))\(two(c.day))T\(two(c.hour))\(two(c.minute))\(two(c.second))Z"
        var candidate = base
        var number = 1
        var info = stat()
        while lstat(candidate, &info) == 0 {
            number += 1
            candidate = "\(base)-\(number)"
        }
        return candidate
    }

    /// A decoding error in a few words.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.isEmpty ? "" : " at " + context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let context):
            return "not JSON (\(context.debugDescription.trimmingCharacters(in: CharacterSet(charactersIn: "."))))\(path(context))"
        case .keyNotFound(let key, let context):
            return "no \"\(key.stringValue)\"\(path(context))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\(context.debugDescription.trimmingCharacters(in: CharacterSet(charactersIn: ".")))\(path(context))"
        @unknown default:
            return "\(error)"
        }
    }

    // MARK: - An emergency rollback for the next daemon to finish

    public var emergencyRollbackPath: String { directory + "/emergency-rollback.json" }

    public func writeEmergencyRollback(_ record: EmergencyRollbackRecord) throws {
        try AtomicFile.write(ControlJSON.encode(record), to: emergencyRollbackPath, mode: 0o640)
    }

    /// The record an emergency rollback left; nil when there is none or it does not parse.
    public func emergencyRollback() -> EmergencyRollbackRecord? {
        guard let bytes = AtomicFile.read(emergencyRollbackPath) else { return nil }
        return try? JSONDecoder().decode(EmergencyRollbackRecord.self, from: Data(bytes))
    }

    public func removeEmergencyRollback() {
        unlink(emergencyRollbackPath)
        AtomicFile.syncDirectory(of: emergencyRollbackPath)
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
