#if canImport(Glibc)
import Glibc
#endif
import SupervisorShared

/// Whether an nginx config sends traffic through the upstream file, read
/// from `nginx -T`'s dump (every file nginx loaded, each under a
/// `# configuration file PATH:` line): the dump is parsed, `include`s are
/// expanded the way nginx does (relative to the main file's directory,
/// globs), and the file must be included inside an `upstream NAME { … }`
/// block that a `proxy_pass` (or `grpc_pass`, …) names.
public enum NginxWiring {
    public enum Verdict: Equatable, Sendable {
        /// Routed through the file, by these upstream names.
        case wired([String])
        /// Not routed through it: what is missing, in words an operator can act on.
        case notWired(String)
        /// The config decides at request time (`proxy_pass http://$backend`): cannot tell.
        case undecidable(String)
    }

    /// Nil when wired (or undecidable); else what is missing.
    public static func problem(dump: String, upstreamFile: String) -> String? {
        if case .notWired(let problem) = verdict(dump: dump, upstreamFile: upstreamFile) { return problem }
        return nil
    }

    public static func verdict(dump: String, upstreamFile: String) -> Verdict {
        let files = Self.files(inDump: dump)
        guard let main = files.first else {
            return .notWired("`nginx -T` printed no configuration")
        }
        let target = Set([upstreamFile, realPath(upstreamFile)].compactMap { $0 })
        let loaded = files.contains { target.contains($0.path) || realPath($0.path).map(target.contains) == true }
        guard loaded else {
            let list = files.map(\.path).joined(separator: ", ")
            return .notWired("nginx does not load \(upstreamFile): no `include` in its config reaches it (it loads \(list)); put `include \(upstreamFile);` inside an `upstream NAME { … }` block that a `proxy_pass http://NAME;` uses")
        }
        var walk = Walk(files: files, directory: AtomicFile.directoryName(main.path), target: target)
        walk.visit(parse(main.text), file: main.path, upstream: nil, depth: 0)
        if walk.wiredUpstreams.isEmpty {
            if !walk.reachedTarget {
                return .undecidable("nginx loads \(upstreamFile), through an include this check cannot follow")
            }
            return .notWired("nginx loads \(upstreamFile), but not inside an `upstream NAME { … }` block; put its `include` there and point `proxy_pass http://NAME;` at it")
        }
        let used = walk.wiredUpstreams.intersection(walk.passedTo).sorted()
        if used.isEmpty {
            let names = walk.wiredUpstreams.sorted()
            if walk.variablePass {
                return .undecidable("upstream \(names.joined(separator: ", ")) includes \(upstreamFile), and a `proxy_pass` picks its upstream from a variable at request time")
            }
            return .notWired("upstream \(names.joined(separator: ", ")) includes \(upstreamFile), but no `proxy_pass` sends traffic to it (for example `proxy_pass http://\(names[0]);`)")
        }
        for name in used {
            if let others = walk.foreignServers[name], !others.isEmpty {
                return .notWired("upstream \(name) includes \(upstreamFile) but also lists `server \(others.joined(separator: "`, `server "))` outside it: nginx would go on sending traffic there after a swap; leave only the include (a `backup` server is fine)")
            }
        }
        return .wired(used)
    }

    struct File { let path: String; var text: String }

