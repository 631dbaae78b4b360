#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SystemBindings
import Testing

/// Each bad input under load: refused with a specific code, the old version
/// still served, zero failed requests, nothing stray.
extension UnderLoad {
    @Suite(.serialized, .timeLimit(.minutes(10)))
    struct CaddySwapFailureTests {
        enum BadInput: String, CaseIterable, CustomTestStringConvertible {
            case nonexistentPath, directory, notExecutable, emptyFile, crashesAtStart, neverHealthy
            case slowerThanStartTimeout, sidePortHeld
            var testDescription: String { rawValue }
        }

        init() throws {
            try #require(ProxyKindUnderTest.caddy.isInstalled, "caddy is not installed: run scripts/test.sh, which installs it")
            try #require(LoadGenerator.isInstalled, "wrk is not installed: run scripts/test.sh, which installs it")
        }

        @Test(arguments: BadInput.allCases)
        func badInputLeavesTheOldVersionServing(_ input: BadInput) throws {
            let stack = try ProxyStack(.caddy, options: { $0.startTimeout = "2s" })
            let before = try #require(stack.daemon.waitUntilRunning(), "log:\n\(stack.daemon.log)")
            #expect(stack.serves("v1"))
            let v1Bytes = stack.bytes(stack.live)

            var holder: Int32 = -1
            defer { if holder >= 0 { close(holder) } }
            let path: String
            let expectedCode: String
            switch input {
            case .nonexistentPath:
                path = stack.work.file("no/such/binary")
                expectedCode = "binary_not_found"
            case .directory:
                path = stack.work.file("bin")
                expectedCode = "binary_not_regular"
            case .notExecutable:
                path = stack.work.write("plain", "#!/bin/sh\nexit 0\n", mode: 0o644)
                expectedCode = "binary_not_executable"
            case .emptyFile:
                path = stack.work.write("empty", "", mode: 0o755)
                expectedCode = "binary_empty"
            case .crashesAtStart:
                path = stack.version("crash", flags: ["--crash-at-start"])
                expectedCode = "app_exited"
            case .neverHealthy:
                path = stack.version("sick", flags: ["--fail-health"])
                expectedCode = "health_timeout"
            case .slowerThanStartTimeout:
                path = stack.version("slow", flags: ["--start-delay-ms", "4000"])
                expectedCode = "health_timeout"
            case .sidePortHeld:
                holder = try listenOn(port: stack.daemon.ports[1])
                path = stack.version("v2")
                expectedCode = "port_in_use"
            }
            let upstreamBefore = stack.bytes((stack.proxy as! CaddyUnderTest).upstreamFile)

            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (result, json) = try stack.swap(path)
            let report = load.finish()
            print("LOAD caddy bad input \(input.rawValue): \(report)")

            #expect(result.exitCode == 1, "\(result.stderr)")
            #expect((json?["error"] as? [String: Any])?["code"] as? String == expectedCode, "stdout: \(result.stdout)\nstderr: \(result.stderr)")
            #expect(result.stderr.contains("previous version is still serving"), "\(result.stderr)")
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(report.non2xx == 0, "\(report)")
            #expect(report.socketErrors == 0, "no reload happened, so no proxy-side resets either: \(report)")
            #expect(stack.bytes(stack.live) == v1Bytes, "live binary untouched")
            #expect(!FileManager.default.fileExists(atPath: stack.live + ".bak"))
            #expect(stack.bytes((stack.proxy as! CaddyUnderTest).upstreamFile) == upstreamBefore, "upstream file restored")
            stack.expectNothingStray()
            let after = try #require(stack.daemon.status())
            #expect(after["pid"] as? Int == before["pid"] as? Int, "the serving instance never changed")
            if input != .sidePortHeld {
                #expect(!isListening(port: stack.daemon.ports[1]), "nothing left on the side port")
            }
            let history = try stack.daemon.ctl(["history", "--json"])
            #expect(history.stdout.contains("\"result\":\"failed\""))
            #expect(history.stdout.contains(expectedCode))
        }
    }
}

/// A listening socket on 0.0.0.0:port held by the test (a "stranger").
func listenOn(port: Int) throws -> Int32 {
    try ListeningSocket.open("0.0.0.0:\(port)")
}
