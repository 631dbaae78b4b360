import Foundation
import SupervisorCore
import SupervisorShared
import SystemBindings

/// One `GET http://127.0.0.1:{port}{path}` over libcurl.
public struct HealthProbe: Sendable {
    public enum Outcome: Sendable, Equatable {
        case healthy
        case unhealthy(String)
    }

    /// One probe's outcome, and whether it failed because nothing listens on
    /// the port yet (the connection was refused): the gate then tries again
    /// within milliseconds instead of after `interval`.
    public struct Answer: Sendable, Equatable {
        public let outcome: Outcome
        public let nothingListens: Bool
    }

    public let path: String
    public let timeout: Duration
    public let expectBody: String?
    public let expectJSON: [String: String]

    public init(config: HealthConfig) {
        self.path = config.path
        self.timeout = config.timeout
        self.expectBody = config.expectBody
        self.expectJSON = config.expectJSON
    }

    public func url(port: Int) -> String { "http://127.0.0.1:\(port)\(path)" }

    /// Nil when the body is a JSON object carrying every expected field with
    /// the expected value (scalars compared as strings); else what differs.
    static func jsonProblem(_ body: [UInt8], expected: [String: String]) -> String? {
        guard !expected.isEmpty else { return nil }
        guard let object = try? JSONDecoder().decode([String: JSONScalar].self, from: Data(body)) else {
            return "health body is not a JSON object (expect_json is set)"
        }
        for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
            guard let actual = object[key] else { return "health JSON has no field \"\(key)\" (expected \"\(value)\")" }
            guard let text = actual.text else { return "health JSON field \"\(key)\" is not a scalar (expected \"\(value)\")" }
            if text != value { return "health JSON field \"\(key)\" is \(UntrustedText.quoted(String(text.prefix(200)))), expected \"\(value)\"" }
        }
        return nil
    }

    /// Runs one probe on its own thread.
    public func probe(port: Int) async -> Outcome { await answer(port: port).outcome }

    /// Runs one probe on its own thread, saying whether nothing listened.
    public func answer(port: Int) async -> Answer {
        let request = HTTPRequest(
            url: url(port: port), headers: ["Connection: close"], timeout: timeout)
        let expectBody = self.expectBody
        let expectJSON = self.expectJSON
        return await BlockingThread.run { () -> Answer in
            do {
                let response = try request.perform()
                guard (200..<300).contains(response.status) else {
                    return Answer(outcome: .unhealthy("HTTP \(response.status)"), nothingListens: false)
                }
                if let expectBody, !response.bodyText.contains(expectBody) {
                    return Answer(outcome: .unhealthy("body does not contain \"\(expectBody)\""), nothingListens: false)
                }
                if let problem = Self.jsonProblem(response.body, expected: expectJSON) {
                    return Answer(outcome: .unhealthy(problem), nothingListens: false)
                }
                return Answer(outcome: .healthy, nothingListens: false)
            } catch let error as HTTPTransportError {
                return Answer(outcome: .unhealthy(error.message), nothingListens: error.kind == .couldNotConnect && error.osErrno == ECONNREFUSED)
            } catch {
                return Answer(outcome: .unhealthy("\(error)"), nothingListens: false)
            }
        }
    }
}

/// One JSON value, kept as the text a config value is compared with.
enum JSONScalar: Decodable {
    case scalar(String)
    case other

    var text: String? {
        if case .scalar(let text) = self { return text }
        return nil
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self) {
            self = .scalar(String(flag))
        } else if let number = try? container.decode(Int.self) {
            self = .scalar(String(number))
        } else if let number = try? container.decode(Double.self) {
            self = .scalar(String(number))
        } else if let text = try? container.decode(String.self) {
            self = .scalar(text)
        } else {
            self = .other
        }
    }
}
