#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims
import CSystemd

/// A journal stream the app connects itself (in the forked child, before
/// execve): its output goes straight to journald, never through the daemon,
/// and journald records the app's own pid and uid with each line, so the
/// daemon can read the last lines of one instance back (`JournalTail`).
/// Only under journald: when the daemon's own output is a journal stream
/// (`JOURNAL_STREAM`, set by systemd) and journald's socket is there.
public struct JournalStream: Sendable {
    static let socketPath = "/run/systemd/journal/stdout"
    let header: [UInt8]
    /// The daemon's JOURNAL_STREAM, which the child's stays if it cannot connect.
    let inherited: String

    /// Nil when there is no journald to connect to.
    public init?(identifier: String) {
        guard let inherited = getenv("JOURNAL_STREAM").map({ String(cString: $0) }), !inherited.isEmpty,
            access(Self.socketPath, W_OK) == 0
        else { return nil }
        self.inherited = inherited
        // sd_journal_stream_fd's header: identifier, unit id, priority (info),
        // level prefix ("<3>" lines), forward to syslog, kmsg, console.
        header = Array("\(identifier)\n\n6\n1\n0\n0\n0\n".utf8)
    }

    public static var isAvailable: Bool { JournalStream(identifier: "probe") != nil }

    /// "JOURNAL_STREAM=<the daemon's>" with room after the "=" for the 48
    /// characters of the child's own "device:inode" (malloc'd: freed with the env).
    var environmentEntry: UnsafeMutablePointer<CChar> {
        let prefix = Array("JOURNAL_STREAM=".utf8), value = Array(inherited.utf8)
        let capacity = prefix.count + max(value.count, 48) + 1
        let buffer = calloc(capacity, 1)!.assumingMemoryBound(to: CChar.self)
        for (index, byte) in (prefix + value).enumerated() { buffer[index] = CChar(bitPattern: byte) }
        return buffer
    }

    static func withC<R>(_ stream: JournalStream?, slot entry: UnsafeMutablePointer<CChar>??, _ body: (UnsafePointer<csup_journal_stream>?) -> R) -> R {
        guard let stream, let entry = entry ?? nil else { return body(nil) }
        return stream.header.withUnsafeBufferPointer { header in
            header.withMemoryRebound(to: CChar.self) { characters in
                var c = csup_journal_stream(
                    header: characters.baseAddress, header_length: Int32(characters.count),
                    env_slot: entry + "JOURNAL_STREAM=".utf8.count)
                return body(&c)
            }
        }
    }
}

/// The last lines one process wrote to the journal through its own stream
/// (`_PID` and this boot's `_BOOT_ID`), read with sd-journal.
public enum JournalTail {
    /// Oldest first, each cut at 300 characters; empty when the journal has
    /// none. Only lines of the stream the child connected itself (its
    /// identifier), never another process's that had the same pid earlier.
    public static func lines(pid: Int32, identifier: String, limit: Int = 10) -> [String] {
        var opened: OpaquePointer?
        guard sd_journal_open(&opened, Int32(SD_JOURNAL_LOCAL_ONLY)) >= 0, let journal = opened else { return [] }
        defer { sd_journal_close(journal) }
        _ = "_PID=\(pid)".withCString { sd_journal_add_match(journal, $0, 0) }
        _ = "SYSLOG_IDENTIFIER=\(identifier)".withCString { sd_journal_add_match(journal, $0, 0) }
        _ = "_TRANSPORT=stdout".withCString { sd_journal_add_match(journal, $0, 0) }
        var boot = sd_id128_t()
        if sd_id128_get_boot(&boot) >= 0 {
            var text = [CChar](repeating: 0, count: 33)
            _ = sd_id128_to_string(boot, &text)
            let id = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            _ = "_BOOT_ID=\(id)".withCString { sd_journal_add_match(journal, $0, 0) }
        }
        guard sd_journal_seek_tail(journal) >= 0 else { return [] }
        var lines: [String] = []
        while lines.count < limit, sd_journal_previous(journal) > 0 {
            var data: UnsafeRawPointer?
            var length = 0
            guard sd_journal_get_data(journal, "MESSAGE", &data, &length) >= 0, let data else { continue }
            let bytes = UnsafeRawBufferPointer(start: data, count: length).dropFirst("MESSAGE=".utf8.count)
            let line = String(decoding: bytes, as: UTF8.self)
            lines.append(line.count > 300 ? String(line.prefix(300)) + "…" : line)
        }
        return lines.reversed()
    }

    /// Like `lines`, once journald has filed what the process wrote before it
    /// exited (it reads its streams on its own schedule): at most about a second.
    public static func settledLines(pid: Int32, identifier: String, limit: Int = 10) async -> [String] {
        var previous: [String] = []
        for _ in 0..<10 {
            let now = await BlockingThread.run { lines(pid: pid, identifier: identifier, limit: limit) }
            if !now.isEmpty && now == previous { return now }
            previous = now
            try? await Task.sleep(for: .milliseconds(100))
        }
        return previous
    }
}
