#if canImport(Glibc)
import Glibc
#endif
import CSystemd

/// The systemd notification protocol (`sd_notify`), typed.
///
/// Every call is a no-op returning `false` when the process was not started
/// with `NOTIFY_SOCKET` (not under `Type=notify`), so callers never branch.
public struct Notifier: Sendable {
    public init() {}

    /// Sends raw `KEY=value` lines. Returns whether systemd got them.
    @discardableResult
    public func send(_ lines: [String]) -> Bool {
        let state = lines.joined(separator: "\n")
        return csd_notify(state) > 0
    }

    @discardableResult public func ready(status: String? = nil) -> Bool {
        send(["READY=1"] + (status.map { ["STATUS=\(Self.oneLine($0))"] } ?? []))
    }

    /// `RELOADING=1` with the monotonic timestamp systemd 253+ asks for.
    @discardableResult public func reloading(status: String? = nil) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let usec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
        return send(["RELOADING=1", "MONOTONIC_USEC=\(usec)"] + (status.map { ["STATUS=\(Self.oneLine($0))"] } ?? []))
    }

    @discardableResult public func stopping(status: String? = nil) -> Bool {
        send(["STOPPING=1"] + (status.map { ["STATUS=\(Self.oneLine($0))"] } ?? []))
    }

    @discardableResult public func status(_ text: String) -> Bool {
        send(["STATUS=\(Self.oneLine(text))"])
    }

    @discardableResult public func watchdog() -> Bool {
        send(["WATCHDOG=1"])
    }

    /// Half of `WATCHDOG_USEC` when systemd asked this process for keep-alives, else nil.
    public func watchdogPingInterval() -> Duration? {
        var usec: UInt64 = 0
        guard csd_watchdog_enabled(&usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec / 2))
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\n" ? " " : $0 })
    }
}
