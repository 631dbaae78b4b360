#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import Testing

extension UnderLoad {
    /// Hooks, preflight, versions, expect_json, metrics and the CLI's words,
    /// behind real nginx (which adds no socket errors of its own) under load.
    @Suite(.timeLimit(.minutes(10)))
    struct OperatorFeaturesTests {
        init() throws {
            try #require(ProxyKindUnderTest.nginx.isInstalled, "nginx is not installed: run scripts/test.sh, which installs it")
            try #require(LoadGenerator.isInstalled, "wrk is not installed: run scripts/test.sh, which installs it")
        }

        /// A hook that appends its name and the SUPERVISOR_* environment to `log`.
        static func recordingHook(_ name: String, log: String, in directory: TemporaryDirectory, exitCode: Int = 0) -> String {
            directory.write(
                "hooks/\(name)",
                """
                #!/bin/sh
                {
                  echo "hook=\(name)"
                  env | grep '^SUPERVISOR_' | sort
                  echo "end"
                } >> \(log)
                echo "\(name) says hello"
                exit \(exitCode)
                """, mode: 0o755)
        }

        static func entries(_ log: String) -> [[String: String]] {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            var result: [[String: String]] = []
            var current: [String: String] = [:]
            for line in text.split(separator: "\n") {
                if line == "end" {
                    result.append(current)
                    current = [:]
                } else if let equals = line.firstIndex(of: "=") {
                    current[String(line[..<equals])] = String(line[line.index(after: equals)...])
                }
            }
            return result
        }

        @Test func hooksRunInOrderWithTheSwapInTheirEnvironment() throws {
            let hooks = TemporaryDirectory("hooks")
            let log = hooks.file("hooks.log")
            let first = Self.recordingHook("backup", log: log, in: hooks)
            let second = Self.recordingHook("migrate", log: log, in: hooks)
            let after = Self.recordingHook("after", log: log, in: hooks)
            let rolled = Self.recordingHook("rolledback", log: log, in: hooks)
            let stack = try ProxyStack(.nginx) { options in
                options.extraControl += """

                    [hooks]
                    before_start = [["\(first)"], ["\(second)"]]
                    after_switch = [["\(after)"]]
                    on_rollback = [["\(rolled)"]]
                    """
            }
            #expect(stack.daemon.waitUntilRunning() != nil, "\(stack.daemon.log)")
            let v1SHA = try #require(stack.daemon.status()?["sha256"] as? String)
            let (swap, json) = try stack.swap(stack.version("v2"))
            #expect(swap.exitCode == 0, "\(swap.stderr)")
            #expect(swap.stderr.contains("before_start hook: `\(first)`"))
            #expect(swap.stderr.contains("| backup says hello"), "hook output streams into the progress: \(swap.stderr)")

            let ran = Self.entries(log)
            #expect(ran.map { $0["hook"] ?? "?" } == ["backup", "migrate", "after"])
            let backup = try #require(ran.first)
            #expect(backup["SUPERVISOR_NAME"] == "itest")
            #expect(backup["SUPERVISOR_ACTION"] == "swap")
            #expect(backup["SUPERVISOR_PHASE"] == "start")
            #expect(backup["SUPERVISOR_OLD_BINARY"] == stack.live)
            #expect(backup["SUPERVISOR_NEW_BINARY"] == stack.live + ".new")
            #expect(backup["SUPERVISOR_OLD_SHA256"] == v1SHA)
            #expect(backup["SUPERVISOR_NEW_SHA256"] == (json?["to"] as? [String: Any])?["sha256"] as? String)
            #expect(backup["SUPERVISOR_OLD_VERSION"] == "v1")
            #expect(backup["SUPERVISOR_NEW_VERSION"] == "v2")
            #expect(backup["SUPERVISOR_ERROR"] == nil)
            #expect(ran.last?["SUPERVISOR_PHASE"] == "switch")

            let rollback = try stack.daemon.ctl(["rollback"])
            #expect(rollback.exitCode == 0, "\(rollback.stderr)")
            let afterRollback = Self.entries(log)
            #expect(afterRollback.map { $0["hook"] ?? "?" }.suffix(4) == ["backup", "migrate", "after", "rolledback"])
            #expect(afterRollback.last?["SUPERVISOR_ACTION"] == "rollback")
            #expect(afterRollback.last?["SUPERVISOR_NEW_VERSION"] == "v1")
        }

