#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// Who is on the other end of a unix socket, as the kernel recorded it when
/// the peer connected (`SO_PEERCRED`, `SO_PEERGROUPS`): not what the user
/// database says today. A process that dropped a group it is listed in has
/// not got it; one given a group it is not listed in has it.
public struct PeerCredentials: Sendable, Equatable {
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32
    /// Supplementary groups (SO_PEERGROUPS), nil when the kernel did not say.
    public let groups: [UInt32]?

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32]?) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// From SO_PEERGROUPS' answer (sorted ascending, the unused tail zeroed).
    /// A zero can be a real gid 0 only at the start, and only if something
    /// non-zero follows or it is the whole list; a list of only zeros is
    /// read as empty (gid 0 then counts only as the primary group).
    public static func groups(fromPeerGroups raw: [UInt32]) -> [UInt32] {
        guard let firstNonZero = raw.firstIndex(where: { $0 != 0 }) else { return [] }
        let end = raw[firstNonZero...].firstIndex(of: 0) ?? raw.endIndex
        return (firstNonZero > 0 ? [0] : []) + raw[firstNonZero..<end]
    }

    /// Whether this peer is root or holds `groupID` (primary or supplementary).
    public func isAuthorized(group groupID: UInt32?) -> Bool {
        if uid == 0 { return true }
        guard let groupID else { return false }
        return gid == groupID || (groups ?? []).contains(groupID)
    }

    /// The same identity for a child that acts on this peer's behalf.
    public var credentials: ProcessCredentials {
        ProcessCredentials(
            user: UserDatabase.userName(uid: uid) ?? "uid \(uid)", uid: uid, gid: gid,
            groups: groups ?? [], home: "/")
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

    public static func groupName(gid: UInt32) -> String? {
        var group = group()
        var result: UnsafeMutablePointer<group>? = nil
        var buffer = [CChar](repeating: 0, count: 16_384)
        let rc = getgrgid_r(gid, &group, &buffer, buffer.count, &result)
        guard rc == 0, result != nil, let name = group.gr_name else { return nil }
        return String(cString: name)
    }

    public struct Account: Sendable {
        public let name: String
        public let uid: UInt32
        public let gid: UInt32
        public let home: String
    }

    /// A user by name, or by numeric uid when no name matches.
    public static func account(named name: String) -> Account? {
        var passwd = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16_384)
        var rc = getpwnam_r(name, &passwd, &buffer, buffer.count, &result)
        if (rc != 0 || result == nil), let uid = UInt32(name) {
            rc = getpwuid_r(uid, &passwd, &buffer, buffer.count, &result)
        }
        guard rc == 0, result != nil, let userName = passwd.pw_name else { return nil }
        return Account(
            name: String(cString: userName), uid: passwd.pw_uid, gid: passwd.pw_gid,
            home: passwd.pw_dir.map { String(cString: $0) } ?? "/")
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
