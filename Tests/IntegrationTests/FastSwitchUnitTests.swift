import Foundation
import Synchronization
@testable import SupervisorCore
@testable import SupervisorDaemon
import SupervisorShared
import Testing

/// The pure parts of a fast switch: how the gate paces its probes, what an
/// answer of Caddy's `/load` means, how a switch falls back to a file without
/// a fallback when the proxy refuses one, and what the drivers read.
@Suite struct FastSwitchUnitTests {
    static func health(interval: Duration = .milliseconds(100), healthyInterval: Duration = .zero) -> HealthConfig {
        HealthConfig(
            mode: .http, path: "/health", interval: interval, timeout: .seconds(1), startTimeout: .seconds(30), healthyAfter: 2,
            watch: .zero, expectBody: nil, expectJSON: [:], healthyInterval: healthyInterval)
    }

    @Test func theGateProbesAtAcceptAndAsksGoodAnswersBackToBack() {
        let config = Self.health()
        let refused = HealthProbe.Answer(outcome: .unhealthy("connection refused"), nothingListens: true)
        let bad = HealthProbe.Answer(outcome: .unhealthy("HTTP 503"), nothingListens: false)
        let good = HealthProbe.Answer(outcome: .healthy, nothingListens: false)
        #expect(HealthGate.pause(after: refused, config: config) == HealthGate.acceptPoll)
        #expect(HealthGate.pause(after: bad, config: config) == .milliseconds(100))
        #expect(HealthGate.pause(after: good, config: config) == .zero)
        // A stability window where the operator asks for one; never slower than `interval` while nothing listens.
        #expect(HealthGate.pause(after: good, config: Self.health(healthyInterval: .seconds(1))) == .seconds(1))
        #expect(HealthGate.pause(after: refused, config: Self.health(interval: .milliseconds(2))) == .milliseconds(2))
    }

    @Test func onlyA400FromLoadIsARefusedConfig() {
        #expect(CaddyFileDriver.loadOutcome(status: 200, body: "") == .applied)
        guard case .rejected(let why) = CaddyFileDriver.loadOutcome(status: 400, body: "{\"error\":\"adapting config\"}") else {
            Issue.record("400 is Caddy refusing the config")
            return
        }
        #expect(why.contains("adapting config"))
        for status in [401, 403, 404, 405, 413, 500, 502] {
            guard case .failed = CaddyFileDriver.loadOutcome(status: status, body: "") else {
                Issue.record("HTTP \(status) is not about the config")
                continue
            }
        }
    }