        @Test func failingBeforeStartHookAbortsWithTheOldVersionServing() throws {
            let hooks = TemporaryDirectory("hooks")
            let log = hooks.file("hooks.log")
            let backup = Self.recordingHook("backup", log: log, in: hooks, exitCode: 3)
            let never = Self.recordingHook("never", log: log, in: hooks)
            let failure = Self.recordingHook("onfailure", log: log, in: hooks)
            let stack = try ProxyStack(.nginx) { options in
                options.extraControl += """

                    [hooks]
                    before_start = [["\(backup)"], ["\(never)"]]
                    on_failure = [["\(failure)"]]
                    """
            }
            let before = try #require(stack.daemon.waitUntilRunning())
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (result, json) = try stack.swap(stack.version("v2"))
            let report = load.finish()
            print("LOAD nginx failing before_start hook: \(report)")

            #expect(result.exitCode == 1)
            #expect((json?["error"] as? [String: Any])?["code"] as? String == "hook_failed")
            #expect(result.stderr.contains("before_start hook `\(backup)` exited with code 3"), "\(result.stderr)")
            #expect(result.stderr.contains("previous version is still serving"))
            #expect(result.stderr.contains("Next: the hook's output is above"), "\(result.stderr)")
            #expect(report.non2xx == 0 && report.socketErrors == 0, "\(report)")
            #expect(stack.proxy.servedVersion() == "v1")
            #expect(stack.daemon.status()?["pid"] as? Int == before["pid"] as? Int)
            stack.expectNothingStray()
            let ran = Self.entries(log)
            #expect(ran.map { $0["hook"] ?? "?" } == ["backup", "onfailure"], "the second before_start hook never ran; on_failure did")
            #expect(ran.last?["SUPERVISOR_ERROR"]?.hasPrefix("hook_failed: ") == true)
        }

        @Test func expectJSONFailingBlocksTheSwitch() throws {
            let stack = try ProxyStack(.nginx, v1Flags: ["--health-field", "db_migration=42"]) { options in
                options.extraHealth += "\nexpect_json = { db_migration = 42 }"
                options.startTimeout = "2s"
            }
            #expect(stack.daemon.waitUntilRunning() != nil, "v1 reports migration 42 and starts: \(stack.daemon.log)")
            let load = try LoadGenerator(port: stack.proxy.listenPort)
            let (behind, json) = try stack.swap(stack.version("v2", flags: ["--health-field", "db_migration=41"]))
            #expect(behind.exitCode == 1)
            #expect((json?["error"] as? [String: Any])?["code"] as? String == "health_timeout")
            #expect(behind.stderr.contains("health JSON field \"db_migration\" is \"41\", expected \"42\""), "\(behind.stderr)")
            #expect(stack.proxy.servedVersion() == "v1")

            let (current, _) = try stack.swap(stack.version("v3", flags: ["--health-field", "db_migration=42"]))
            #expect(current.exitCode == 0, "\(current.stderr)")
            #expect(stack.proxy.servedVersion() == "v3")
            let report = load.finish()
            print("LOAD nginx expect_json: \(report)")
            #expect(report.non2xx == 0 && report.socketErrors == 0, "\(report)")
        }

