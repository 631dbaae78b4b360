import Testing
@testable import SupervisorCore

@Suite struct UntrustedTextTests {
    @Test func controlCharactersBecomeVisibleEscapes() {
        #expect(UntrustedText.escaped("v1.2") == "v1.2")
        #expect(UntrustedText.escaped("v5\u{1b}[31mred\r") == "v5\\e[31mred\\r")
        #expect(UntrustedText.escaped("a\nINFO forged") == "a\\nINFO forged")
        #expect(UntrustedText.escaped("nul\0tab\t") == "nul\\0tab\\t")
        #expect(UntrustedText.escaped("del\u{7f} csi\u{9b}") == "del\\u{7f} csi\\u{9b}")
        #expect(UntrustedText.escaped("naïve 版本") == "naïve 版本", "printable UTF-8 is unchanged")
    }

    @Test func linesKeepTheirBreaks() {
        #expect(UntrustedText.escapedLines("one\u{1b}\ntwo\r") == "one\\e\ntwo\\r")
        #expect(UntrustedText.quoted("x\ny") == "\"x\\ny\"")
    }
}

@Suite struct RunAsConfigTests {
    @Test func userGroupAndHooksUserDecode() throws {
        var document = with("app", "user", .string("myapp"))
        document = with("app", "group", .string("web"), in: document)
        document = with("hooks", "user", .string("backup"), in: document)
        let config = try ConfigDecoder.decode(document).get()
        #expect(config.app.user == "myapp")
        #expect(config.app.group == "web")
        #expect(config.hooks.user == "backup")
        let defaults = try ConfigDecoder.decode(validDocument()).get()
        #expect(defaults.app.user == nil && defaults.app.group == nil && defaults.hooks.user == nil)
    }

    @Test func aGroupWithoutAUserAndEmptyNamesAreRefused() {
        #expect(problems(with("app", "group", .string("web"))).contains { $0.contains("app.group") && $0.contains("without user") })
        #expect(problems(with("app", "user", .string(""))).contains { $0.contains("app.user") && $0.contains("must not be empty") })
        #expect(problems(with("hooks", "user", .string(""))).contains { $0.contains("hooks.user") })
    }
}
