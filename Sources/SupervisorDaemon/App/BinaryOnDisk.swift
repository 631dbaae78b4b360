#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SupervisorShared
import SystemBindings

/// sha256 of the file at `[app] binary` as it is now, for `status` to say
/// when it is not what runs. Hashed again only when the file changed
/// (device, inode, size, mtime or ctime), so a status costs one stat.
final class BinaryOnDisk: Sendable {
    private struct Key: Equatable {
        var device: UInt64, inode: UInt64, size: Int64, modified: Int, changed: Int
    }

    let path: String
    private let cached = Mutex<(Key, String)?>(nil)

    init(path: String) {
        self.path = path
    }

    func sha256() async -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let key = Key(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            modified: info.st_mtim.tv_sec * 1_000_000_000 + info.st_mtim.tv_nsec,
            changed: info.st_ctim.tv_sec * 1_000_000_000 + info.st_ctim.tv_nsec)
        if let hit = cached.withLock({ $0 }), hit.0 == key { return hit.1 }
        let path = self.path
        guard let digest = await BlockingThread.run({ FileDigest.sha256(path: path) }) else { return nil }
        cached.withLock { $0 = (key, digest) }
        return digest
    }
}
