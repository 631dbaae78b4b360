/// Parses durations written as `"100ms"`, `"30s"`, `"2m"`, `"1.5s"` or a number of seconds.
public enum DurationParser {
    public enum Failure: Error, Equatable {
        case malformed
        case negative
    }

    public static func parse(_ value: ConfigValue) -> Result<Duration, Failure>? {
        switch value {
        case .integer(let seconds):
            return seconds < 0 ? .failure(.negative) : .success(.seconds(seconds))
        case .float(let seconds):
            guard seconds.isFinite else { return .failure(.malformed) }
            return seconds < 0 ? .failure(.negative) : .success(.milliseconds(Int64((seconds * 1000).rounded())))
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
            if amount < 0 { return .failure(.negative) }
            return .success(.milliseconds(Int64((amount * unit.millisecondsPerUnit).rounded())))
        }
        if let seconds = Double(trimmed), trimmed.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" }) {
            if seconds < 0 { return .failure(.negative) }
            return .success(.milliseconds(Int64((seconds * 1000).rounded())))
        }
        return .failure(.malformed)
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// `250ms`, `5s`, `1.5s`, `2m`: how a person would write it.
    public var humanReadable: String {
        let ms = milliseconds
        if ms < 1000 { return "\(ms)ms" }
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
