import SupervisorCore
import SystemBindings

/// One `GET http://127.0.0.1:{port}{path}` over libcurl.
public struct HealthProbe: Sendable {
    public enum Outcome: Sendable, Equatable {
        case healthy
        case unhealthy(String)
    }

    public let path: String
    public let timeout: Duration
    public let expectBody: String?

    public init(config: HealthConfig) {
        self.path = config.path
        self.timeout = config.timeout
        self.expectBody = config.expectBody
    }

    public func url(port: Int) -> String { "http://127.0.0.1:\(port)\(path)" }

    /// Runs one probe on its own thread.
    public func probe(port: Int) async -> Outcome {
        let request = HTTPRequest(
            url: url(port: port), headers: ["Connection: close"], timeout: timeout)
        let expectBody = self.expectBody
        return await BlockingThread.run { () -> Outcome in
            do {
                let response = try request.perform()
                guard (200..<300).contains(response.status) else {
                    return .unhealthy("HTTP \(response.status)")
                }
                if let expectBody, !response.bodyText.contains(expectBody) {
                    return .unhealthy("body does not contain \"\(expectBody)\"")
                }
                return .healthy
            } catch {
                return .unhealthy((error as? HTTPTransportError)?.message ?? "\(error)")
            }
        }
    }
}
