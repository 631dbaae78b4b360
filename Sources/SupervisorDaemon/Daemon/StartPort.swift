import Logging
import SupervisorCore

/// Every `[app] port` is held by a process that is not the app: supervisord
/// exits 2 naming the holders (the shipped unit does not restart on 2), where
/// starting the app would only fail to bind, again and again.
public struct PortsHeldByOthers: Error, CustomStringConvertible {
    public let holders: [(port: Int, holder: String)]

    public var description: String {
        "cannot start the app: "
            + holders.map { "port \($0.port) is \($0.holder)" }.joined(separator: "; ")
            + "; none of them is this service's app. Stop what holds them or change [app] ports, then start supervisord again"
    }
}

/// The port a fresh start of the app uses (no live instance to adopt): the
/// one recovery chose, or, when something else holds it, another of
/// `[app] ports` that is free (the proxy is pointed at whichever it is).
enum StartPort {
    static func choose(preferred: Int, ports: [Int], logger: Logger) throws -> Int {
        guard let holder = PortCheck.heldBy(port: preferred) else { return preferred }
        var held = [(port: preferred, holder: holder)]
        for port in ports where port != preferred {
            guard let other = PortCheck.heldBy(port: port) else {
                logger.warning("port \(preferred) is \(holder), which is not the app; starting the app on port \(port) instead")
                return port
            }
            held.append((port, other))
        }
        throw PortsHeldByOthers(holders: held)
    }
}
