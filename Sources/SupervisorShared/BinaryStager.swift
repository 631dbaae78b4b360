#if canImport(Glibc)
import Glibc
#endif
import Crypto
import SupervisorCore
import SystemBindings

/// Step 2 of a swap: open the given file once, with the caller's rights,
/// check it on the open fd, and copy it to `<binary>.new` beside the live
/// binary (root-owned, the source's mode less setuid/setgid and group/world
/// write, fsync, sha256 while copying). The user's path is never executed,
/// so a file replaced after the check changes nothing; the staged file's
/// identity (device and inode of a root-owned file nobody else may write) is
/// checked again before it starts and before it is committed.
public enum BinaryStager {
    public struct Staged: Sendable, Equatable {
        public let path: String
        public let sha256: String
        public let size: Int
        /// The staged file itself: what `verify` compares the path with.
        public let device: UInt64
        public let inode: UInt64
        public let mode: mode_t
    }

    public static func stagedPath(for binary: String) -> String { binary + ".new" }

    /// Nil when `path` is fit to name a file in messages, logs and JSON;
    /// else why not (a NUL, newline or other control character).
    public static func pathProblem(_ path: String) -> SwapError? {
        guard let bad = path.unicodeScalars.first(where: UntrustedText.isControl) else {
            return nil
        }
        return SwapError(
            .binaryPathInvalid,
            "the path \(UntrustedText.quoted(path)) contains a control character (U+\(String(bad.value, radix: 16, uppercase: true).leftPadded(4))); rename the file")
    }

    /// - Parameters:
    ///   - opener: whose rights the source is opened with (nil: this process's).
    ///   - group: the staged copy's group (the app's, so a 0750 release runs); nil: root.
    public static func stage(
        source: String, liveBinary: String, opener: ProcessCredentials? = nil, group: UInt32? = nil
    ) throws(SwapError) -> Staged {
        if let problem = pathProblem(source) { throw problem }
        let fd: Int32
        switch FileOpener.open(source, as: opener) {
        case .failure(let error):
            let who = opener.map { " as \($0.user)" } ?? ""
            switch error.code {
            case ENOENT, ENOTDIR:
                throw SwapError(.binaryNotFound, "\(source) does not exist")
            case EACCES, EPERM:
                throw SwapError(.binaryNotReadable, "cannot open \(source)\(who): permission denied; the file is read with the caller's rights (ls -l it, and every directory above it)")
            default:
                throw SwapError(.binaryNotFound, "cannot open \(source)\(who): \(error.description)")
            }
        case .success(.notRegular(let kind, let descriptor)):
            close(descriptor)
            let what =
                switch kind {
                case S_IFDIR: "a directory"
                case S_IFIFO: "a FIFO (named pipe)"
                case S_IFSOCK: "a socket"
                case S_IFCHR, S_IFBLK: "a device"
                default: "not a regular file"
                }
            throw SwapError(.binaryNotRegular, "\(source) is \(what); give the path of the new binary itself")
        case .success(.regular(let descriptor)):
            fd = descriptor
        }
        defer { close(fd) }

        // Checks on what was opened (symlinks already followed), not on the name.
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SwapError(.stageFailed, "cannot inspect \(source): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o111 != 0 else {
            throw SwapError(.binaryNotExecutable, "\(source) is not executable (mode \(String(info.st_mode & 0o777, radix: 8))); chmod +x it first")
        }
        guard info.st_size > 0 else {
            throw SwapError(.binaryEmpty, "\(source) is empty (0 bytes); was the upload cut short?")
        }
        // Never wider than the source; no setuid/setgid, nobody but root may write.
        let mode = info.st_mode & 0o755
        if group != nil, mode & 0o011 == 0 {
            throw SwapError(
                .binaryNotExecutable,
                "\(source) is executable by its owner only (mode \(String(mode, radix: 8))); the app runs as [app] user and the staged copy is root's in the app's group, so it needs the group's execute bit: chmod g+rx (or 755) it first")
        }

        let target = stagedPath(for: liveBinary)
        unlink(target)  // a stale .new is ours to replace
        let out = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard out >= 0 else {
            throw SwapError(.stageFailed, "cannot create \(target): \(String(cString: strerror(errno)))")
        }
        var failure: String?
        var copied = FileCopy.Copied(sha256: "", size: 0)
        switch FileCopy.copyHashing(from: fd, to: out, source: source, target: target) {
        case .success(let result): copied = result
        case .failure(let error): failure = error.description
        }
        var staged = stat()
        if failure == nil {
            let owned = geteuid() != 0 || fchown(out, 0, group ?? 0) == 0
            if !owned || fchmod(out, mode) != 0 {
                failure = "cannot set the owner and mode of \(target): \(String(cString: strerror(errno)))"
            } else if fsync(out) != 0 {
                failure = "cannot fsync \(target): \(String(cString: strerror(errno)))"
            } else if fstat(out, &staged) != 0 {
                failure = "cannot inspect \(target): \(String(cString: strerror(errno)))"
            }
        }
        close(out)
        if let failure {
            unlink(target)
            throw SwapError(.stageFailed, failure)
        }
        AtomicFile.syncDirectory(of: target)
        return Staged(
            path: target, sha256: copied.sha256, size: copied.size, device: UInt64(staged.st_dev), inode: UInt64(staged.st_ino),
            mode: staged.st_mode & 0o7777)
    }

    /// Nil when `<binary>.new` is still the file that was staged: same device
    /// and inode, root-owned, writable by nobody else (so its bytes are the
    /// ones hashed); else the error that ends the swap. (Owned by root: by
    /// this process's user, for a daemon not run as root.)
    public static func verify(_ staged: Staged) -> SwapError? {
        var info = stat()
        guard lstat(staged.path, &info) == 0 else {
            return SwapError(.stagedBinaryReplaced, "\(staged.path) is gone (\(String(cString: strerror(errno)))): it was removed after it was staged; nothing unchecked was run or committed")
        }
        guard UInt64(info.st_dev) == staged.device, UInt64(info.st_ino) == staged.inode,
            info.st_uid == geteuid(), info.st_mode & 0o022 == 0, (info.st_mode & S_IFMT) == S_IFREG
        else {
            return SwapError(.stagedBinaryReplaced, "\(staged.path) was replaced or changed after it was staged (sha256 \(staged.sha256.prefix(12))); only root may write the binary's directory. Nothing unchecked was run or committed")
        }
        return nil
    }

    public static func removeStaged(for liveBinary: String) {
        unlink(stagedPath(for: liveBinary))
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
