#if canImport(Glibc)
import Glibc
#endif

/// Where the control socket may be bound: a directory only root can change,
/// so nobody can swap the socket's file for a symlink between `bind` and the
/// `chmod`/`chown` that follow. Every directory above it must be root's too,
/// both as the path is written and as it resolves (a symlink in a directory
/// someone else owns could be re-pointed); one above may be world-writable
/// only with the sticky bit (`/tmp`), which keeps others from renaming what
/// root put there. A directory that does not exist yet is judged by the
/// nearest one that does (the daemon creates the rest, root's, 0755).
public enum SocketDirectory {
    /// Nil when `socketPath`'s directory is safe; else what is wrong, for a person.
    public static func problem(socketPath: String) -> String? {
        var directory = AtomicFile.directoryName(socketPath)
        var missing = false
        var info = stat()
        while stat(directory, &info) != 0 {
            guard errno == ENOENT, directory != "/" else {
                return "cannot inspect \(directory): \(String(cString: strerror(errno)))"
            }
            directory = AtomicFile.directoryName(directory)
            missing = true
        }
        if let problem = chainProblem(from: directory, immediate: !missing) { return problem }
        guard let resolved = realpath(directory, nil) else {
            return "cannot resolve \(directory): \(String(cString: strerror(errno)))"
        }
        defer { free(resolved) }
        let real = String(cString: resolved)
        return real == directory ? nil : chainProblem(from: real, immediate: !missing)
    }

    /// Walks from `start` up to `/`; `immediate`: `start` holds the socket itself.
    private static func chainProblem(from start: String, immediate: Bool) -> String? {
        var current = start
        var first = immediate
        while true {
            var info = stat()
            guard stat(current, &info) == 0 else {
                return "cannot inspect \(current): \(String(cString: strerror(errno)))"
            }
            let writableByOthers = info.st_mode & 0o022 != 0
            let sticky = info.st_mode & S_ISVTX != 0
            let what = first ? "the control socket's directory \(current)" : "\(current) (above the control socket)"
            if info.st_uid != 0 && info.st_uid != geteuid() {
                return "\(what) is owned by uid \(info.st_uid), not root: its owner could replace the socket; use a root-owned directory such as /run/supervisor"
            }
            if writableByOthers && (first || !sticky) {
                return "\(what) is writable by others (mode \(String(info.st_mode & 0o7777, radix: 8))): they could replace the socket with a symlink; use a directory only root can write, such as /run/supervisor"
            }
            if current == "/" { return nil }
            current = AtomicFile.directoryName(current)
            first = false
        }
    }
}
