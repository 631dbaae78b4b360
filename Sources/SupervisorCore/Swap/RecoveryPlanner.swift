/// Decides, at start, how to reach one consistent version from what the
/// state journal says and what is alive now. Pure: the daemon gathers the
/// facts and carries out the plan.
///
/// | journal phase when the daemon died | serving per journal | recovery |
/// |---|---|---|
/// | none (steady state) | the app | adopt it if alive, else start it on its port |
/// | stage, preflight, start, health, switch, revert | the old instance | undo: adopt the old one (or start it), point the proxy at it, stop the new one, remove `.new` |
/// | drain, stop, commit, watch | the new instance | complete: commit `.new` if still there, adopt the new one (or start it), point the proxy at it, stop the old one |
/// | stop-start: stop, start, health, switch, revert | the old instance | undo: stop the new one first (it may hold the old one's port or lock), then adopt the old one (or start it), remove `.new` |
/// | flip (warm-hold rollback) | the old instance | finish the flip: adopt the old one (or start it), point the proxy at it, stop the new one, and trade `<binary>` and `<binary>.bak` back if the flip had not yet |
///
/// Either way the interrupted operation is recorded in history as `interrupted`.
public enum RecoveryPlanner {
    public struct Facts: Sendable, Equatable {
        /// The journal's serving instance is still that very process.
        public var servingAlive: Bool
        /// The swap's new instance is still that very process.
        public var newAlive: Bool
        /// The swap's old instance is still that very process.
        public var oldAlive: Bool
        /// `<binary>.new` exists.
        public var stagedExists: Bool
        /// `<binary>` still holds the swap's new binary (its sha256 is the staged one's).
        public var liveIsNew: Bool

        public init(servingAlive: Bool, newAlive: Bool = false, oldAlive: Bool = false, stagedExists: Bool = false, liveIsNew: Bool = false) {
            self.servingAlive = servingAlive
            self.newAlive = newAlive
            self.oldAlive = oldAlive
            self.stagedExists = stagedExists
            self.liveIsNew = liveIsNew
        }
    }

    public struct StopTarget: Sendable, Equatable {
        public var pid: Int32
        public var port: Int
        public init(pid: Int32, port: Int) {
            self.pid = pid
            self.port = port
        }
    }

    public struct Plan: Sendable, Equatable {
        public enum Instance: Sendable, Equatable {
            case adopt(pid: Int32, port: Int)
            case start(port: Int)
        }

        public enum Outcome: String, Sendable, Equatable {
            case undone
            case completed
        }

        public var instance: Instance
        /// Commit `.new` (to `<binary>`, keeping `.bak`) before starting anything.
        public var commitStaged: Bool = false
        /// Remove a stray `.new`.
        public var removeStaged: Bool = false
        /// Trade `<binary>` and `<binary>.bak` (a flip interrupted before its exchange).
        public var exchangeBinaries: Bool = false
        /// Drain and stop these once the proxy points at the serving instance.
        public var stop: [StopTarget] = []
        /// Stop `stop` before anything starts (an interrupted stop-start: the new
        /// instance may hold the port or the lock the old one needs).
        public var stopBeforeStart: Bool = false
        /// The interrupted swap, for history.
        public var interrupted: (id: String, action: SwapAction, phase: SwapPhase, outcome: Outcome)?

        public static func == (lhs: Plan, rhs: Plan) -> Bool {
            lhs.instance == rhs.instance && lhs.commitStaged == rhs.commitStaged && lhs.removeStaged == rhs.removeStaged
                && lhs.exchangeBinaries == rhs.exchangeBinaries && lhs.stopBeforeStart == rhs.stopBeforeStart
                && lhs.stop == rhs.stop && lhs.interrupted?.id == rhs.interrupted?.id
                && lhs.interrupted?.phase == rhs.interrupted?.phase && lhs.interrupted?.outcome == rhs.interrupted?.outcome
        }
    }

    public static func plan(state: JournalState?, facts: Facts, firstPort: Int, stagedExistsWithoutSwap: Bool = false) -> Plan {
        guard let state, let serving = state.serving else {
            return Plan(instance: .start(port: firstPort), removeStaged: stagedExistsWithoutSwap)
        }
        let keepServing: Plan.Instance = facts.servingAlive ? .adopt(pid: serving.pid, port: serving.port) : .start(port: serving.port)
        guard let swap = state.swap else {
            return Plan(instance: keepServing, removeStaged: facts.stagedExists)
        }
        if swap.strategy == .stopStart, [.stop, .start, .health, .switch, .revert].contains(swap.phase) {
            var plan = Plan(instance: keepServing, removeStaged: facts.stagedExists)
            if facts.newAlive, let pid = swap.newPID, pid != serving.pid {
                plan.stop = [StopTarget(pid: pid, port: swap.newPort)]
                plan.stopBeforeStart = true
            }
            plan.interrupted = (swap.id, swap.action, swap.phase, .undone)
            return plan
        }
        switch swap.phase {
        case .stage, .preflight, .start, .health, .switch, .revert:
            var plan = Plan(instance: keepServing, removeStaged: facts.stagedExists)
            if facts.newAlive, let pid = swap.newPID, pid != serving.pid { plan.stop = [StopTarget(pid: pid, port: swap.newPort)] }
            plan.interrupted = (swap.id, swap.action, swap.phase, .undone)
            return plan
        case .flip:
            var plan = Plan(instance: keepServing, removeStaged: facts.stagedExists, exchangeBinaries: facts.liveIsNew)
            if facts.newAlive, let pid = swap.newPID, pid != serving.pid { plan.stop = [StopTarget(pid: pid, port: swap.newPort)] }
            plan.interrupted = (swap.id, swap.action, swap.phase, .undone)
            return plan
        case .drain, .stop, .commit, .watch, .done:
            var plan = Plan(instance: keepServing, commitStaged: facts.stagedExists)
            if facts.oldAlive, let old = swap.old, old.pid != serving.pid { plan.stop = [StopTarget(pid: old.pid, port: old.port)] }
            plan.interrupted = (swap.id, swap.action, swap.phase, .completed)
            return plan
        }
    }
}
