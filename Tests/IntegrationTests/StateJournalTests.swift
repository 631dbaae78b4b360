import Foundation
import SupervisorCore
@testable import SupervisorDaemon
import Testing

/// `history.jsonl` and `state.json` when the disk or a crash left them damaged.
@Suite(.timeLimit(.minutes(2)))
struct StateJournalTests {
    func entry(_ id: String) -> HistoryEntry {
        HistoryEntry(
            id: id, time: "2026-12-02T17:45:00Z", action: .swap, callerUID: 0,
            from: BinaryIdentity(sha256: "aa", version: "v1"), to: BinaryIdentity(sha256: "bb", version: "v2"),
            result: .ok, error: nil, phasesMS: ["health": 12], totalMS: 40)
    }

    @Test func anAppendAfterATornLineKeepsTheNewEntryWhole() throws {
        let directory = TemporaryDirectory("journal")
        let journal = StateJournal(directory: directory.path)
        try journal.append(entry("first"))
        // A write cut short (ENOSPC, a crash): part of a line, no final newline.
        let torn = #"{"id":"torn","time":"2026-12-02T17:4"#
        let handle = try #require(FileHandle(forWritingAtPath: journal.historyPath))
        handle.seekToEndOfFile()
        handle.write(Data(torn.utf8))
        handle.closeFile()

        try journal.append(entry("second"))

        let history = journal.history()
        #expect(history.map(\.id) == ["first", "second"])
        #expect(journal.lastEntry()?.id == "second")
        #expect(journal.unreadableHistoryLines() == 1)
        let text = try String(contentsOfFile: journal.historyPath, encoding: .utf8)
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)[1] == torn, "the fragment is a line of its own")
        #expect(text.hasSuffix("\n"))
    }

    @Test func appendsToAWholeFileAddNoBlankLines() throws {
        let directory = TemporaryDirectory("journal")
        let journal = StateJournal(directory: directory.path)
        try journal.append(entry("a"))
        try journal.append(entry("b"))
        let text = try String(contentsOfFile: journal.historyPath, encoding: .utf8)
        #expect(text.split(separator: "\n", omittingEmptySubsequences: false).count == 3, "two lines and the final newline")
        #expect(journal.unreadableHistoryLines() == 0)
        #expect(journal.history().map(\.id) == ["a", "b"])
    }

    @Test func theDaemonSaysOnceAtStartHowManyHistoryLinesItSkipped() throws {
        let daemon = DaemonUnderTest()
        let journal = StateJournal(directory: daemon.directory.file("state"))
        try journal.prepare()
        try journal.append(entry("old"))
        let handle = try #require(FileHandle(forWritingAtPath: journal.historyPath))
        handle.seekToEndOfFile()
        handle.write(Data("not json\n{\"id\":".utf8))
        handle.closeFile()

        try daemon.start()
        #expect(daemon.waitUntilRunning() != nil, "\(daemon.log)")
        #expect(daemon.log.contains("history.jsonl: skipped 2 unreadable lines"), "\(daemon.log)")
        let history = try daemon.ctl(["history", "--json"])
        #expect(history.exitCode == 0)
        #expect(history.stdout.contains("\"old\""))
    }
}
