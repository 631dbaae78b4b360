#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorShared
import Testing

/// The emergency rollback finds the daemon by the lock it holds, read from
/// the kernel's /proc/locks (device and inode), never by taking the lock.
@Suite struct DaemonLockTests {
    @Test func theHolderOfTheLockIsFoundAndNobodyAfterItIsReleased() throws {
        let directory = TemporaryDirectory("lock")
        let path = DaemonLock.path(stateDirectory: directory.path)
        #expect(DaemonLock.holder(stateDirectory: directory.path) == nil, "no file: no holder")
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        #expect(DaemonLock.holder(stateDirectory: directory.path) == nil, "the file, unlocked: no holder")
        #expect(flock(fd, LOCK_EX | LOCK_NB) == 0)
        #expect(DaemonLock.holder(stateDirectory: directory.path) == getpid(), "\((try? String(contentsOfFile: "/proc/locks", encoding: .utf8)) ?? "")")
        // Another file in the same directory, locked too, is not mistaken for it.
        let other = open(directory.file("other.lock"), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        #expect(flock(other, LOCK_EX | LOCK_NB) == 0)
        close(fd)
        #expect(DaemonLock.holder(stateDirectory: directory.path) == nil, "released when closed")
        close(other)
    }

    /// Under systemd `$STATE_DIRECTORY` wins over the config's `state_dir`, and an operator's
    /// shell does not have it: the daemon says which directory it uses next to its control
    /// socket, and the emergency rollback finds its lock there.
    @Test func theEmergencyRollbackFindsTheDaemonInTheStateDirectoryItReallyUses() throws {
        let daemon = DaemonUnderTest()
        let elsewhere = TemporaryDirectory("state-elsewhere")
        try daemon.start(environment: ["STATE_DIRECTORY": elsewhere.path])
        #expect(daemon.waitUntilRunning() != nil, "\(daemon.log)")
        guard case .success(let config) = ConfigLoader.parse(path: daemon.configPath, environment: [:]) else {
            Issue.record("the test config does not parse")
            return
        }
        #expect(config.stateDirectory != elsewhere.path, "the config alone names another directory")
        #expect(DaemonLock.stateDirectory(for: config) == elsewhere.path)
        #expect(DaemonLock.holder(stateDirectory: DaemonLock.stateDirectory(for: config)) == daemon.pid)
    }
}
