/// Text that came from outside (a version command's output, a hook's output,
/// a path a caller sent) made safe to show: control characters, which could
/// move a terminal's cursor, recolour it or forge a log line, are written as
/// visible escapes (`\n`, `\r`, `\t`, `\e`, `\u{7f}` …). Printable text, UTF-8
/// included, is unchanged.
public enum UntrustedText {
    /// `text` with every control character escaped; a backslash before one
    /// stays as it is (the escape is for people, not a reversible encoding).
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        result.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            guard isControl(scalar) else {
                result.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\u{1b}": result += "\\e"
            case "\0": result += "\\0"
            default: result += "\\u{\(String(scalar.value, radix: 16))}"
            }
        }
        return result
    }

    /// Each line of `text` escaped, the line breaks kept: a command's output
    /// tail in an error message.
    public static func escapedLines(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { escaped(String($0)) }.joined(separator: "\n")
    }

    /// `escaped(text)` in double quotes, for a value inside a sentence.
    public static func quoted(_ text: String) -> String { "\"\(escaped(text))\"" }

    /// C0 controls, DEL and the C1 controls (U+0080–U+009F: some terminals
    /// read U+009B as CSI).
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value)
    }
}
