/// The release both binaries report with `--version`. Kept equal to the
/// repository's `VERSION` file by a test.
public enum SupervisorVersion {
    public static let current = "0.14.0"
}
