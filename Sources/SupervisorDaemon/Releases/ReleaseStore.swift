#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import SupervisorShared
import Synchronization

/// The releases and backups under the state directory:
///
///     STATE_DIR/releases.json        the ledger (newest first)
///     STATE_DIR/releases/<sha256>    each binary that served (content-addressed)
///     STATE_DIR/backups/<swap id>/   each swap's SUPERVISOR_BACKUP_DIR
///
/// Blocking file work: called on a blocking thread, never on an actor's turn.
public struct ReleaseStore: Sendable {
    public let stateDirectory: String

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    public var ledgerPath: String { stateDirectory + "/releases.json" }
    public var releasesDirectory: String { stateDirectory + "/releases" }
    public var backupsDirectory: String { stateDirectory + "/backups" }

    public func binaryPath(_ sha256: String) -> String { releasesDirectory + "/" + sha256 }

    public func load() -> ReleaseLedger {
        guard let bytes = AtomicFile.read(ledgerPath), let ledger = try? JSONDecoder().decode(ReleaseLedger.self, from: Data(bytes)) else {
            return ReleaseLedger()
        }
        return ledger
    }

    public func save(_ ledger: ReleaseLedger) throws {
        try AtomicFile.write(ControlJSON.encode(ledger), to: ledgerPath, mode: 0o640)
    }

    /// One change of the ledger at a time in this process (read, change, write).
    private static let writer = Mutex(())

    /// Reads the ledger, lets `change` edit it (and move files), writes it back.
    public func update<T>(_ change: (inout ReleaseLedger) -> T) throws -> T {
        try Self.writer.withLock { _ in
            var ledger = load()
            let outcome = change(&ledger)
            try save(ledger)
            return outcome
        }
    }

    /// Copies `path` (whose sha256 is `sha256`) to `releases/<sha256>` unless it is
    /// there already, with its mode and group (root-owned, writable by root only).
    public func keep(_ path: String, sha256: String) throws {
        let target = binaryPath(sha256)
        if access(target, F_OK) == 0 { return }
        try AtomicFile.makeDirectories(releasesDirectory, mode: 0o750)
        let input = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard input >= 0 else { throw StoreError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { throw StoreError("\(path) is not a regular file") }
        let temporary = target + ".tmp"
        unlink(temporary)
        let output = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw StoreError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var failure: String?
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        copy: while true {
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                failure = "cannot read \(path): \(String(cString: strerror(errno)))"
                break
            }
            if count == 0 { break }
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { write(output, $0.baseAddress! + offset, count - offset) }
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = "cannot write \(temporary): \(String(cString: strerror(errno)))"
                    break copy
                }
                offset += written
            }
        }
        if failure == nil {
            _ = geteuid() == 0 ? fchown(output, 0, info.st_gid) : 0
            if fchmod(output, info.st_mode & 0o755) != 0 || fsync(output) != 0 {
                failure = "cannot finish \(temporary): \(String(cString: strerror(errno)))"
            }
        }
        close(output)
        if failure == nil, rename(temporary, target) != 0 { failure = "cannot rename \(temporary): \(String(cString: strerror(errno)))" }
        if let failure {
            unlink(temporary)
            throw StoreError(failure)
        }
        AtomicFile.syncDirectory(of: target)
    }

    /// A fresh, empty `backups/<swap id>/` for one swap's hooks, owned by
    /// whoever the hooks run as (nil: root), 0700.
    public func makeBackupDirectory(swapID: String, owner: (uid: UInt32, gid: UInt32)?) throws -> String {
        try AtomicFile.makeDirectories(backupsDirectory, mode: 0o711)
        let path = backupsDirectory + "/" + swapID
        guard mkdir(path, 0o700) == 0 else { throw StoreError("cannot create \(path): \(String(cString: strerror(errno)))") }
        if let owner, chown(path, owner.uid, owner.gid) != 0 {
            let reason = String(cString: strerror(errno))
            rmdir(path)
            throw StoreError("cannot give \(path) to uid \(owner.uid): \(reason)")
        }
        return path
    }

    /// Bytes under `path` (regular files; symlinks not followed), and whether it holds anything.
    public static func size(of path: String) -> (bytes: Int64, entries: Int) {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return (0, 0) }
        var bytes: Int64 = 0
        var entries = 0
        for case let name as String in walker {
            entries += 1
            var info = stat()
            if lstat(path + "/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFREG { bytes += Int64(info.st_size) }
        }
        return (bytes, entries)
    }

    /// Removes a backup directory this store made (nothing outside `backups/`).
    public func removeBackup(_ path: String) {
        guard path.hasPrefix(backupsDirectory + "/"), !path.contains("/../") else { return }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Removes a dropped release's binary and backup.
    public func remove(_ release: ReleaseLedger.Release) {
        unlink(binaryPath(release.sha256))
        if let backup = release.backup { removeBackup(backup.path) }
    }

    public struct StoreError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}
