import SupervisorCore
import SystemBindings

/// End-to-end evidence that the proxy routes to the new instance, beyond
/// what the proxy says of itself: a GET of `[proxy] check_url` (a URL served
/// through the proxy) is answered, and the kernel shows a connection on the
/// new instance's port that was not there before the switch, which only the
/// proxy (or traffic through it) can have opened.
struct RouteCheck: Sendable {
    let url: String
    let timeout: Duration

    enum Outcome: Sendable {
        case reached(String)
        case notReached(String)
    }

    /// `baseline`: the connections on the new port just before the switch.
    func confirm(newPort: Int, baseline: Set<TCPPeers.Peer>?) async -> Outcome {
        let deadline = ContinuousClock.now + timeout
        var last = "no answer"
        repeat {
            let request = HTTPRequest(url: url, timeout: .seconds(2), connectTimeout: .seconds(1))
            let answer = await request.performed()
            switch answer {
            case .success(let response) where (200..<400).contains(response.status):
                guard let baseline, let now = TCPPeers.onLocalPort(newPort) else {
                    return .reached("GET \(url) answered HTTP \(response.status) (the kernel's connection table is unreadable here: not proven to be the new instance)")
                }
                if let fresh = now.subtracting(baseline).sorted(by: { $0.description < $1.description }).first {
                    return .reached("GET \(url) answered HTTP \(response.status), and the new instance (port \(newPort)) has a connection from \(fresh) that the switch opened")
                }
                last = "GET \(url) answered HTTP \(response.status), but no connection reached the new instance's port \(newPort): something else answered"
            case .success(let response):
                last = "GET \(url) answered HTTP \(response.status)"
            case .failure(let error):
                last = "GET \(url): \(error.message)"
            }
            try? await Task.sleep(for: .milliseconds(50))
        } while ContinuousClock.now < deadline
        return .notReached(last)
    }
}
