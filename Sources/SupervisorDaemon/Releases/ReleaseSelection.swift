#if canImport(Glibc)
import Glibc
#endif
import SupervisorCore

/// `rollback --to VERSION|SHA256-PREFIX`: the kept release's file, or a
/// refusal that lists the candidates.
enum ReleaseSelection {
    static func resolve(_ selector: String, in store: ReleaseStore) -> Result<(path: String, sha256: String), ControlError> {
        let ledger = store.load()
        func list(_ releases: [ReleaseLedger.Release]) -> String {
            releases.map { "\($0.version.map { UntrustedText.escaped($0) } ?? "(no version)") \($0.sha256.prefix(12)) served \($0.servedAt)" }
                .joined(separator: "; ")
        }
        switch ledger.select(selector) {
        case .found(let release):
            let path = store.binaryPath(release.sha256)
            guard access(path, F_OK) == 0 else {
                return .failure(ControlError(.unknownRelease, "release \(selector) (sha256 \(release.sha256.prefix(12))) is in the ledger but its file \(path) is gone; nothing was changed"))
            }
            return .success((path, release.sha256))
        case .ambiguous(let candidates):
            return .failure(ControlError(.ambiguousRelease, "\"\(UntrustedText.escaped(selector))\" matches \(candidates.count) kept releases: \(list(candidates)); give more of the sha256"))
        case .unknown(let kept):
            let what = kept.isEmpty ? "no releases are kept yet (they are recorded as swaps commit)" : "kept: \(list(kept))"
            return .failure(ControlError(.unknownRelease, "no kept release has the version or sha256 prefix \"\(UntrustedText.escaped(selector))\"; \(what)"))
        }
    }
}
