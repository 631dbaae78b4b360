import Foundation
import SupervisorCore
@testable import SupervisorDaemon
import SupervisorShared
import Testing

/// Pure parts of the Caddy driver: rendering and command construction.
@Suite struct CaddyDriverUnitTests {
    func config(_ proxy: [String: ConfigValue]) throws -> SupervisorConfig {
        let document: [String: ConfigValue] = [
            "name": .string("x"),
            "app": .table(["binary": .string("/srv/x/bin/x"), "ports": .array([.integer(8081), .integer(8082)])]),
            "proxy": .table(proxy),
        ]
        return try ConfigDecoder.decode(document).get()
    }

    @Test func defaultCommandsPassTheAdapterOnlyWhenNeeded() throws {
        let plain = CaddyFileDriver(config: try config([
            "kind": .string("caddy"), "upstream_file": .string("/etc/caddy/up"), "config": .string("/etc/caddy/Caddyfile"),
        ]))
        #expect(plain.validateCommand == ["caddy", "validate", "--config", "/etc/caddy/Caddyfile"])
        #expect(plain.reloadCommand == ["caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--address", "127.0.0.1:2019"])

        let renamed = CaddyFileDriver(config: try config([
            "kind": .string("caddy"), "upstream_file": .string("/etc/caddy/up"), "config": .string("/etc/caddy/site.caddy"),
            "admin": .string("unix//run/caddy/admin.sock"),
        ]))
        #expect(renamed.validateCommand == ["caddy", "validate", "--config", "/etc/caddy/site.caddy", "--adapter", "caddyfile"])
        #expect(renamed.reloadCommand.suffix(4) == ["--address", "unix//run/caddy/admin.sock", "--adapter", "caddyfile"])
    }

    @Test func overridesSubstitutePlaceholders() throws {
        let driver = CaddyFileDriver(config: try config([
            "kind": .string("caddy"), "upstream_file": .string("/u"), "config": .string("/c/Caddyfile"),
            "admin": .string("http://127.0.0.1:3000/"),
            "reload": .array([.string("/usr/local/bin/reload-caddy"), .string("{config}"), .string("{admin}")]),
        ]))
        #expect(driver.reloadCommand == ["/usr/local/bin/reload-caddy", "/c/Caddyfile", "127.0.0.1:3000"])
    }

    @Test func upstreamFileRendersTheTemplate() {
        let file = UpstreamFile(path: "/tmp/none", template: "to 127.0.0.1:{port}")
        #expect(file.render(port: 8082) == "to 127.0.0.1:8082\n")
        let nginx = UpstreamFile(path: "/tmp/none", template: "server 127.0.0.1:{port} max_fails=0;")
        #expect(nginx.render(port: 9000) == "server 127.0.0.1:9000 max_fails=0;\n")
    }

