#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import SystemBindings

/// Who holds a service's daemon lock (`<state_dir>/supervisord.lock`, taken
/// with flock by the running `supervisord`), read from /proc/locks without
/// touching the lock itself: taking it, even for a moment, could make a
/// daemon starting at that instant refuse to run.
public enum DaemonLock {
    public static func path(stateDirectory: String) -> String { stateDirectory + "/supervisord.lock" }

    /// Writes this process's pid into the locked file, for the refusal of a
    /// daemon that finds it held (best effort).
    public static func recordHolder(fd: Int32) {
        let text = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { _ = pwrite(fd, text, text.count, 0) }
    }

    /// `<control socket>.state-dir`: the state directory the running daemon
    /// uses, which is not always the config's `state_dir` (under systemd
    /// `$STATE_DIRECTORY` wins, and an operator's shell does not have it).
    public static func pointerPath(controlSocket: String) -> String { controlSocket + ".state-dir" }

    /// Written by the daemon at start, next to its control socket.
    public static func publish(stateDirectory: String, controlSocket: String) throws {
        try AtomicFile.write(stateDirectory + "\n", to: pointerPath(controlSocket: controlSocket), mode: 0o644)
    }

    /// The state directory a daemon for `config` last used: the one it
    /// published, else the config's.
    public static func stateDirectory(for config: SupervisorConfig) -> String {
        if let bytes = AtomicFile.read(pointerPath(controlSocket: config.control.socket)) {
            let published = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if published.hasPrefix("/") { return published }
        }
        return config.stateDirectory
    }

    /// The pid holding the lock, nil when no process holds it.
    public static func holder(stateDirectory: String) -> Int32? {
        var info = stat()
        guard stat(path(stateDirectory: stateDirectory), &info) == 0,
            let text = ProcessIdentity.readText("/proc/locks")
        else { return nil }
        return holder(inLocks: text, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// From /proc/locks lines such as `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`
    /// (device major:minor in hex, then the inode).
    public static func holder(inLocks text: String, device: UInt64, inode: UInt64) -> Int32? {
        let major = (device >> 8) & 0xfff | (device >> 32) & ~0xfff
        let minor = device & 0xff | (device >> 12) & ~0xff
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // A blocked waiter's line starts "1: ->": skip it.
            guard fields.count >= 6, fields[1] == "FLOCK", let pid = Int32(fields[4]) else { continue }
            let parts = fields[5].split(separator: ":")
            guard parts.count == 3, let lockMajor = UInt64(parts[0], radix: 16), let lockMinor = UInt64(parts[1], radix: 16),
                let lockInode = UInt64(parts[2])
            else { continue }
            if lockMajor == major && lockMinor == minor && lockInode == inode { return pid }
        }
        return nil
    }
}
