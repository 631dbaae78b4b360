import Foundation

/// Whether a Caddy config, as `caddy adapt` prints it, sends traffic through
/// the upstream file: some `reverse_proxy` handler of an HTTP server dials the
/// address the file names. The check runs `caddy adapt` with the file
/// replaced by one naming a port nothing else uses (see `ProxyWiringCheck`),
/// so a dial found on that port can only have come from the file.
public enum CaddyWiring {
    /// The `reverse_proxy` dials of every HTTP server in the adapted JSON.
    public static func reverseProxyDials(adapted: [UInt8]) -> [String] {
        guard let root = try? JSONSerialization.jsonObject(with: Data(adapted)),
            let servers = ((root as? [String: Any])?["apps"] as? [String: Any])
                .flatMap({ ($0["http"] as? [String: Any])?["servers"] })
        else { return [] }
        var dials: [String] = []
        collect(servers, into: &dials)
        return dials
    }

    /// True when a dial ends in `:port`.
    public static func routes(adapted: [UInt8], toPort port: Int) -> Bool {
        reverseProxyDials(adapted: adapted).contains { $0.hasSuffix(":\(port)") }
    }

    private static func collect(_ value: Any, into dials: inout [String]) {
        if let object = value as? [String: Any] {
            if object["handler"] as? String == "reverse_proxy", let upstreams = object["upstreams"] as? [Any] {
                for case let upstream as [String: Any] in upstreams {
                    if let dial = upstream["dial"] as? String { dials.append(dial) }
                }
            }
            for child in object.values { collect(child, into: &dials) }
        } else if let array = value as? [Any] {
            for child in array { collect(child, into: &dials) }
        }
    }
}