    @Test func theFallbackFollowsTheNewInstanceWhereTheTemplateCanCarryIt() throws {
        let nginx = UpstreamFile(path: "/tmp/none", template: "server 127.0.0.1:{port};", fallbackStyle: .nginxBackup)
        #expect(nginx.render(port: 9001, fallback: 9000) == "server 127.0.0.1:9001 max_fails=0;\nserver 127.0.0.1:9000 backup;\n")
        // An operator's own max_fails (ignored by nginx for a lone server) gives way to 0 on the primary.
        let counted = UpstreamFile(path: "/tmp/none", template: "server 127.0.0.1:{port} max_fails=3 weight=5;", fallbackStyle: .nginxBackup)
        #expect(counted.render(port: 9001, fallback: 9000) == "server 127.0.0.1:9001 weight=5 max_fails=0;\nserver 127.0.0.1:9000 max_fails=3 weight=5 backup;\n")
        #expect(counted.ports(in: counted.render(port: 9001, fallback: 9000) ?? "") == [9001, 9000])
        let caddy = UpstreamFile(path: "/tmp/none", template: "to 127.0.0.1:{port}", fallbackStyle: .caddyFirst(failDuration: .milliseconds(100)))
        #expect(caddy.render(port: 9001, fallback: 9000) == "to 127.0.0.1:9001\nto 127.0.0.1:9000\nlb_policy first\nfail_duration 100ms\nlb_retry_match {\n\tmethod GET HEAD\n}\n")
        // A template that is not one server/to line carries none.
        let block = UpstreamFile(path: "/tmp/none", template: "upstream app {\n server 127.0.0.1:{port};\n}", fallbackStyle: .nginxBackup)
        #expect(block.render(port: 9001, fallback: 9000) == nil)
        #expect(UpstreamFile(path: "/tmp/none", template: "to 127.0.0.1:{port}").render(port: 9001, fallback: 9000) == nil)

        // With or without its fallback, the file routes to its first port only; dropping the fallback leaves that.
        let scratch = TemporaryDirectory()
        let file = UpstreamFile(path: scratch.file("upstream"), template: "server 127.0.0.1:{port};", fallbackStyle: .nginxBackup)
        try file.write(try #require(file.render(port: 9001, fallback: 9000)))
        #expect(file.routes(to: 9001) && !file.routes(to: 9000))
        let log: @Sendable (String) -> Void = { _ in }
        file.dropFallback(port: 9000, log: log)
        #expect(file.current().map { String(decoding: $0, as: UTF8.self) } == "server 127.0.0.1:9001 max_fails=0;\nserver 127.0.0.1:9000 backup;\n", "only a fallback after the given port is dropped")
        file.dropFallback(port: 9001, log: log)
        #expect(file.current().map { String(decoding: $0, as: UTF8.self) } == "server 127.0.0.1:9001;\n")
        #expect(file.routes(to: 9001))
    }

    @Test func aCaddyfileWithRelativeImportsIsLoadedByTheCommands() {
        let absolute = Array("{\n\tadmin 127.0.0.1:2019\n}\n(common) {\n\theader X 1\n}\n:80 {\n\timport common\n\treverse_proxy {\n\t\timport /etc/caddy/upstream\n\t}\n}\n".utf8)
        #expect(CaddyFileDriver.relativeImports(in: absolute).isEmpty)
        let relative = Array(":80 {\n\treverse_proxy {\n\t\timport upstreams/app\n\t}\n}\n".utf8)
        #expect(CaddyFileDriver.relativeImports(in: relative) == ["upstreams/app"])
    }

    @Test func upstreamFileWritesAndRestores() throws {
        let scratch = TemporaryDirectory()
        let file = UpstreamFile(path: scratch.file("sub/upstream"), template: "to 127.0.0.1:{port}")
        // A directory that does not exist is not created (a mistyped path must not pass).
        #expect(throws: SwapError.self) { try file.write(port: 8081) }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("sub")))
        try FileManager.default.createDirectory(atPath: scratch.file("sub"), withIntermediateDirectories: false)
        try file.write(port: 8081)
        #expect(file.routes(to: 8081))
        let before = file.current()
        try file.write(port: 8082)
        #expect(file.routes(to: 8082))
        file.restore(before)
        #expect(file.routes(to: 8081))
        file.restore(nil)
        #expect(file.current() == nil)
    }

    @Test func adminEndpoints() {
        let tcp = AdminEndpoint("http://127.0.0.1:2019")
        #expect(tcp.caddyAddressFlag == "127.0.0.1:2019")
        #expect(tcp.unixSocketPath == nil)
        #expect(tcp.request(path: "/config/", timeout: .seconds(1)).url == "http://127.0.0.1:2019/config/")
        let unix = AdminEndpoint("unix//run/caddy/admin.sock")
        #expect(unix.unixSocketPath == "/run/caddy/admin.sock")
        let request = unix.request(path: "/config/", timeout: .seconds(1))
        #expect(request.unixSocketPath == "/run/caddy/admin.sock")
        #expect(request.headers.contains("Host;"), "Caddy 2.6 wants an empty Host on its unix socket")
    }

    @Test func upstreamAddressesParseTheAdminAnswer() {
        let body = Array(#"[{"address":"127.0.0.1:8082","num_requests":0,"fails":0}]"#.utf8)
        #expect(CaddyFileDriver.upstreamAddresses(body) == ["127.0.0.1:8082"])
        #expect(CaddyFileDriver.upstreamAddresses(Array("garbage".utf8)) == [])
    }
}
