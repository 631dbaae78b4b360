#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore
import SupervisorShared

/// Checks a staged binary can run on this host before anything starts it:
/// an ELF file must match the host's class and machine and its interpreter
/// (dynamic loader) must exist; a script's `#!` interpreter must exist.
enum BinaryInspector {
    /// ELF e_machine values for the hosts we run on.
    static let machineNames: [UInt16: String] = [
        3: "x86 (32-bit)", 40: "ARM (32-bit)", 62: "x86-64", 183: "AArch64", 243: "RISC-V", 8: "MIPS", 21: "PowerPC64", 22: "s390",
    ]

    static var hostMachine: UInt16 {
        #if arch(x86_64)
        return 62
        #elseif arch(arm64)
        return 183
        #elseif arch(riscv64)
        return 243
        #else
        return 0
        #endif
    }

    /// Nil when the file looks runnable here; else what is wrong. `source` names it for people.
    static func problem(with path: String, source: String) -> SwapError? {
        guard let header = readPrefix(path, count: 4096) else {
            return SwapError(.preflightFailed, "cannot read the staged copy of \(source)")
        }
        if header.starts(with: [0x7F, 0x45, 0x4C, 0x46]) {  // "\u{7F}ELF"
            return elfProblem(header, path: path, source: source)
        }
        if header.starts(with: [0x23, 0x21]) {  // "#!"
            return shebangProblem(header, source: source)
        }
        return SwapError(.preflightFailed, "\(source) is neither an ELF binary nor a script starting with #!; the kernel cannot run it")
    }

    static func elfProblem(_ header: [UInt8], path: String, source: String) -> SwapError? {
        guard header.count >= 64 else { return SwapError(.preflightFailed, "\(source) is a truncated ELF file") }
        let is64 = header[4] == 2
        let littleEndian = header[5] == 1
        guard littleEndian else { return SwapError(.preflightFailed, "\(source) is a big-endian ELF binary; this host is little-endian") }
        let machine = UInt16(header[18]) | UInt16(header[19]) << 8
        if machine != hostMachine {
            let theirs = machineNames[machine] ?? "machine \(machine)"
            let ours = machineNames[hostMachine] ?? "machine \(hostMachine)"
            return SwapError(.preflightFailed, "\(source) is built for \(theirs), this host is \(ours); build it for this host")
        }
        guard is64 == (MemoryLayout<Int>.size == 8) else {
            return SwapError(.preflightFailed, "\(source) is a \(is64 ? "64" : "32")-bit ELF binary; this host runs \(MemoryLayout<Int>.size * 8)-bit ones")
        }
        if let interpreter = elfInterpreter(path: path), access(interpreter, X_OK) != 0 {
            return SwapError(.preflightFailed, "\(source) needs the dynamic loader \(UntrustedText.quoted(interpreter)), which this host does not have (built for another libc, e.g. musl vs glibc?)")
        }
        return nil
    }

    /// PT_INTERP of a 64-bit little-endian ELF file.
    static func elfInterpreter(path: String) -> String? {
        guard let bytes = readPrefix(path, count: 1 << 16), bytes.count >= 64 else { return nil }
        func u16(_ offset: Int) -> Int { Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 }
        func u64(_ offset: Int) -> Int {
            (0..<8).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
        }
        let programHeaders = u64(32)
        let entrySize = u16(54)
        let count = u16(56)
        for index in 0..<count {
            let base = programHeaders + index * entrySize
            guard base + 56 <= bytes.count else { return nil }
            let type = Int(bytes[base]) | Int(bytes[base + 1]) << 8 | Int(bytes[base + 2]) << 16 | Int(bytes[base + 3]) << 24
            guard type == 3 else { continue }  // PT_INTERP
            let offset = u64(base + 8), size = u64(base + 32)
            guard offset + size <= bytes.count, size > 1 else { return nil }
            return String(decoding: bytes[offset..<(offset + size - 1)], as: UTF8.self)
        }
        return nil
    }

    static func shebangProblem(_ header: [UInt8], source: String) -> SwapError? {
        let line = header.dropFirst(2).prefix { $0 != 0x0A }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        guard let interpreter = text.split(separator: " ").first.map(String.init), !interpreter.isEmpty else {
            return SwapError(.preflightFailed, "\(source) starts with #! but names no interpreter")
        }
        if access(interpreter, X_OK) != 0 {
            return SwapError(.preflightFailed, "\(source) is a script for \(UntrustedText.quoted(interpreter)), which does not exist or is not executable on this host")
        }
        return nil
    }

    static func readPrefix(_ path: String, count: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: count)
        let read = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, count) }
        guard read >= 0 else { return nil }
        return Array(buffer.prefix(read))
    }
}