    @Test func anAddressWithRequestsInFlightDoesNotShowTheOldConfigRuns() {
        // Caddy 2.11.2 and later list an address that left the config while requests to it are in flight.
        let body = Array(#"[{"address":"127.0.0.1:9001","num_requests":0,"fails":0},{"address":"127.0.0.1:9000","num_requests":3,"fails":0},{"address":"127.0.0.1:9002"}]"#.utf8)
        #expect(CaddyFileDriver.upstreamAddresses(body) == ["127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"])
        #expect(Set(CaddyFileDriver.upstreams(body).filter { !$0.busy }.map(\.address)) == ["127.0.0.1:9001", "127.0.0.1:9002"])
    }

    @Test func theDriversReadTheirProxysSettings() {
        let caddyfile = Array(":80 {\n\treverse_proxy {\n\t\timport /u\n\t\tlb_try_duration 2s\n\t\tlb_try_interval 50ms\n\t}\n}\n".utf8)
        #expect(CaddyFileDriver.tryInterval(in: caddyfile) == .milliseconds(50))
        #expect(CaddyFileDriver.tryInterval(in: Array(":80 {\n\treverse_proxy 127.0.0.1:8080\n}\n".utf8)) == nil)
        #expect(NginxDriver.isMaster(commandLine: "nginx: master process /usr/sbin/nginx -c /etc/nginx/nginx.conf"))
        #expect(!NginxDriver.isMaster(commandLine: "nginx: worker process"))
        #expect(!NginxDriver.isMaster(commandLine: "/usr/bin/python3\0-m\0http.server"))
    }

    /// A reload that answers from a script, counting its calls.
    final class ScriptedReload: Sendable {
        let answers: Mutex<[ProxyReload.Outcome]>
        let calls = Mutex(0)
        init(_ answers: [ProxyReload.Outcome]) { self.answers = Mutex(answers) }
        var reload: ProxyReload {
            ProxyReload(description: { "scripted" }, apply: {
                self.calls.withLock { $0 += 1 }
                return self.answers.withLock { $0.isEmpty ? .applied : $0.removeFirst() }
            })
        }
    }

    @Test func aProxyThatRefusesTheFallbackIsSwitchedWithoutIt() async throws {
        let scratch = TemporaryDirectory()
        let upstream = UpstreamFile(path: scratch.file("upstream"), template: "to 127.0.0.1:{port}", fallbackStyle: .caddyFirst(failDuration: .milliseconds(100)))
        try upstream.write(port: 9000)
        let scripted = ScriptedReload([.rejected("lb_policy already specified"), .applied])
        let change = FileSwitch(proxyName: "caddy", upstream: upstream, validate: nil, reload: scripted.reload)
        let said = Mutex<[String]>([])
        let gone = Mutex<[Int]?>(nil)
        try await change.perform(
            port: 9001, fallback: 9000, log: { line in said.withLock { $0.append(line) } }, prepare: {},
            confirm: { _, ports in gone.withLock { $0 = ports }; return nil })
        #expect(upstream.current().map { String(decoding: $0, as: UTF8.self) } == "to 127.0.0.1:9001\n")
        #expect(scripted.calls.withLock { $0 } == 2)
        #expect(said.withLock { $0 }.contains { $0.contains("refused the fallback lines (lb_policy already specified)") })
        #expect(gone.withLock { $0 } == [9000], "the port the file no longer names is what the confirmation must not see")
    }

    @Test func aRefusedConfigWithoutFallbackRestoresTheFile() async throws {
        let scratch = TemporaryDirectory()
        let upstream = UpstreamFile(path: scratch.file("upstream"), template: "server 127.0.0.1:{port};", fallbackStyle: .nginxBackup)
        try upstream.write(port: 9000)
        let scripted = ScriptedReload([.rejected("bad"), .rejected("still bad")])
        let change = FileSwitch(proxyName: "nginx", upstream: upstream, validate: nil, reload: scripted.reload)
        await #expect(throws: SwapError.self) {
            try await change.perform(port: 9001, fallback: 9000, log: { _ in }, prepare: {}, confirm: { _, _ in nil })
        }
        #expect(upstream.current().map { String(decoding: $0, as: UTF8.self) } == "server 127.0.0.1:9000;\n", "the file is what it was")
        #expect(scripted.calls.withLock { $0 } == 2, "once with the fallback, once without")
    }

    @Test func aSwitchBackNamesTheFallbackItDropsAsGone() async throws {
        let scratch = TemporaryDirectory()
        let upstream = UpstreamFile(path: scratch.file("upstream"), template: "server 127.0.0.1:{port};", fallbackStyle: .nginxBackup)
        try upstream.write(try #require(upstream.render(port: 9001, fallback: 9000)))
        #expect(upstream.ports(in: String(decoding: upstream.current() ?? [], as: UTF8.self)) == [9001, 9000])
        let gone = Mutex<[Int]?>(nil)
        let change = FileSwitch(proxyName: "nginx", upstream: upstream, validate: nil, reload: ScriptedReload([]).reload)
        try await change.perform(port: 9000, log: { _ in }, prepare: {}, confirm: { _, ports in gone.withLock { $0 = ports }; return nil })
        #expect(gone.withLock { $0 } == [9001])
        #expect(upstream.current().map { String(decoding: $0, as: UTF8.self) } == "server 127.0.0.1:9000;\n")
    }
}
