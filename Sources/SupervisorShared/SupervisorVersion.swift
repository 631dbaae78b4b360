import CSupervisorShims

/// The release both binaries report with `--version`: the repository's
/// `VERSION` file, compiled in from `CSupervisorShims/version.c` (kept equal
/// by a test; `scripts/package.sh --version` builds another).
public enum SupervisorVersion {
    public static let current = String(cString: csup_supervisor_version())
}
