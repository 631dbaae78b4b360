import SupervisorCore

/// Routes control requests to the daemon: `GET /status` for now.
public struct ControlAPI: ControlHandling {
    let runtime: AppRuntime

    public init(runtime: AppRuntime) {
        self.runtime = runtime
    }

    public func handle(_ request: ControlRequest) async -> ControlResponse {
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        switch (request.method, path) {
        case ("GET", "/status"):
            let kind = runtime.config.proxy.kind.rawValue
            return .json(await runtime.status(proxy: kind))
        case (_, "/status"):
            return .error(ControlError(.methodNotAllowed, "\(request.method) \(path): use GET"))
        default:
            return .error(ControlError(.notFound, "no such endpoint: \(request.method) \(path) (try GET /status)"))
        }
    }
}
