#if canImport(Glibc)
import Glibc
#endif
import Crypto
import SupervisorCore

/// Step 2 of a swap: open the given file once, check it on the open fd, and
/// copy it to `<binary>.new` beside the live binary (mode 0755, fsync,
/// sha256 while copying). The user's path is never executed, so a file
/// replaced after the check changes nothing.
public enum BinaryStager {
    public struct Staged: Sendable, Equatable {
        public let path: String
        public let sha256: String
        public let size: Int
    }

    public static func stagedPath(for binary: String) -> String { binary + ".new" }

    public static func stage(source: String, liveBinary: String) throws(SwapError) -> Staged {
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            if errno == ENOENT {
                throw SwapError(.binaryNotFound, "\(source) does not exist")
            }
            throw SwapError(.binaryNotFound, "cannot open \(source): \(reason)")
        }
        defer { close(fd) }

        // Checks on what was opened (symlinks already followed), not on the name.
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SwapError(.stageFailed, "cannot inspect \(source): \(String(cString: strerror(errno)))")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            let what = kind == S_IFDIR ? "a directory" : "not a regular file"
            throw SwapError(.binaryNotRegular, "\(source) is \(what); give the path of the new binary itself")
        }
        guard info.st_mode & 0o111 != 0 else {
            throw SwapError(.binaryNotExecutable, "\(source) is not executable (mode \(String(info.st_mode & 0o777, radix: 8))); chmod +x it first")
        }
        guard info.st_size > 0 else {
            throw SwapError(.binaryEmpty, "\(source) is empty (0 bytes); was the upload cut short?")
        }

        let target = stagedPath(for: liveBinary)
        unlink(target)  // a stale .new is ours to replace
        let out = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o755)
        guard out >= 0 else {
            throw SwapError(.stageFailed, "cannot create \(target): \(String(cString: strerror(errno)))")
        }
        var hasher = SHA256()
        var size = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var failure: String?
        copy: while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                failure = "cannot read \(source): \(String(cString: strerror(errno)))"
                break
            }
            if count == 0 { break }
            hasher.update(data: buffer[0..<count])
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { write(out, $0.baseAddress! + offset, count - offset) }
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = "cannot write \(target): \(String(cString: strerror(errno)))"
                    break copy
                }
                offset += written
            }
            size += count
        }
        if failure == nil {
            fchmod(out, 0o755)
            if fsync(out) != 0 { failure = "cannot fsync \(target): \(String(cString: strerror(errno)))" }
        }
        close(out)
        if let failure {
            unlink(target)
            throw SwapError(.stageFailed, failure)
        }
        AtomicFile.syncDirectory(of: target)
        let digest = hasher.finalize().map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        return Staged(path: target, sha256: digest, size: size)
    }

    public static func removeStaged(for liveBinary: String) {
        unlink(stagedPath(for: liveBinary))
    }
}
