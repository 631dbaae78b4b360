#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// Who is on the other end of a unix socket (`SO_PEERCRED`).
public struct PeerCredentials: Sendable, Equatable {
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// Whether this peer is root or a member (primary or supplementary) of `groupID`.
    public func isAuthorized(group groupID: UInt32?) -> Bool {
        if uid == 0 { return true }
        guard let groupID else { return false }
        return csup_user_in_group(uid, gid, groupID) == 1
    }
}

public enum UserDatabase {
    /// The numeric id of a group name, or nil when no such group exists.
    public static func groupID(named name: String) -> UInt32? {
        var group = group()
        var result: UnsafeMutablePointer<group>? = nil
        var buffer = [CChar](repeating: 0, count: 16_384)
        let rc = getgrnam_r(name, &group, &buffer, buffer.count, &result)
        guard rc == 0, result != nil else { return nil }
        return group.gr_gid
    }

    public static func userName(uid: UInt32) -> String? {
        var passwd = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16_384)
        let rc = getpwuid_r(uid, &passwd, &buffer, buffer.count, &result)
        guard rc == 0, result != nil, let name = passwd.pw_name else { return nil }
        return String(cString: name)
    }
}
