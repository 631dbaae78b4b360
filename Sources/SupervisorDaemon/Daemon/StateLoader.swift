#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SupervisorCore
import SupervisorShared
import SystemBindings

/// Reads the state journal once at start and says what it could not read.
/// An unreadable `state.json` (kept aside by `StateJournal.read`) does not
/// mean nothing runs: the app is looked for on `[app] ports` and, when found,
/// adopted as if the journal had named it (`LiveInstancePlanner`), instead of
/// a second instance being started while the first serves unsupervised.
enum StateLoader {
    static func load(journal: StateJournal, config: SupervisorConfig, logger: Logger) -> JournalState? {
        let unreadable = journal.unreadableHistoryLines()
        if unreadable > 0 {
            logger.warning("history.jsonl: skipped \(unreadable) unreadable line\(unreadable == 1 ? "" : "s") (\(journal.historyPath))")
        }
        switch journal.read() {
        case .missing:
            return nil
        case .state(let state):
            return state
        case .unreadable(let reason, let keptAs):
            logger.error("state.json could not be read (\(reason)); kept as \(keptAs ?? "it was"); looking for a live instance of the app")
            return findLiveInstance(config: config, logger: logger)
        }
    }

    static func findLiveInstance(config: SupervisorConfig, logger: Logger) -> JournalState? {
        if !config.app.listen.isEmpty {
            // The instances hold the supervisor's own sockets, not [app] ports.
            logger.warning("socket-handoff mode: a live instance cannot be found by port; starting the app as on a first start")
            return nil
        }
        let binaries = Array(Set([config.app.binary, realpath(config.app.binary)].compactMap { $0 })).sorted()
        let isScript = startsWithShebang(config.app.binary)
        var listeners: [LiveInstancePlanner.Listener] = []
        for port in config.app.ports {
            for pid in PortCheck.holders(port: port) where pid != getpid() {
                guard let identity = ProcessIdentity.of(pid: pid) else { continue }
                let environment = ["PORT=\(port)"] + config.app.env.map { "\($0.key)=\($0.value)" }
                let runs = LiveInstancePlanner.runs(
                    executable: identity.executable, arguments: ProcessIdentity.arguments(of: pid), binaries: binaries,
                    binaryIsScript: isScript,
                    hasInstanceEnvironment: environment.allSatisfy { ProcessIdentity.environment(of: pid, contains: $0) })
                listeners.append(.init(port: port, pid: pid, startTime: identity.startTime, executable: identity.executable, runs: runs))
            }
        }
        let finding = LiveInstancePlanner.plan(
            listeners: listeners, ports: config.app.ports, proxyPort: upstreamPort(config),
            swapID: "recovered-\(Int(Date().timeIntervalSince1970))-\(getpid())")
        func describe(_ listener: LiveInstancePlanner.Listener) -> String {
            "pid \(listener.pid) on port \(listener.port) (\(listener.executable ?? "executable unknown"))"
        }
        for stranger in finding.strangers {
            logger.warning("\(describe(stranger)) is not the app (\(config.app.binary)); it holds one of [app] ports")
        }
        guard let serving = finding.serving else {
            logger.warning("no live instance of the app on ports \(config.app.ports.map(String.init).joined(separator: ", ")); starting it as on a first start")
            return nil
        }
        logger.notice("found the app alive: \(describe(serving)); adopting it")
        for listener in finding.stopped {
            logger.notice("\(describe(listener)) is the other instance of a swap that was in progress; recovery stops it")
        }
        for listener in finding.leftAlone {
            logger.warning("\(describe(listener)) also runs the app; left alone: stop it by hand (it holds a side port a swap needs)")
        }
        return finding.state
    }

    /// The `[app] ports` entry the proxy's upstream file points at, when exactly one does.
    static func upstreamPort(_ config: SupervisorConfig) -> Int? {
        guard config.proxy.kind != .none, let path = config.proxy.upstreamFile, let bytes = AtomicFile.read(path) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        let named = config.app.ports.filter { port in
            var rest = Substring(text)
            while let range = rest.range(of: ":\(port)") {
                rest = rest[range.upperBound...]
                if rest.first?.isNumber != true { return true }
            }
            return false
        }
        return named.count == 1 ? named[0] : nil
    }

    /// Whether the file starts with "#!" (a script run through an interpreter).
    static func startsWithShebang(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head: [UInt8] = [0, 0]
        return pread(fd, &head, 2, 0) == 2 && head == Array("#!".utf8)
    }

    static func realpath(_ path: String) -> String? {
        guard let resolved = Glibc.realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
