#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore

/// Step 8: the previous binary becomes `<binary>.bak`, the staged copy becomes
/// `<binary>`. `<binary>` exists at every instant: the old one is hard-linked
/// to `.bak` (through a temp name, so `.bak` is replaced atomically), then
/// `.new` is renamed over `<binary>`. Both in one directory, then fsynced.
public enum BinaryCommitter {
    public static func backupPath(for binary: String) -> String { binary + ".bak" }

    /// `keepingBackup`: a restart's commit, which puts the staged copy of the
    /// live binary in its place and leaves `.bak` as it is. Whatever the
    /// action, a staged copy with the live binary's very bytes leaves `.bak`
    /// alone too (it would only lose the previous release), which also holds
    /// for a restart a recovery finishes without its journal.
    /// Returns whether `.bak` now holds the previous binary.
    @discardableResult
    public static func commit(liveBinary: String, keepingBackup: Bool = false) throws(SwapError) -> Bool {
        let staged = BinaryStager.stagedPath(for: liveBinary)
        let backup = backupPath(for: liveBinary)
        let linkTemp = backup + ".tmp-\(getpid())"
        unlink(linkTemp)
        let keep = keepingBackup || sameBytes(staged, liveBinary)
        if keep {
            // Nothing to keep: the staged copy has the live binary's bytes.
        } else if link(liveBinary, linkTemp) == 0 {
            if rename(linkTemp, backup) != 0 {
                let reason = String(cString: strerror(errno))
                unlink(linkTemp)
                throw SwapError(.commitFailed, "cannot keep the previous binary as \(backup): \(reason)")
            }
        } else if errno != ENOENT {
            throw SwapError(.commitFailed, "cannot keep the previous binary as \(backup): \(String(cString: strerror(errno)))")
        }
        if rename(staged, liveBinary) != 0 {
            throw SwapError(.commitFailed, "cannot move \(staged) to \(liveBinary): \(String(cString: strerror(errno)))")
        }
        AtomicFile.syncDirectory(of: liveBinary)
        return !keep
    }

    /// Same size, then same sha256 (hashing only when the sizes match).
    static func sameBytes(_ a: String, _ b: String) -> Bool {
        var first = stat(), second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0, first.st_size == second.st_size else { return false }
        guard let left = FileDigest.sha256(path: a) else { return false }
        return left == FileDigest.sha256(path: b)
    }
}
