#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
@testable import SupervisorDaemon
import SupervisorShared
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

/// An unreadable `state.json` is kept aside and the live app found by its port.
@Suite(.timeLimit(.minutes(3)))
struct CorruptStateTests {
    @Test func readTellsMissingFromUnreadableAndKeepsTheUnreadableAside() throws {
        let directory = TemporaryDirectory("journal")
        let journal = StateJournal(directory: directory.path)
        #expect(journal.read() == .missing)

        let state = JournalState(serving: .init(pid: 42, port: 8081, sha256: "aa", version: "v1"), swap: nil)
        try journal.write(state)
        #expect(journal.read() == .state(state))

        _ = directory.write("state.json", #"{"serving":{"pid":4"#)
        let moment = Date(timeIntervalSince1970: 1_796_233_500)  // 2026-12-02T17:45:00Z
        guard case .unreadable(let reason, let keptAs) = journal.read(now: moment) else {
            Issue.record("a torn state.json was not reported")
            return
        }
        #expect(reason.contains("not JSON"), "\(reason)")
        #expect(keptAs == directory.file("state.json.corrupt-20261202T174500Z"))
        #expect(!FileManager.default.fileExists(atPath: journal.statePath))
        #expect(try String(contentsOfFile: directory.file("state.json.corrupt-20261202T174500Z"), encoding: .utf8) == #"{"serving":{"pid":4"#)

        // A second one in the same second does not overwrite the first.
        _ = directory.write("state.json", "")
        #expect(journal.read(now: moment) == .unreadable(reason: "the file is empty", keptAs: directory.file("state.json.corrupt-20261202T174500Z-2")))
    }

    func corruptStateAndRestart(_ daemon: DaemonUnderTest) throws -> (before: Int, after: [String: Any]) {
        try daemon.start()
        let before = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
        let pid = try #require(before["pid"] as? Int)
        #expect(daemon.terminate(SIGKILL) != nil)
        #expect(processExists(pid_t(pid)), "the app outlives its supervisor")
        _ = daemon.directory.write("state/state.json", "\u{0}\u{0}garbage{")
        try daemon.start()
        let after = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
        return (pid, after)
    }

    func keptAside(_ daemon: DaemonUnderTest) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: daemon.directory.file("state"))) ?? []
        return names.filter { $0.hasPrefix("state.json.corrupt-") }
    }

    @Test func aRestartWithAnUnreadableStateReadoptsTheRunningApp() throws {
        let daemon = DaemonUnderTest()
        let (pid, after) = try corruptStateAndRestart(daemon)
        #expect(after["pid"] as? Int == pid, "the same process, not a second instance")
        #expect(after["restarts"] as? Int == 0)
        #expect(keptAside(daemon).count == 1, "\(keptAside(daemon))")
        #expect(daemon.log.contains("state.json could not be read ("), "\(daemon.log)")
        #expect(daemon.log.contains("; kept as \(daemon.directory.file("state"))/state.json.corrupt-"))
        #expect(daemon.log.contains("looking for a live instance of the app"))
        #expect(daemon.log.contains("found the app alive: pid \(pid) on port \(daemon.ports[0])"))
        #expect(daemon.log.contains("re-adopted the running app (no restart)"))
        #expect(!isListening(port: daemon.ports[1]), "no second instance")
        // The adopted app is supervised: a stop stops it.
        #expect(daemon.terminate() == 0)
        #expect(!processExists(pid_t(pid)))
    }

    @Test func anAppStartedThroughAWrapperScriptIsFoundByItsEnvironment() throws {
        let work = TemporaryDirectory("wrapper")
        let wrapper = work.write("app", "#!/bin/sh\nexec \(Binaries.demoApp) \"$@\"\n", mode: 0o755)
        let daemon = DaemonUnderTest(.init(binary: wrapper, appEnv: ["APP_ENV": "itest"]))
        let (pid, after) = try corruptStateAndRestart(daemon)
        #expect(after["pid"] as? Int == pid, "\(daemon.log)")
        #expect(daemon.log.contains("found the app alive: pid \(pid)"))
    }

    @Test func anUnreadableStateWithNothingAliveStartsTheApp() throws {
        let daemon = DaemonUnderTest()
        try daemon.start()
        let before = try #require(daemon.waitUntilRunning())
        let pid = try #require(before["pid"] as? Int)
        #expect(daemon.terminate(SIGKILL) != nil)
        kill(pid_t(pid), SIGKILL)
        #expect(eventually { !isListening(port: daemon.ports[0]) })
        _ = daemon.directory.write("state/state.json", #"{"serving": 5}"#)
        try daemon.start()
        let after = try #require(daemon.waitUntilRunning(), "\(daemon.log)")
        #expect(after["pid"] as? Int != pid)
        #expect(after["port"] as? Int == daemon.ports[0])
        #expect(keptAside(daemon).count == 1)
        #expect(daemon.log.contains("no live instance of the app on ports"), "\(daemon.log)")
    }
}
