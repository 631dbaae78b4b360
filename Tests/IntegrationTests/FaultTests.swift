#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import Testing

extension UnderLoad {
    /// Resource and proxy faults, and a slow or random control client.
    @Suite(.timeLimit(.minutes(5)))
    struct FaultTests {
        @Test func aFullDiskWhileStagingFailsClearlyAndLosesNothing() throws {
            guard getuid() == 0 else {
                Issue.record("SKIPPED LOUDLY: mounting a small tmpfs needs root (run scripts/test.sh as root, as CI does)")
                return
            }
            try #require(ProxyKindUnderTest.nginx.isInstalled && LoadGenerator.isInstalled, "nginx and wrk: run scripts/test.sh")
            let stack = try ProxyStack(.nginx)
            #expect(stack.daemon.waitUntilRunning() != nil)
            // The binary's directory becomes a tmpfs with room for the live binary (an ELF) and 1 MiB more.
            let small = stack.work.file("small")
            try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
            let liveSize = try #require(try FileManager.default.attributesOfItem(atPath: stack.live)[.size] as? Int)
            let mounted = try Command.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(liveSize / 1024 + 1024)k", "tmpfs", small])
            try #require(mounted.exitCode == 0, "mount: \(mounted.stderr)")
            defer { _ = try? Command.run("/bin/umount", ["-l", small]) }
            // A second daemon whose live binary sits on the tmpfs.
            let live = small + "/app"
            try FileManager.default.copyItem(atPath: stack.live, toPath: live)
            var options = DaemonUnderTest.Options()
            options.binary = live
            let daemon = DaemonUnderTest(options)
            try daemon.start()
            #expect(daemon.waitUntilRunning() != nil, "\(daemon.log)")
            let before = FileManager.default.contents(atPath: live)

            // demo-app itself is far larger than the 1 MiB left.
            let result = try daemon.ctl(["swap", Binaries.demoApp, "--json"])
            #expect(result.exitCode == 1)
            #expect(result.stdout.contains("\"code\":\"stage_failed\""), "\(result.stdout)")
            #expect(result.stderr.contains("No space left on device"), "\(result.stderr)")
            #expect(FileManager.default.contents(atPath: live) == before)
            #expect(!FileManager.default.fileExists(atPath: live + ".new"))
            #expect(daemon.status()?["phase"] as? String == "running")
            daemon.stop()
        }

        @Test func theProxyDyingMidSwitchIsAFailedReload() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx: run scripts/test.sh")
            let killer = TemporaryDirectory("killer")
            // The "reload" stops nginx (its master takes its workers with it):
            // the proxy dies in the middle of the switch.
            let script = killer.write("reload", "#!/bin/sh\nkill -TERM $(cat \"$(dirname \"$1\")/nginx.pid\")\nexit 0\n", mode: 0o755)
            let stack = try ProxyStack(.nginx) { settings in
                #expect(!settings.proxySection.contains("reload = "), "the harness's nginx signals its master itself")
                settings.proxySection += "\nreload = [\"\(script)\", \"{config}\"]"
            }
            let before = try #require(stack.daemon.waitUntilRunning(), "\(stack.daemon.log)")
            let port = try #require(before["port"] as? Int)

            let (result, json) = try stack.swap(stack.version("v2"))
            #expect(result.exitCode == 1)
            let code = (json?["error"] as? [String: Any])?["code"] as? String
            #expect(code == "proxy_not_confirmed" || code == "proxy_reload_failed", "\(result.stderr)")
            #expect(result.stderr.contains("previous version is still serving"))
            // The old instance still serves on its port (the proxy in front is gone).
            #expect(httpGet(port: port)?.body.contains("demo-app v1") == true)
            #expect(stack.daemon.status()?["pid"] as? Int == before["pid"] as? Int)
            stack.expectNothingStray()
        }

        @Test func aSlowControlClientIsDisconnectedAndOthersAreServed() throws {
            let daemon = DaemonUnderTest()
            try daemon.start()
            #expect(daemon.waitUntilRunning() != nil)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            let connected = unixSocket(fd, connect, path: daemon.socket)
            try #require(connected == 0)
            _ = "GET /status HTTP/1.1\r\nHost: x\r\n".withCString { send(fd, $0, strlen($0), 0) }  // and then nothing
            // Meanwhile others are answered.
            #expect(daemon.status() != nil)
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let started = Date()
            var byte: UInt8 = 0
            let read = recv(fd, &byte, 1, 0)
            #expect(read == 0, "the daemon closed the connection")
            #expect(Date().timeIntervalSince(started) < 25, "within its request timeout, not ours")
            #expect(daemon.status() != nil)
        }

        @Test func randomControlRequestsNeverCrashTheDaemon() throws {
            let daemon = DaemonUnderTest()
            try daemon.start()
            #expect(daemon.waitUntilRunning() != nil)
            var generator = SystemRandomNumberGenerator()
            let seeds = [
                "GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
                "POST /swap HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\n\r\n{\"binary\": \"/nonexist\"}",
                "POST /rollback HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                "GET /history HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ]
            for round in 0..<300 {
                var bytes = Array(seeds[round % seeds.count].utf8)
                for _ in 0..<Int.random(in: 1...8, using: &generator) {
                    let index = Int.random(in: 0..<bytes.count, using: &generator)
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0: bytes[index] = UInt8.random(in: 0...255, using: &generator)
                    case 1: bytes.insert(UInt8.random(in: 0...255, using: &generator), at: index)
                    default: bytes.remove(at: index)
                    }
                    if bytes.isEmpty { bytes = [0] }
                }
                _ = rawExchange(socket: daemon.socket, String(decoding: bytes, as: UTF8.self), timeout: 1)
            }
            #expect(daemon.process?.isRunning == true, "the daemon survived 300 mutated requests: \(daemon.log.suffix(2000))")
            #expect(daemon.status()?["phase"] as? String == "running")
        }
    }
}
