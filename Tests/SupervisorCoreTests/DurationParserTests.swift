import Testing
@testable import SupervisorCore

@Suite struct DurationParserTests {
    @Test(arguments: [
        ("100ms", Duration.milliseconds(100)),
        ("30s", .seconds(30)),
        ("2m", .seconds(120)),
        ("1h", .seconds(3600)),
        ("1.5s", .milliseconds(1500)),
        (" 5s ", .seconds(5)),
        ("0s", .zero),
        ("3", .seconds(3)),
        ("0.25", .milliseconds(250)),
    ])
    func parses(text: String, expected: Duration) {
        #expect(DurationParser.parse(text) == .success(expected))
    }

    @Test(arguments: ["", "s", "ms", "fast", "5 seconds", "1e3s", "--1s", "5x"])
    func rejects(text: String) {
        #expect(DurationParser.parse(text) == .failure(.malformed))
    }

    @Test func negative() {
        #expect(DurationParser.parse("-1s") == .failure(.negative))
        #expect(DurationParser.parse(.integer(-2)) == .failure(.negative))
    }

    /// Found by scripts/fuzz.sh: a long run of digits used to trap converting to Int64.
    @Test(arguments: [
        ConfigValue.string("0" + String(repeating: "4", count: 120)),
        .string("99999999999999999999ms"),
        .string("169h"),
        .string("604801s"),
        .integer(Int.max),
        .float(1e300),
    ])
    func rejectsTooLong(value: ConfigValue) {
        #expect(DurationParser.parse(value) == .failure(.tooLong))
    }

    @Test func longestAccepted() {
        #expect(DurationParser.parse("168h") == .success(DurationParser.maximum))
        #expect(DurationParser.parse(.integer(604_800)) == .success(.seconds(604_800)))
        #expect(DurationParser.maximum.humanReadable == "168h")
    }

    @Test func numbersAreSeconds() {
        #expect(DurationParser.parse(.integer(2)) == .success(.seconds(2)))
        #expect(DurationParser.parse(.float(0.1)) == .success(.milliseconds(100)))
        #expect(DurationParser.parse(.bool(true)) == nil)
    }

    @Test func humanReadable() {
        #expect(Duration.milliseconds(250).humanReadable == "250ms")
        #expect(Duration.seconds(5).humanReadable == "5s")
        #expect(Duration.seconds(120).humanReadable == "2m")
        #expect(Duration.milliseconds(1500).humanReadable == "1.5s")
    }
}
