#if canImport(Glibc)
import Glibc
#endif
import Crypto

/// Copies a file's bytes between two descriptors while hashing them: the
/// staged copy of a new binary and the kept copy of a release are the bytes
/// that were hashed, never read twice.
public enum FileCopy {
    public struct Copied: Sendable, Equatable {
        public let sha256: String
        public let size: Int
    }

    /// Copies what is left of `input` to `output`; the names are for the message.
    public static func copyHashing(from input: Int32, to output: Int32, source: String, target: String) -> Result<Copied, CopyFailure> {
        var hasher = SHA256()
        var size = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(CopyFailure("cannot read \(source): \(String(cString: strerror(errno)))"))
            }
            if count == 0 { break }
            hasher.update(data: buffer[0..<count])
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { write(output, $0.baseAddress! + offset, count - offset) }
                if written < 0 {
                    if errno == EINTR { continue }
                    return .failure(CopyFailure("cannot write \(target): \(String(cString: strerror(errno)))"))
                }
                offset += written
            }
            size += count
        }
        let digest = hasher.finalize().map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        return .success(Copied(sha256: digest, size: size))
    }

    public struct CopyFailure: Error, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}
