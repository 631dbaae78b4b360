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
            let holders = self.holders(port: port)
            guard !holders.isEmpty else {
                return "held by another process; `ss -ltnp 'sport = :\(port)'` shows which"
            }
            return "held by " + holders.map { pid in
                "pid \(pid)" + (ProcessIdentity.executablePath(of: pid).map { " (\($0))" } ?? "")
            }.joined(separator: ", ")
        } catch {
            return String(cString: strerror(error.errno))
        }
    }

    /// The pids listening on `port` (any address, IPv4 or IPv6).
    static func holders(port: Int) -> [Int32] {
        ListeningPorts.holders(of: port)
    }
}
