import SupervisorCore
import SupervisorShared

/// The file the supervisor owns and the proxy config imports: rendered from
/// `upstream_template`, written atomically, restorable.
public struct UpstreamFile: Sendable {
    public let path: String
    public let template: String

    public init(path: String, template: String) {
        self.path = path
        self.template = template
    }

    public func render(port: Int) -> String {
        Placeholders.substitute(template, ["port": String(port)]) + "\n"
    }

    public func current() -> [UInt8]? { AtomicFile.read(path) }

    public func routes(to port: Int) -> Bool {
        current().map { String(decoding: $0, as: UTF8.self) == render(port: port) } ?? false
    }

    public func write(port: Int) throws(SwapError) {
        do {
            // Its directory is the operator's: never created here (--check says when it is missing).
            try AtomicFile.write(render(port: port), to: path)
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
