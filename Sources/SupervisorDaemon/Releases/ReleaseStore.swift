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
    /// A ledger that does not parse is moved aside first (`releases.json.corrupt-<pid>-<time>`),
    /// never silently replaced.
    public func update<T>(_ change: (inout ReleaseLedger) -> T) throws -> T {
        try Self.writer.withLock { _ in
            if let bytes = AtomicFile.read(ledgerPath), (try? JSONDecoder().decode(ReleaseLedger.self, from: Data(bytes))) == nil {
                let aside = "\(ledgerPath).corrupt-\(getpid())-\(Int(Date().timeIntervalSince1970))"
                if rename(ledgerPath, aside) != 0 { throw StoreError("\(ledgerPath) does not parse and cannot be moved aside: \(String(cString: strerror(errno)))") }
            }
            var ledger = load()
            let outcome = change(&ledger)
            try save(ledger)
            return outcome
        }
    }

    /// Copies `path` to `releases/<sha256>` unless it is there already, with its
    /// mode and group (root-owned, writable by root only). The copy is hashed
    /// before it takes the name: bytes that are not `sha256` (the file replaced
    /// meanwhile) are never kept under it.
    public func keep(_ path: String, sha256: String) throws {
        let target = binaryPath(sha256)
        if access(target, F_OK) == 0 { return }
        try AtomicFile.makeDirectories(releasesDirectory, mode: 0o750)
        let input = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard input >= 0 else { throw StoreError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { throw StoreError("\(path) is not a regular file") }
        let temporary = "\(target).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let output = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw StoreError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var failure: String?
        switch FileCopy.copyHashing(from: input, to: output, source: path, target: temporary) {
        case .success(let copied) where copied.sha256 != sha256:
            failure = "\(path) changed while it was kept (sha256 \(copied.sha256.prefix(12)), not \(sha256.prefix(12))); not kept"
        case .success: break
        case .failure(let error): failure = error.description
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

    /// Removes a backup directory this store made: one name right under
    /// `backups/`, walked with `openat`/`unlinkat` and `O_NOFOLLOW`, so a
    /// symlink the hooks' user put inside (even mid-walk) is removed, never followed.
    public func removeBackup(_ path: String) {
        let prefix = backupsDirectory + "/"
        guard path.hasPrefix(prefix) else { return }
        let name = String(path.dropFirst(prefix.count))
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else { return }
        let parent = open(backupsDirectory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard parent >= 0 else { return }
        defer { close(parent) }
        Self.removeTree(Array(name.utf8CString), in: parent, depth: 0)
    }

    /// Deeper than this, a backup is left for a person to remove (each level holds a descriptor).
    static let removalDepthLimit = 64

    /// Removes `name` (raw bytes, NUL-terminated: any file name the hooks wrote) in the
    /// directory `parent`: a file or symlink by unlinkat, a directory by emptying it
    /// through its own descriptor first. False when something was left.
    @discardableResult
    static func removeTree(_ name: [CChar], in parent: Int32, depth: Int) -> Bool {
        if unlinkat(parent, name, 0) == 0 || errno == ENOENT { return true }
        guard depth < removalDepthLimit else { return false }
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        var complete = true
        let listingFD = dup(fd)
        if listingFD >= 0, let listing = fdopendir(listingFD) {
            var names: [[CChar]] = []
            while let entry = readdir(listing) {
                let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    Array(raw.bindMemory(to: CChar.self).prefix { $0 != 0 }) + [0]
                }
                if entryName != [46, 0] && entryName != [46, 46, 0] { names.append(entryName) }
            }
            closedir(listing)
            for entryName in names where !removeTree(entryName, in: fd, depth: depth + 1) { complete = false }
        } else {
            if listingFD >= 0 { close(listingFD) }
            complete = false
        }
        close(fd)
        return unlinkat(parent, name, AT_REMOVEDIR) == 0 && complete
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