        @Test func versionsAndMetricsFollowSwaps() throws {
            let stack = try ProxyStack(.nginx)
            let start = try #require(stack.daemon.waitUntilRunning())
            #expect(start["version"] as? String == "v1")
            let metricsBefore = try PrometheusText.parse(try stack.daemon.metrics())
            #expect(metricsBefore.value("supervisor_swaps_total", ["result": "ok"]) == 0)
            #expect(metricsBefore.value("supervisor_version_info", ["version": "v1"]) == 1)

            let (ok, _) = try stack.swap(stack.version("v2"))
            #expect(ok.exitCode == 0)
            #expect(ok.stderr.contains("ok: swap done in"), "\(ok.stderr)")
            #expect(ok.stderr.contains("now serving v2 (sha256 "))
            #expect(ok.stderr.contains("phases (ms): stage "))
            let (bad, _) = try stack.swap(stack.version("v3", flags: ["--crash-at-start"]))
            #expect(bad.exitCode == 1)
            let rollback = try stack.daemon.ctl(["rollback"])
            #expect(rollback.exitCode == 0)

            let status = try #require(stack.daemon.status())
            #expect(status["version"] as? String == "v1")
            #expect(((status["backup"] as? [String: Any])?["version"] as? String) == "v2")
            #expect(((status["last_swap"] as? [String: Any])?["action"] as? String) == "rollback")
            let human = try stack.daemon.ctl(["status"])
            #expect(human.stdout.contains("previous    v2 (sha256 "), "\(human.stdout)")
            #expect(human.stdout.contains("last swap   rollback ok to v1"), "\(human.stdout)")

            let history = try stack.daemon.ctl(["history"])
            #expect(history.stdout.contains("v1 ("), "\(history.stdout)")
            #expect(history.stdout.contains("failed (app_exited)"))
            let table = history.stdout.split(separator: "\n")
            #expect(table.count == 4, "header + 3 entries: \(history.stdout)")

            let metrics = try PrometheusText.parse(try stack.daemon.metrics())
            #expect(metrics.value("supervisor_swaps_total", ["result": "ok"]) == 1)
            #expect(metrics.value("supervisor_swaps_total", ["result": "failed"]) == 1)
            #expect(metrics.value("supervisor_rollbacks_total", ["kind": "manual", "result": "ok"]) == 1)
            #expect(metrics.value("supervisor_version_info", ["version": "v1"]) == 1)
            #expect(metrics.value("supervisor_version_info", ["version": "v2"]) == nil, "only the serving version is reported")
            #expect(metrics.value("supervisor_swap_duration_seconds_count", ["phase": "total"]) == 3)
            #expect(metrics.value("supervisor_swap_duration_seconds_count", ["phase": "health"]) == 3)
            #expect(metrics.value("supervisor_app_restarts_total", [:]) == 0)
        }
    }
}

extension DaemonUnderTest {
    func metrics() throws -> String {
        let result = try Command.run("/usr/bin/curl", ["-s", "-f", "--unix-socket", socket, "http://localhost/metrics"])
        #expect(result.exitCode == 0)
        return result.stdout
    }
}

/// A strict reader of the Prometheus text format: every line is a comment
/// (`# HELP`, `# TYPE`) or `name{label="value",…} number`.
struct PrometheusText {
    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
    }
    let samples: [Sample]

    struct Malformed: Error, CustomStringConvertible {
        let line: String
        var description: String { "not Prometheus text: \(line)" }
    }

    static func parse(_ text: String) throws -> PrometheusText {
        var samples: [Sample] = []
        for raw in text.split(separator: "\n") {
            let line = String(raw)
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw Malformed(line: line)
            }
            let series = line[..<space]
            var name = String(series)
            var labels: [String: String] = [:]
            if let brace = series.firstIndex(of: "{") {
                guard series.hasSuffix("}") else { throw Malformed(line: line) }
                name = String(series[..<brace])
                let body = series[series.index(after: brace)..<series.index(before: series.endIndex)]
                for pair in body.split(separator: ",") where !pair.isEmpty {
                    guard let equals = pair.firstIndex(of: "="), pair[pair.index(after: equals)...].hasPrefix("\""), pair.hasSuffix("\"") else {
                        throw Malformed(line: line)
                    }
                    labels[String(pair[..<equals])] = String(pair[pair.index(equals, offsetBy: 2)..<pair.index(before: pair.endIndex)])
                }
            }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }), !name.isEmpty else {
                throw Malformed(line: line)
            }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
        return PrometheusText(samples: samples)
    }

    /// The value of the one series named `name` whose labels include `labels`.
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        samples.first { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }?.value
    }
}
