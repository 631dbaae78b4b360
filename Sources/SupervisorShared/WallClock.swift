#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock times as people and JSON read them.
public enum WallClock {
    /// Seconds since the epoch, with fractions.
    public static func now() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// `2026-11-21T22:05:27.123Z`.
    public static func rfc3339Now() -> String { rfc3339(now(), milliseconds: true) }

    public static func rfc3339(_ seconds: Double, milliseconds: Bool) -> String {
        var moment = tm()
        var whole = time_t(seconds.rounded(.down))
        gmtime_r(&whole, &moment)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &moment)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard milliseconds else { return text + "Z" }
        let millis = min(999, Int((seconds - seconds.rounded(.down)) * 1000))
        return text + "." + (millis < 10 ? "00" : millis < 100 ? "0" : "") + String(millis) + "Z"
    }
}
