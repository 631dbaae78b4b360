import Foundation
import SupervisorCore
import SystemBindings

/// `[health] schema_field`: one GET of the health path of an instance that
/// passed its gate, and the named field of its JSON answer.
struct SchemaProbe: Sendable {
    let field: String
    let path: String
    let timeout: Duration

    init?(config: HealthConfig) {
        guard let field = config.schemaField else { return nil }
        self.field = field
        path = config.path
        timeout = config.timeout
    }

    /// The address an instance answers on: its port (proxy mode), or the first
    /// TCP address of the handoff sockets (a wildcard read as loopback).
    static func base(port: Int, listen: [String]) -> String? {
        guard let address = listen.first(where: { !$0.hasPrefix("/") }) else {
            return listen.isEmpty ? "http://127.0.0.1:\(port)" : nil
        }
        if address.hasPrefix("0.0.0.0:") { return "http://127.0.0.1:" + address.dropFirst("0.0.0.0:".count) }
        if address.hasPrefix("[::]:") { return "http://[::1]:" + address.dropFirst("[::]:".count) }
        return "http://" + address
    }

    /// The field's value as text, or what kept it from being read.
    func read(base: String) async -> Result<String, SchemaReadFailure> {
        let request = HTTPRequest(url: base + path, headers: ["Connection: close"], timeout: timeout)
        let field = self.field
        return await BlockingThread.run { () -> Result<String, SchemaReadFailure> in
            do {
                let response = try request.perform()
                guard (200..<300).contains(response.status) else { return .failure(SchemaReadFailure("HTTP \(response.status)")) }
                return Self.value(of: field, in: response.body)
            } catch {
                return .failure(SchemaReadFailure("\(error)"))
            }
        }
    }

    static func value(of field: String, in body: [UInt8]) -> Result<String, SchemaReadFailure> {
        guard let object = try? JSONDecoder().decode([String: JSONScalar].self, from: Data(body)) else {
            return .failure(SchemaReadFailure("the health answer is not a JSON object"))
        }
        guard let value = object[field] else { return .failure(SchemaReadFailure("the health JSON has no field \"\(field)\"")) }
        guard let text = value.text else { return .failure(SchemaReadFailure("the health JSON field \"\(field)\" is not a scalar")) }
        return .success(String(text.prefix(200)))
    }
}

struct SchemaReadFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
