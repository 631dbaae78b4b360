#if canImport(Glibc)
import Glibc
#endif
import Logging
import SupervisorCore
import SupervisorShared

/// swift-log to stderr. Under systemd (`JOURNAL_STREAM` set) each line starts
/// with its syslog priority (`<3>` error … `<7>` debug) so journald files it
/// right and drops our own timestamp; elsewhere lines carry a timestamp.
/// One event is one line whatever it carries: control characters in the
/// message (a path, a version string, a hook's output) are escaped, and a
/// metadata value with spaces, quotes or controls is quoted, so nothing from
/// outside can forge a line of its own.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let journal: Bool

    public init(label: String, journal: Bool = getenv("JOURNAL_STREAM") != nil) {
        self.label = label
        self.journal = journal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let context = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.value("\($0.value)"))" }.joined(separator: " ")
        let message = UntrustedText.escaped("\(event.message)")
        let line: String
        if journal {
            line = "<\(Self.priority(event.level))>\(message)\(context)\n"
        } else {
            line = "\(Self.timestamp()) \(event.level.rawValue.uppercased()) \(label): \(message)\(context)\n"
        }
        var text = line
        text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
    }

    /// A metadata value as it appears after `key=`: bare when it is one plain
    /// word, else quoted with its quotes and controls escaped.
    static func value(_ text: String) -> String {
        let plain = !text.isEmpty && !text.unicodeScalars.contains { $0 == " " || $0 == "\"" || $0 == "\\" || UntrustedText.isControl($0) }
        if plain { return text }
        var slashed = ""
        for character in text {
            if character == "\\" || character == "\"" { slashed.append("\\") }
            slashed.append(character)
        }
        return UntrustedText.quoted(slashed)
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: 2
        case .error: 3
        case .warning: 4
        case .notice: 5
        case .info: 6
        case .debug, .trace: 7
        }
    }

    static func timestamp() -> String { WallClock.rfc3339Now() }
}
