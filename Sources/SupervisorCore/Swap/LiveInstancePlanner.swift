/// When `state.json` is lost (it did not parse and was kept aside), the
/// journal cannot say which process is the app. This finds it among the
/// processes listening on `[app] ports` and builds the state the normal
/// `RecoveryPlanner` would have read, so a live app is adopted instead of a
/// second one being started next to it. Pure: the daemon gathers the facts
/// from /proc.
///
/// | live instances of the app found | the state built |
/// |---|---|
/// | none | nil: first start |
/// | one, running `<binary>` (or `.bak`, or through a wrapper script) | it serves, no swap |
/// | one, running `<binary>.new` | it serves; a swap past its switch: `.new` is committed |
/// | two, the serving one running `.new` | as above, and the other is stopped |
/// | two, the other one running `.new` | a swap before its switch: the `.new` one is stopped, `.new` removed |
/// | two, neither running `.new` | the serving one is adopted; the other is left alone (and reported) |
///
/// Which one serves when there are two: the one on the port the proxy's
/// upstream file names; without that, the one not running `.new`; then the
/// one on the earlier port in `[app] ports`.
public enum LiveInstancePlanner {
    /// Which file a process runs, as far as /proc tells.
    public enum Runs: String, Sendable, Equatable {
        case live
        case backup
        case staged
        /// `[app] binary` is a script that exec'd another program; the
        /// process carries the environment the supervisor gives its
        /// instances (`PORT=<port>` and `[app] env`), so it is one of ours,
        /// but which file started it is unknown.
        case wrapped
    }

    /// One process listening on one of `[app] ports`.
    public struct Listener: Sendable, Equatable {
        public var port: Int
        public var pid: Int32
        public var startTime: UInt64
        public var executable: String?
        /// nil: not the app (a stranger holds the port).
        public var runs: Runs?

        public init(port: Int, pid: Int32, startTime: UInt64, executable: String?, runs: Runs?) {
            self.port = port
            self.pid = pid
            self.startTime = startTime
            self.executable = executable
            self.runs = runs
        }

        var instance: JournalState.Instance {
            JournalState.Instance(pid: pid, port: port, sha256: nil, version: nil, startTime: startTime, executable: executable)
        }
    }

    public struct Finding: Sendable, Equatable {
        /// The state to recover from; nil when no live instance of the app was found.
        public var state: JournalState?
        public var serving: Listener?
        /// Other live instances of the app that recovery will stop.
        public var stopped: [Listener] = []
        /// Other live instances of the app that recovery leaves alone.
        public var leftAlone: [Listener] = []
        /// Processes on `[app] ports` that are not the app.
        public var strangers: [Listener] = []
    }

    /// Which of the service's files `executable`/`arguments` run, if any.
    /// `binaries` are `[app] binary` as configured and, when it differs, with
    /// its symlinks resolved.
    public static func runs(
        executable: String?, arguments: [String], binaries: [String], binaryIsScript: Bool, hasInstanceEnvironment: Bool
    ) -> Runs? {
        var known: [(String, Runs)] = []
        for binary in binaries {
            known += [(binary, .live), (binary + ".bak", .backup), (binary + ".new", .staged)]
        }
        // A file replaced or renamed away since the exec reads "PATH (deleted)".
        let deleted = " (deleted)"
        let exe = executable.map { $0.hasSuffix(deleted) ? String($0.dropLast(deleted.count)) : $0 }
        if let exe, let match = known.first(where: { $0.0 == exe }) { return match.1 }
        // An interpreter running the file (`/bin/sh /srv/app/bin/app`), or argv[0] naming it.
        for argument in arguments {
            if let match = known.first(where: { $0.0 == argument }) { return match.1 }
        }
        if binaryIsScript && hasInstanceEnvironment { return .wrapped }
        return nil
    }

    /// `listeners`: every process holding a listening socket on one of
    /// `ports`. `proxyPort`: the port the proxy's upstream file names, when
    /// known. `swapID`: the id recorded in history for a swap found half done.
    public static func plan(listeners: [Listener], ports: [Int], proxyPort: Int?, swapID: String) -> Finding {
        var finding = Finding()
        finding.strangers = listeners.filter { $0.runs == nil }
        var app: [Listener] = []
        for listener in listeners where listener.runs != nil && !app.contains(where: { $0.pid == listener.pid }) {
            app.append(listener)
        }
        func order(_ listener: Listener) -> Int { ports.firstIndex(of: listener.port) ?? ports.count }
        app.sort { order($0) < order($1) }
        guard
            let serving = app.first(where: { $0.port == proxyPort })
                ?? app.first(where: { $0.runs != .staged })
                ?? app.first
        else { return finding }
        finding.serving = serving
        var others = app.filter { $0.pid != serving.pid }
        var state = JournalState(serving: serving.instance, swap: nil)
        if serving.runs == .staged {
            // Past the switch: the staged copy serves. Complete: commit it, stop the old one.
            let old = others.first
            if let old {
                finding.stopped = [old]
                others.removeFirst()
            }
            state.swap = JournalState.SwapInProgress(
                id: swapID, action: .swap, phase: .commit, newPort: serving.port, newPID: serving.pid,
                stagedSHA256: nil, newStartTime: serving.startTime, old: old?.instance)
        } else if let index = others.firstIndex(where: { $0.runs == .staged }) {
            // Before the switch: the staged copy was being tried. Undo: stop it, remove `.new`.
            let new = others.remove(at: index)
            finding.stopped = [new]
            state.swap = JournalState.SwapInProgress(
                id: swapID, action: .swap, phase: .health, newPort: new.port, newPID: new.pid,
                stagedSHA256: nil, newStartTime: new.startTime, old: serving.instance)
        }
        finding.leftAlone = others
        finding.state = state
        return finding
    }
}
