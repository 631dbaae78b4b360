/// A proxy config read line by line as words (nginx or Caddyfile syntax,
/// without following includes): enough to find a top-level directive's value.
enum ProxyConfigText {
    /// Each line's words, split at blanks and `;`.
    static func lines(_ text: [UInt8]) -> [[Substring]] {
        String(decoding: text, as: UTF8.self).split(separator: "\n").map { line in
            line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ";" })
        }
    }

    /// The first argument of the first line that starts with `directive`.
    static func firstValue(of directive: String, in text: [UInt8]) -> String? {
        lines(text).first { $0.count >= 2 && $0[0] == directive }.map { String($0[1]) }
    }
}
