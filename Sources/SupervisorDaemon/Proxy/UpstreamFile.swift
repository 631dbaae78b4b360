import SupervisorCore
import SupervisorShared

/// The file the supervisor owns and the proxy config imports: rendered from
/// `upstream_template`, written atomically, restorable.
///
/// While the instance a switch moved away from still lives (its drain, the
/// warm hold), the file names it as the proxy's fallback after the new one,
/// so a new instance that dies right after the switch costs no request while
/// the supervisor switches back:
/// - nginx: `server NEW max_fails=0;` then `server OLD backup;` (nginx's
///   default `proxy_next_upstream error timeout` passes a failed request on;
///   `max_fails=0`, in place of the template's own, keeps nginx from marking
///   NEW down for `fail_timeout`, which a second server would otherwise turn
///   on for the only primary);
/// - Caddy: `to NEW`, `to OLD`, `lb_policy first`, a `fail_duration` that
///   outlasts a switch back, and `lb_retry_match { method GET HEAD }` (a
///   failed dial or round trip marks NEW down, and the `lb_try_duration`
///   retry takes OLD; like nginx, only idempotent requests are retried once
///   they were sent).
/// Only a template that is one `server …;` (nginx) or `to …` (Caddy) line can
/// carry a fallback; a proxy config that refuses it (an nginx `hash`
/// balancer, a Caddyfile with its own `lb_policy`) is switched without one.
public struct UpstreamFile: Sendable {
    /// How this proxy names a second choice.
    public enum FallbackStyle: Sendable, Equatable {
        case nginxBackup
        /// `failDuration`: how long one failure keeps NEW out of Caddy's choice.
        case caddyFirst(failDuration: Duration)
    }

    public let path: String
    public let template: String
    public let fallbackStyle: FallbackStyle?

    public init(path: String, template: String, fallbackStyle: FallbackStyle? = nil) {
        self.path = path
        self.template = template
        self.fallbackStyle = fallbackStyle
    }

    public func render(port: Int) -> String {
        Placeholders.substitute(template, ["port": String(port)]) + "\n"
    }

    /// The file routing to `port` with `fallback` as the proxy's second
    /// choice; nil when the template cannot carry one.
    public func render(port: Int, fallback: Int) -> String? {
        guard let fallbackStyle else { return nil }
        let primary = line(port), second = line(fallback)
        guard !primary.contains("\n") else { return nil }
        switch fallbackStyle {
        case .nginxBackup:
            func isServer(_ line: String) -> Bool {
                line.hasPrefix("server ") && line.hasSuffix(";") && line.filter({ $0 == ";" }).count == 1 && !line.contains(" backup")
            }
            guard isServer(primary), isServer(second) else { return nil }
            // A lone server is never marked down, whatever its max_fails; beside a
            // backup it would be, which a fallback left in the running config must not change.
            let words = primary.dropLast().split(separator: " ").filter { !$0.hasPrefix("max_fails=") }
            let first = words.joined(separator: " ") + " max_fails=0;"
            return first + "\n" + second.dropLast() + " backup;\n"
        case .caddyFirst(let failDuration):
            guard primary.hasPrefix("to "), !primary.contains("{"), !primary.contains("#") else { return nil }
            return primary + "\n" + second + "\nlb_policy first\nfail_duration \(failDuration.milliseconds)ms\nlb_retry_match {\n\tmethod GET HEAD\n}\n"
        }
    }

    private func line(_ port: Int) -> String {
        Placeholders.substitute(template, ["port": String(port)]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func current() -> [UInt8]? { AtomicFile.read(path) }

    /// Whether the file routes to `port` first (with or without a fallback).
    public func routes(to port: Int) -> Bool {
        guard let text = current().map({ String(decoding: $0, as: UTF8.self) }) else { return false }
        return text == render(port: port) || fallbackPort(in: text, primary: port) != nil
    }

    /// The fallback the file names after `primary`, if it has one.
    func fallbackPort(in text: String, primary: Int) -> Int? {
        Self.numbers(in: text).first { $0 != primary && render(port: primary, fallback: $0) == text }
    }

    /// The ports a file this template wrote routes to: its primary, then its fallback if any.
    func ports(in text: String) -> [Int] {
        for candidate in Self.numbers(in: text) {
            if text == render(port: candidate) { return [candidate] }
            if let fallback = fallbackPort(in: text, primary: candidate) { return [candidate, fallback] }
        }
        return []
    }

    private static func numbers(in text: String) -> [Int] {
        text.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }.filter { (1...65535).contains($0) }
    }

    /// Once the fallback's instance is gone: the file names `port` alone. No
    /// reload: the running config's fallback refuses connections, which
    /// changes nothing, until the proxy's next reload reads the file.
    public func dropFallback(port: Int, log: @Sendable (String) -> Void) {
        guard fallbackStyle != nil, let text = current().map({ String(decoding: $0, as: UTF8.self) }),
            fallbackPort(in: text, primary: port) != nil
        else { return }
        do {
            try write(port: port)
            log("\(path) names 127.0.0.1:\(port) alone again (the fallback's instance is gone; the proxy reads it at its next reload)")
        } catch {
            log("warning: \(error.message)")
        }
    }

    public func write(port: Int) throws(SwapError) {
        try write(render(port: port))
    }

    public func write(_ content: String) throws(SwapError) {
        do {
            // Its directory is the operator's: never created here (--check says when it is missing).
            try AtomicFile.write(content, to: path)
        } catch {
            throw SwapError(.proxyWriteFailed, "cannot write the upstream file: \(error.description)")
        }
    }

    /// Puts back what was there before (or removes the file if nothing was).
    public func restore(_ previous: [UInt8]?) {
        if let previous {
            try? AtomicFile.write(previous, to: path)
        } else {
            _ = path.withCString { unlink($0) }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
