import Testing
@testable import SupervisorCore

/// Finding the app among the processes on `[app] ports` when `state.json` is lost.
@Suite struct LiveInstancePlannerTests {
    let binary = "/srv/app/bin/app"

    func runs(exe: String?, args: [String] = [], script: Bool = false, env: Bool = false) -> LiveInstancePlanner.Runs? {
        LiveInstancePlanner.runs(executable: exe, arguments: args, binaries: [binary], binaryIsScript: script, hasInstanceEnvironment: env)
    }

    @Test func recognisesTheServiceFilesByExecutableOrCommandLine() {
        #expect(runs(exe: binary) == .live)
        #expect(runs(exe: binary + ".bak") == .backup)
        #expect(runs(exe: binary + ".new") == .staged)
        #expect(runs(exe: binary + " (deleted)") == .live, "a file replaced since the exec")
        #expect(runs(exe: "/bin/dash", args: ["/bin/sh", binary, "--port", "8081"]) == .live, "an interpreter running the script")
        #expect(runs(exe: "/usr/bin/other", args: ["/usr/bin/other"]) == nil)
        #expect(runs(exe: nil, args: []) == nil)
        // A wrapper script that exec'd the real program: known by the environment the supervisor gives.
        #expect(runs(exe: "/opt/demo-app", args: ["/opt/demo-app"], script: true, env: true) == .wrapped)
        #expect(runs(exe: "/opt/demo-app", args: ["/opt/demo-app"], script: true, env: false) == nil)
        #expect(runs(exe: "/opt/demo-app", args: ["/opt/demo-app"], script: false, env: true) == nil, "a binary that is not a script runs itself")
    }

    func listener(_ port: Int, _ pid: Int32, _ runs: LiveInstancePlanner.Runs?) -> LiveInstancePlanner.Listener {
        .init(port: port, pid: pid, startTime: UInt64(pid) * 10, executable: "/x/\(pid)", runs: runs)
    }

    func plan(_ listeners: [LiveInstancePlanner.Listener], proxyPort: Int? = nil) -> LiveInstancePlanner.Finding {
        LiveInstancePlanner.plan(listeners: listeners, ports: [8081, 8082], proxyPort: proxyPort, swapID: "recovered-1")
    }

    @Test func nothingOfOursListeningMeansAFirstStart() {
        let finding = plan([listener(8081, 7, nil)])
        #expect(finding.state == nil)
        #expect(finding.strangers.map(\.pid) == [7])
        #expect(plan([]).state == nil)
    }

    @Test func oneInstanceServesAndTheNormalPlannerAdoptsIt() {
        let finding = plan([listener(8082, 42, .live), listener(8081, 9, nil)])
        let state = try! #require(finding.state)
        #expect(state.serving == JournalState.Instance(pid: 42, port: 8082, sha256: nil, version: nil, startTime: 420, executable: "/x/42"))
        #expect(state.swap == nil)
        #expect(finding.strangers.map(\.pid) == [9])
        let recovery = RecoveryPlanner.plan(state: state, facts: .init(servingAlive: true), firstPort: 8081)
        #expect(recovery.instance == .adopt(pid: 42, port: 8082))
        #expect(recovery.interrupted == nil)
    }

    @Test func theSameProcessOnBothPortsIsOneInstance() {
        let finding = plan([listener(8081, 42, .live), listener(8082, 42, .live)])
        #expect(finding.serving?.port == 8081)
        #expect(finding.leftAlone.isEmpty && finding.stopped.isEmpty)
    }

    @Test func aStagedCopyServingIsASwapPastItsSwitch() {
        let finding = plan([listener(8081, 10, .live), listener(8082, 20, .staged)], proxyPort: 8082)
        let state = try! #require(finding.state)
        #expect(state.serving?.pid == 20)
        #expect(state.swap?.phase == .commit)
        #expect(state.swap?.old?.pid == 10)
        #expect(finding.stopped.map(\.pid) == [10])
        let recovery = RecoveryPlanner.plan(
            state: state, facts: .init(servingAlive: true, newAlive: true, oldAlive: true, stagedExists: true), firstPort: 8081)
        #expect(recovery.instance == .adopt(pid: 20, port: 8082))
        #expect(recovery.commitStaged)
        #expect(recovery.stop == [.init(pid: 10, port: 8081)])
        #expect(recovery.interrupted?.outcome == .completed)
    }

    @Test func aStagedCopyNotServingIsASwapBeforeItsSwitch() {
        // Without the proxy's word, the one not running `.new` serves.
        for proxyPort in [8081, nil] {
            let finding = plan([listener(8082, 20, .staged), listener(8081, 10, .live)], proxyPort: proxyPort)
            let state = try! #require(finding.state)
            #expect(state.serving?.pid == 10)
            #expect(state.swap?.phase == .health)
            #expect(state.swap?.newPID == 20)
            let recovery = RecoveryPlanner.plan(
                state: state, facts: .init(servingAlive: true, newAlive: true, stagedExists: true), firstPort: 8081)
            #expect(recovery.instance == .adopt(pid: 10, port: 8081))
            #expect(recovery.removeStaged)
            #expect(recovery.stop == [.init(pid: 20, port: 8082)])
            #expect(recovery.interrupted?.outcome == .undone)
        }
    }

    @Test func aLoneStagedCopyIsCommitted() {
        let state = try! #require(plan([listener(8082, 20, .staged)]).state)
        #expect(state.serving?.pid == 20)
        #expect(state.swap?.phase == .commit)
        #expect(state.swap?.old == nil)
    }

    @Test func twoInstancesOfTheSameFileLeaveTheOneNotServingAlone() {
        let finding = plan([listener(8081, 10, .live), listener(8082, 20, .backup)], proxyPort: 8082)
        #expect(finding.state?.serving?.pid == 20)
        #expect(finding.state?.swap == nil)
        #expect(finding.leftAlone.map(\.pid) == [10])
        // No proxy to ask: the earlier port.
        #expect(plan([listener(8082, 20, .live), listener(8081, 10, .wrapped)]).serving?.pid == 10)
    }
}
