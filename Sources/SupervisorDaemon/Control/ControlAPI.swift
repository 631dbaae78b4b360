#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import SupervisorShared
import SystemBindings

/// Routes control requests: status, swap, rollback, restart, history, metrics.
public struct ControlAPI: ControlHandling {
    let supervisor: Supervisor
    let journal: StateJournal
    let proxySummary: String
    let binaryOnDisk: BinaryOnDisk

    public init(supervisor: Supervisor, journal: StateJournal, proxySummary: String) {
        self.supervisor = supervisor
        self.journal = journal
        self.proxySummary = proxySummary
        binaryOnDisk = BinaryOnDisk(path: supervisor.config.app.binary)
    }

    public func handle(_ request: ControlRequest) async -> ControlResponse {
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        switch (request.method, path) {
        case ("GET", "/status"):
            let onDisk = await binaryOnDisk.sha256()
            var report = await supervisor.status(proxy: proxySummary)
            report.lastSwap = journal.lastEntry().map(StatusReport.LastSwap.init)
            // While an operation moves files, the file and what runs differ on purpose.
            if let onDisk, let running = report.sha256, onDisk != running, !report.phase.contains(":") {
                report.binaryOnDiskSHA256 = onDisk
            }
            return .json(report)
        case ("POST", "/swap"):
            struct SwapBody: Decodable { let binary: String }
            guard let body = try? JSONDecoder().decode(SwapBody.self, from: Data(request.body)) else {
                return .error(ControlError(.badRequest, "POST /swap needs a JSON body {\"binary\": \"/absolute/path\"}"))
            }
            // A daemon that is root opens the file as its caller; one that is not
            // cannot take anyone's identity, and its callers have at least its rights.
            let opener = request.peer.flatMap { peer in geteuid() == 0 && peer.uid != 0 ? peer.credentials : nil }
            return stream(await supervisor.request(.swap, source: body.binary, callerUID: request.peer?.uid, opener: opener))
        case ("POST", "/rollback"):
            var body: RollbackRequest?
            if !request.body.isEmpty {
                guard let decoded = try? JSONDecoder().decode(RollbackRequest.self, from: Data(request.body)) else {
                    return .error(ControlError(.badRequest, "POST /rollback takes no body, or a JSON object {\"to\": \"VERSION|SHA256-PREFIX\", \"force\": true, \"restore_backup\": true}"))
                }
                body = decoded
            }
            return await rollback(to: body?.to, force: body?.force ?? false, restoreBackup: body?.restoreBackup ?? false, callerUID: request.peer?.uid)
        case ("GET", "/releases"):
            let store = releases
            let ledger = await BlockingThread.run { store.load() }
            let status = await supervisor.status(proxy: proxySummary)
            return .json(ReleasesReport(ledger: ledger, serving: status.sha256, backup: status.backup?.sha256, keep: supervisor.config.app.keepReleases))
        case ("POST", "/restart"):
            return stream(await supervisor.request(.restart, source: nil, callerUID: request.peer?.uid))
        case ("GET", "/history"):
            return .json(journal.history())
        case ("GET", "/metrics"):
            return ControlResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: .full(Array(await supervisor.metricsText().utf8)))
        case (_, "/status"), (_, "/history"), (_, "/metrics"), (_, "/releases"):
            return .error(ControlError(.methodNotAllowed, "\(request.method) \(path): use GET"))
        case (_, "/swap"), (_, "/rollback"), (_, "/restart"):
            return .error(ControlError(.methodNotAllowed, "\(request.method) \(path): use POST"))
        default:
            return .error(ControlError(.notFound, "no such endpoint: \(request.method) \(path) (try GET /status, POST /swap, POST /rollback, POST /restart, GET /history, GET /releases, GET /metrics)"))
        }
    }

    private var releases: ReleaseStore { ReleaseStore(stateDirectory: supervisor.config.stateDirectory) }

    /// A rollback to `.bak` or to a kept release (`to`), refused when it would
    /// cross a schema change unless forced or restoring the release's backup.
    /// What was checked (the serving and target binaries) goes with the request,
    /// which is refused should either have changed before it is claimed.
    private func rollback(to selector: String?, force: Bool, restoreBackup: Bool, callerUID: UInt32?) async -> ControlResponse {
        let store = releases
        var source: String?
        var target: String?
        if let selector {
            switch await BlockingThread.run({ ReleaseSelection.resolve(selector, in: store) }) {
            case .failure(let error): return .error(error)
            case .success(let found):
                source = found.path
                target = found.sha256
            }
        }
        let status = await supervisor.status(proxy: proxySummary)
        target = target ?? status.backup?.sha256
        let schemaField = supervisor.config.health.schemaField
        guard schemaField != nil || restoreBackup || selector != nil else {
            return stream(await supervisor.request(.rollback, source: nil, callerUID: callerUID))
        }
        let ledger = await BlockingThread.run { store.load() }
        let decision = RollbackSchemaGuard.decide(
            ledger: ledger, schemaField: schemaField, serving: status.sha256, target: target, force: force, restoreBackup: restoreBackup)
        var restore: String?
        switch decision {
        case .refuse(let error): return .error(error)
        case .proceed: break
        case .restore(let backup):
            guard !supervisor.config.hooks.restore.isEmpty else {
                return .error(ControlError(.hookFailed, "--restore-backup needs [hooks] restore: the command that puts \(backup.path) back (it gets it as SUPERVISOR_BACKUP_DIR); nothing was changed"))
            }
            restore = backup.path
            // A restore is a swap to the file, as a stop-start, even inside a warm hold.
            source = source ?? BinaryCommitter.backupPath(for: supervisor.config.app.binary)
        }
        return stream(
            await supervisor.request(
                .rollback, source: source, callerUID: callerUID, checked: .init(serving: status.sha256, target: target), restoreBackup: restore))
    }

    private func stream(_ started: Result<AsyncStream<[UInt8]>, ControlError>) -> ControlResponse {
        switch started {
        case .success(let lines):
            return ControlResponse(status: 200, contentType: "application/x-ndjson", body: .stream(lines))
        case .failure(let error):
            return .error(error)
        }
    }
}
