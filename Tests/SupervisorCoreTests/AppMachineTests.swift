import Testing
@testable import SupervisorCore

@Suite struct AppMachineTests {
    /// Drives a machine through events, returning every action in order.
    func run(_ events: [AppMachine.Event], on machine: inout AppMachine) -> [AppMachine.Action] {
        events.flatMap { machine.handle($0) }
    }

    @Test func firstStartWaitsForHealthThenAnnouncesReady() {
        var machine = AppMachine()
        #expect(machine.handle(.start(port: 8081)) == [.spawn(port: 8081)])
        #expect(machine.phase == "starting")
        #expect(machine.handle(.spawned(pid: 10)) == [.awaitHealth(pid: 10, port: 8081)])
        #expect(machine.handle(.healthy) == [.announceReady(pid: 10, port: 8081)])
        #expect(machine.state == .running(pid: 10, port: 8081))
        #expect(machine.hasBeenReady)
        #expect(machine.restarts == 0)
    }

    @Test func unexpectedExitRestartsWithGrowingBackoff() {
        var machine = AppMachine()
        _ = run([.start(port: 8081), .spawned(pid: 10), .healthy], on: &machine)
        #expect(machine.handle(.exited(pid: 10, status: "killed by signal 9", uptime: .seconds(1)))
            == [.scheduleRestart(after: .milliseconds(100), reason: "killed by signal 9")])
        #expect(machine.phase == "backoff")
        #expect(machine.restarts == 1)
        #expect(machine.lastExit == "killed by signal 9")
        #expect(machine.handle(.restartTimerFired) == [.spawn(port: 8081)])
        #expect(machine.handle(.spawned(pid: 11)) == [.awaitHealth(pid: 11, port: 8081)])
        #expect(machine.phase == "restarting")
        #expect(machine.handle(.healthy) == [.announceRecovered(pid: 11, port: 8081, restarts: 1)])
        // A second quick crash waits longer.
        #expect(machine.handle(.exited(pid: 11, status: "exited with code 1", uptime: .seconds(1)))
            == [.scheduleRestart(after: .milliseconds(200), reason: "exited with code 1")])
    }

    @Test func crashDuringFirstStartIsRetriedNotReady() {
        var machine = AppMachine()
        _ = run([.start(port: 8081), .spawned(pid: 10)], on: &machine)
        let actions = machine.handle(.exited(pid: 10, status: "exited with code 3", uptime: .milliseconds(5)))
        #expect(actions == [.scheduleRestart(after: .milliseconds(100), reason: "exited with code 3")])
        #expect(!machine.hasBeenReady)
    }

    @Test func healthGateTimeoutKillsThenRestartsOnExit() {
        var machine = AppMachine()
        _ = run([.start(port: 8081), .spawned(pid: 10)], on: &machine)
        #expect(machine.handle(.healthGateFailed(reason: "HTTP 503")) == [.kill(pid: 10)])
        #expect(machine.handle(.exited(pid: 10, status: "killed by signal 9", uptime: .seconds(30)))
            == [.scheduleRestart(after: .milliseconds(100), reason: "killed by signal 9")])
    }

    @Test func spawnFailureSchedulesRestart() {
        var machine = AppMachine()
        _ = machine.handle(.start(port: 8081))
        #expect(machine.handle(.spawnFailed(reason: "no such file")) == [.scheduleRestart(after: .milliseconds(100), reason: "no such file")])
    }

    @Test func stopSignalsThenKillsAfterTimeout() {
        var machine = AppMachine()
        _ = run([.start(port: 8081), .spawned(pid: 10), .healthy], on: &machine)
        #expect(machine.handle(.stopRequested) == [.sendStopSignal(pid: 10), .scheduleStopTimer])
        #expect(machine.handle(.stopTimerFired) == [.kill(pid: 10)])
        #expect(machine.handle(.exited(pid: 10, status: "killed by signal 9", uptime: .seconds(40))) == [.finishStop])
        #expect(machine.state == .stopped)
        #expect(machine.restarts == 0, "an exit we asked for is not a restart")
    }

    @Test func stopWhileBackingOffNeedsNoSignal() {
        var machine = AppMachine()
        _ = run([.start(port: 8081), .spawned(pid: 10), .exited(pid: 10, status: "x", uptime: .zero)], on: &machine)
        #expect(machine.handle(.stopRequested) == [.finishStop])
        #expect(machine.handle(.restartTimerFired) == [], "a stale timer after stop does nothing")
    }

    @Test func stopDuringSpawnStopsWhatItProduces() {
        var machine = AppMachine()
        _ = machine.handle(.start(port: 8081))
        #expect(machine.handle(.stopRequested) == [])
        #expect(machine.handle(.spawned(pid: 12)) == [.sendStopSignal(pid: 12), .scheduleStopTimer])
        #expect(machine.handle(.exited(pid: 12, status: "exited with code 0", uptime: .zero)) == [.finishStop])
    }

    @Test func eventsForOtherPidsAreIgnored() {
        var machine = AppMachine()
        _ = run([.start(port: 8081), .spawned(pid: 10), .healthy], on: &machine)
        #expect(machine.handle(.exited(pid: 99, status: "x", uptime: .zero)) == [])
        #expect(machine.handle(.stopTimerFired) == [])
        #expect(machine.state == .running(pid: 10, port: 8081))
    }

    @Test func backoffIsCappedAndResetsAfterAStableRun() {
        var backoff = RestartBackoff(initial: .milliseconds(100), maximum: .seconds(1), stableAfter: .seconds(30))
        let delays = (0..<6).map { _ in backoff.nextDelay(afterUptime: .seconds(1)) }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
        #expect(backoff.nextDelay(afterUptime: .seconds(31)) == .milliseconds(100))
    }
}

@Suite struct AppMachineHandOverTests {
    @Test func handOverMakesTheSwappedInstanceTheSupervisedOne() {
        var machine = AppMachine()
        _ = [AppMachine.Event.start(port: 8081), .spawned(pid: 10), .healthy].flatMap { machine.handle($0) }
        #expect(machine.handle(.handedOver(pid: 20, port: 8082)) == [])
        #expect(machine.state == .running(pid: 20, port: 8082))
        // The old instance exiting (we stopped it) is not a crash.
        #expect(machine.handle(.exited(pid: 10, status: "exited with code 0", uptime: .seconds(5))) == [])
        #expect(machine.restarts == 0)
        // The new one crashing restarts on its own port.
        #expect(machine.handle(.exited(pid: 20, status: "killed by signal 9", uptime: .seconds(1)))
            == [.scheduleRestart(after: .milliseconds(100), reason: "killed by signal 9")])
        #expect(machine.handle(.restartTimerFired) == [.spawn(port: 8082)])
    }

    @Test func handOverIsIgnoredOnceStopping() {
        var machine = AppMachine()
        _ = [AppMachine.Event.start(port: 8081), .spawned(pid: 10), .healthy, .stopRequested].flatMap { machine.handle($0) }
        #expect(machine.handle(.handedOver(pid: 20, port: 8082)) == [])
        #expect(machine.state == .stopping(pid: 10))
    }
}
