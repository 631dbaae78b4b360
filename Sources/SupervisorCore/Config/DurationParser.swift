/// Parses durations written as `"100ms"`, `"30s"`, `"2m"`, `"1.5s"` or a number of seconds.
public enum DurationParser {
    public enum Failure: Error, Equatable {
        case malformed
        case negative
        /// Longer than `DurationParser.maximum`: no timeout, interval or hold in the
        /// config means anything past a week, and far larger values would overflow.
        case tooLong
    }

    /// The longest duration any config key accepts: 7 days.
    public static let maximum: Duration = .seconds(7 * 24 * 3600)

    public static func parse(_ value: ConfigValue) -> Result<Duration, Failure>? {
        switch value {
        case .integer(let seconds):
            return bounded(milliseconds: Double(seconds) * 1000)
        case .float(let seconds):
            guard seconds.isFinite else { return .failure(.malformed) }
            return bounded(milliseconds: seconds * 1000)
        case .string(let text):
            return parse(text)
        default:
            return nil
        }
    }

    public static func parse(_ text: String) -> Result<Duration, Failure> {
        let trimmed = text.trimmingSpaces
        let units: [(suffix: String, millisecondsPerUnit: Double)] = [
            ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000),
        ]
        for unit in units where trimmed.hasSuffix(unit.suffix) {
            let number = String(trimmed.dropLast(unit.suffix.count)).trimmingSpaces
            // "ms" ends in "s": only accept "s" when what is left is a number.
            guard let amount = Double(number), !number.isEmpty,
                number.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" })
            else { continue }
            return bounded(milliseconds: amount * unit.millisecondsPerUnit)
        }
        if let seconds = Double(trimmed), trimmed.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" }) {
            return bounded(milliseconds: seconds * 1000)
        }
        return .failure(.malformed)
    }

    /// The sign and size checks every form goes through, before the conversion to
    /// whole milliseconds (which would trap on a value past `Int64`).
    private static func bounded(milliseconds: Double) -> Result<Duration, Failure> {
        guard milliseconds.isFinite else { return .failure(.malformed) }
        if milliseconds < 0 { return .failure(.negative) }
        guard milliseconds <= Double(maximum.milliseconds) else { return .failure(.tooLong) }
        return .success(.milliseconds(Int64(milliseconds.rounded())))
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// `250ms`, `5s`, `1.5s`, `2m`, `168h`: how a person would write it.
    public var humanReadable: String {
        let ms = milliseconds
        if ms < 1000 { return "\(ms)ms" }
        if ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(Double(ms) / 1000)s"
    }
}

extension String {
    var trimmingSpaces: String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
