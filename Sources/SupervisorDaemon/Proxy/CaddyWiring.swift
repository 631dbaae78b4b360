import Foundation

/// Whether a Caddy config, as `caddy adapt` prints it, sends traffic through
/// the upstream file: some `reverse_proxy` handler of an HTTP server dials the
/// address the file names. The check runs `caddy adapt` with the file
/// replaced by one naming a port nothing else uses (see `ProxyWiringCheck`),
/// so a dial found on that port can only have come from the file.
public enum CaddyWiring {
    /// The dials of each `reverse_proxy` handler of every HTTP server in the adapted JSON.
    public static func reverseProxyHandlers(adapted: [UInt8]) -> [[String]] {
        guard let root = try? JSONSerialization.jsonObject(with: Data(adapted)),
            let servers = ((root as? [String: Any])?["apps"] as? [String: Any])
                .flatMap({ ($0["http"] as? [String: Any])?["servers"] })
        else { return [] }
        var handlers: [[String]] = []
        collect(servers, into: &handlers)
        return handlers
    }

    public static func reverseProxyDials(adapted: [UInt8]) -> [String] { reverseProxyHandlers(adapted: adapted).flatMap { $0 } }

    /// True when a dial ends in `:port`.
    public static func routes(adapted: [UInt8], toPort port: Int) -> Bool {
        reverseProxyDials(adapted: adapted).contains { $0.hasSuffix(":\(port)") }
    }

    /// The other dials of the handlers that dial `:port`: where that handler
    /// would go on sending traffic after a swap (empty: only the file's).
    public static func otherDials(adapted: [UInt8], besidePort port: Int) -> [String] {
        reverseProxyHandlers(adapted: adapted)
            .filter { dials in dials.contains { $0.hasSuffix(":\(port)") } }
            .flatMap { dials in dials.filter { !$0.hasSuffix(":\(port)") } }
    }

    private static func collect(_ value: Any, into handlers: inout [[String]]) {
        if let object = value as? [String: Any] {
            if object["handler"] as? String == "reverse_proxy", let upstreams = object["upstreams"] as? [Any] {
                handlers.append(upstreams.compactMap { ($0 as? [String: Any])?["dial"] as? String })
            }
            for child in object.values { collect(child, into: &handlers) }
        } else if let array = value as? [Any] {
            for child in array { collect(child, into: &handlers) }
        }
    }
}