    /// The dump split into its files, in nginx's order (the main file first).
    /// nginx's own messages (`nginx: …`, on stderr) are left out.
    static func files(inDump dump: String) -> [File] {
        var files: [File] = []
        let header = "# configuration file "
        for line in dump.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(header), line.hasSuffix(":") {
                files.append(File(path: String(line.dropFirst(header.count).dropLast()), text: ""))
            } else if line.hasPrefix("nginx: ") {
                continue
            } else if !files.isEmpty {
                files[files.count - 1].text += line + "\n"
            }
        }
        return files
    }

    struct Directive {
        let name: String
        let arguments: [String]
        let block: [Directive]?
    }

    /// nginx's syntax: words (quoted or not), `;`, `{`, `}`, `#` comments.
    static func parse(_ text: String) -> [Directive] {
        var tokens = tokenize(text)[...]
        var directives: [Directive] = []
        // A `}` with no block open (a Lua block's body read as nginx syntax, say) ends nothing.
        repeat { directives += parseBlock(&tokens) } while !tokens.isEmpty
        return directives
    }

    enum Token: Equatable { case word(String), semicolon, open, close }

    static func tokenize(_ text: String) -> [Token] {
        var tokens: [Token] = []
        var word = ""
        var quote: Character?
        var comment = false
        var escaped = false
        func flush() { if !word.isEmpty { tokens.append(.word(word)); word = "" } }
        for character in text {
            if comment {
                if character == "\n" { comment = false }
                continue
            }
            if let open = quote {
                // Inside quotes: everything up to the closing one (nginx opens a quote only at a token's start).
                if escaped { word.append(character); escaped = false }
                else if character == "\\" { escaped = true }
                else if character == open { quote = nil; tokens.append(.word(word)); word = "" }
                else { word.append(character) }
                continue
            }
            switch character {
            case "\"" where word.isEmpty, "'" where word.isEmpty: quote = character
            case "#" where word.isEmpty: comment = true
            case ";": flush(); tokens.append(.semicolon)
            case "{": flush(); tokens.append(.open)
            case "}": flush(); tokens.append(.close)
            case " ", "\t", "\n", "\r": flush()
            default: word.append(character)
            }
        }
        flush()
        return tokens
    }

    static func parseBlock(_ tokens: inout ArraySlice<Token>) -> [Directive] {
        var directives: [Directive] = []
        var words: [String] = []
        while let token = tokens.popFirst() {
            switch token {
            case .word(let word): words.append(word)
            case .semicolon:
                if let name = words.first { directives.append(Directive(name: name, arguments: Array(words.dropFirst()), block: nil)) }
                words = []
            case .open:
                let inner = parseBlock(&tokens)
                if let name = words.first { directives.append(Directive(name: name, arguments: Array(words.dropFirst()), block: inner)) }
                words = []
            case .close:
                return directives
            }
        }
        return directives
    }

    /// Expands includes in place and notes which upstream blocks include the
    /// file and which names the `*_pass` directives send traffic to.
    struct Walk {
        let files: [File]
        let directory: String
        let target: Set<String>
        var wiredUpstreams: Set<String> = []
        var passedTo: Set<String> = []
        /// A `*_pass` whose upstream is a variable.
        var variablePass = false
        /// Some `include` was followed to the upstream file.
        var reachedTarget = false
        /// Per upstream: `server` directives not from the upstream file (backups aside).
        var foreignServers: [String: [String]] = [:]

        mutating func visit(_ directives: [Directive], file: String, upstream: String?, depth: Int) {
            guard depth < 32 else { return }
            for directive in directives {
                switch directive.name {
                case "include":
                    guard let pattern = directive.arguments.first else { continue }
                    let absolute = pattern.hasPrefix("/") ? pattern : directory + "/" + pattern
                    for included in files where fnmatch(absolute, included.path, FNM_PATHNAME) == 0 {
                        let isTarget = target.contains(included.path) || realPath(included.path).map(target.contains) == true
                        if isTarget { reachedTarget = true }
                        if isTarget, let upstream {
                            wiredUpstreams.insert(upstream)
                            continue
                        }
                        if isTarget {
                            // A template that holds a whole `upstream NAME { server …; }` block.
                            for directive in NginxWiring.parse(included.text) where directive.name == "upstream" {
                                if let name = directive.arguments.first { wiredUpstreams.insert(name.lowercased()) }
                            }
                            continue
                        }
                        visit(NginxWiring.parse(included.text), file: included.path, upstream: upstream, depth: depth + 1)
                    }
                case "upstream":
                    if let block = directive.block, let name = directive.arguments.first {
                        visit(block, file: file, upstream: name.lowercased(), depth: depth + 1)
                    }
                case "server" where upstream != nil && directive.block == nil:
                    let flags = directive.arguments.dropFirst()
                    if let upstream, let address = directive.arguments.first, !flags.contains("backup"), !flags.contains("down") {
                        foreignServers[upstream, default: []].append(address)
                    }
                case "proxy_pass", "grpc_pass", "uwsgi_pass", "scgi_pass", "fastcgi_pass", "memcached_pass":
                    if let address = directive.arguments.first {
                        let host = NginxWiring.host(address)
                        if host.isEmpty { variablePass = true } else { passedTo.insert(host) }
                    }
                default:
                    if let block = directive.block { visit(block, file: file, upstream: upstream, depth: depth + 1) }
                }
            }
        }
    }

    /// `http://App:80/path` → `app`; empty when the host is a variable (`http://$backend`).
    static func host(_ address: String) -> String {
        var rest = Substring(address)
        if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
        return String(rest.prefix { !"$/:?".contains($0) }).lowercased()
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
