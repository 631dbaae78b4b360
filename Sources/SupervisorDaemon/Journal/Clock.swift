#if canImport(Glibc)
import Glibc
#endif

enum Clock {
    static func rfc3339Now() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var moment = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &moment)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &moment)
        let millis = Int(now.tv_nsec / 1_000_000)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text + "." + (millis < 10 ? "00" : millis < 100 ? "0" : "") + String(millis) + "Z"
    }
}
