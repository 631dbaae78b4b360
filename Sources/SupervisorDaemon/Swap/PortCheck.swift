#if canImport(Glibc)
import Glibc
#endif
import SystemBindings

/// Whether a TCP port can be bound right now (on every address, as the app will).
enum PortCheck {
    /// nil when free; else a description of what holds it.
    static func heldBy(port: Int) -> String? {
        do {
            close(try ListeningSocket.bind("0.0.0.0:\(port)"))
            return nil
        } catch where error.errno == EADDRINUSE {
            return "held by another process; `ss -ltnp 'sport = :\(port)'` shows which"
        } catch {
            return String(cString: strerror(error.errno))
        }
    }
}
