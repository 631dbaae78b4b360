import Foundation
import SupervisorCore
@testable import SupervisorDaemon
import SupervisorShared
import SystemBindings
import Testing

/// Pure parts of the nginx and caddy-api drivers: commands, pid file, dial.
@Suite struct NginxAndCaddyAPIDriverUnitTests {
    func config(_ proxy: [String: ConfigValue]) throws -> SupervisorConfig {
        try ConfigDecoder.decode([
            "name": .string("x"),
            "app": .table(["binary": .string("/srv/x/bin/x"), "ports": .array([.integer(8081), .integer(8082)])]),
            "proxy": .table(proxy),
        ]).get()
    }

    @Test func nginxDefaultCommands() throws {
        let plain = NginxDriver(config: try config(["kind": .string("nginx"), "upstream_file": .string("/etc/nginx/up.conf")]))
        #expect(plain.commands.validate == ["nginx", "-t", "-q"])
        #expect(plain.commands.reload == ["nginx", "-s", "reload"])
        #expect(plain.pidFile == "/run/nginx.pid")

        let withConfig = NginxDriver(config: try config([
            "kind": .string("nginx"), "upstream_file": .string("/u"), "config": .string("/etc/nginx/custom.conf"),
        ]))
        #expect(withConfig.commands.validate == ["nginx", "-c", "/etc/nginx/custom.conf", "-t", "-q"])
        #expect(withConfig.commands.reload == ["nginx", "-c", "/etc/nginx/custom.conf", "-s", "reload"])
    }

    @Test func nginxPidFileComesFromTheConfigsPidDirective() throws {
        let scratch = TemporaryDirectory()
        let conf = scratch.write("nginx.conf", "user www-data;\n  pid   /run/custom/nginx.pid;\nevents {}\n")
        #expect(NginxDriver.pidFile(fromConfig: conf) == "/run/custom/nginx.pid")
        let driver = NginxDriver(config: try config(["kind": .string("nginx"), "upstream_file": .string("/u"), "config": .string(conf)]))
        #expect(driver.pidFile == "/run/custom/nginx.pid")
        let explicit = NginxDriver(config: try config([
            "kind": .string("nginx"), "upstream_file": .string("/u"), "config": .string(conf), "pid_file": .string("/tmp/x.pid"),
        ]))
        #expect(explicit.pidFile == "/tmp/x.pid", "pid_file wins over the config's directive")
        #expect(NginxDriver.pidFile(fromConfig: scratch.write("none.conf", "events {}\n")) == nil)
    }

    @Test func caddyAPIDialFollowsTheTemplate() throws {
        let driver = CaddyAPIDriver(config: try config(["kind": .string("caddy-api"), "upstream_id": .string("app")]))
        #expect(driver.dial(port: 8082) == "127.0.0.1:8082")
        #expect(driver.upstreamID == "app")
        #expect(driver.admin == AdminEndpoint("http://127.0.0.1:2019"))
        let custom = CaddyAPIDriver(config: try config([
            "kind": .string("caddy-api"), "upstream_id": .string("app"), "upstream_template": .string("localhost:{port}"),
        ]))
        #expect(custom.dial(port: 9000) == "localhost:9000")
    }

    @Test func processTableFindsOurChildren() throws {
        let child = try TestProcess("/bin/sleep", ["5"])
        defer { child.stop(SIGKILL) }
        #expect(ProcessTable.children(of: getpid()).contains(child.pid))
    }
}
