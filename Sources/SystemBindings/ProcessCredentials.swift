#if canImport(Glibc)
import Glibc
#endif
import CSupervisorShims

/// An unprivileged identity a child process takes before it runs anything:
/// uid, gid and supplementary groups (from the user database, as `login` and
/// systemd's `User=` give them), and what `HOME`, `USER` and `LOGNAME` say.
public struct ProcessCredentials: Sendable, Equatable, CustomStringConvertible {
    public let user: String
    public let uid: UInt32
    public let gid: UInt32
    public let groups: [UInt32]
    public let home: String

    public init(user: String, uid: UInt32, gid: UInt32, groups: [UInt32], home: String) {
        self.user = user
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home
    }

    /// The variables a login would set for this user.
    public var environment: [String: String] { ["HOME": home, "USER": user, "LOGNAME": user] }

    public var description: String { "\(user) (uid \(uid), gid \(gid))" }

    /// Calls `body` with the C view of these credentials.
    public func withC<R>(_ body: (UnsafePointer<csup_credentials>) throws -> R) rethrows -> R {
        try groups.withUnsafeBufferPointer { groupIDs in
            var c = csup_credentials(uid: uid, gid: gid, groups: groupIDs.baseAddress, n_groups: Int32(groupIDs.count))
            return try body(&c)
        }
    }

    /// Who to run as for `user`/`group` (names or numeric ids): nil for
    /// neither (the caller's own identity) or for root without a group.
    public static func resolve(user: String?, group: String?) throws(CredentialsError) -> ProcessCredentials? {
        guard let user else {
            if let group { throw .groupWithoutUser(group) }
            return nil
        }
        guard let account = UserDatabase.account(named: user) else { throw .noSuchUser(user) }
        var gid = account.gid
        if let group {
            guard let groupID = UserDatabase.groupID(named: group) ?? UInt32(group) else { throw .noSuchGroup(group) }
            gid = groupID
        }
        if account.uid == 0 && group == nil { return nil }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        while getgrouplist(account.name, gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count) + 64)
            count = Int32(groups.count)
        }
        return ProcessCredentials(
            user: account.name, uid: account.uid, gid: gid, groups: Array(groups.prefix(Int(count))), home: account.home)
    }
}

public enum CredentialsError: Error, Sendable, Equatable, CustomStringConvertible {
    case noSuchUser(String)
    case noSuchGroup(String)
    case groupWithoutUser(String)

    public var description: String {
        switch self {
        case .noSuchUser(let name): "no user \"\(name)\" in the user database (getent passwd \(name))"
        case .noSuchGroup(let name): "no group \"\(name)\" in the group database (getent group \(name))"
        case .groupWithoutUser(let name): "group \"\(name)\" is set without a user; set [app] user too (a group alone would still run as root)"
        }
    }
}
