#if canImport(Glibc)
import Glibc
#endif

/// Reads an SQLite database's `PRAGMA user_version` from its file header
/// (a big-endian 32-bit integer at offset 60), the way migration tools
/// record the schema version, without linking SQLite.
enum SQLiteHeader {
    static func userVersion(of path: String) -> Int? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 100)
        guard pread(fd, &header, header.count, 0) == header.count, header.starts(with: Array("SQLite format 3\0".utf8)) else { return nil }
        return header[60..<64].reduce(0) { $0 << 8 | Int($1) }
    }
}
