#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SupervisorCore
import SupervisorShared

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
            return stream(await supervisor.request(.rollback, source: nil, callerUID: request.peer?.uid))
        case ("POST", "/restart"):
            return stream(await supervisor.request(.restart, source: nil, callerUID: request.peer?.uid))
        case ("GET", "/history"):
            return .json(journal.history())
        case ("GET", "/metrics"):
            return ControlResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: .full(Array(await supervisor.metricsText().utf8)))
        case (_, "/status"), (_, "/history"), (_, "/metrics"):
            return .error(ControlError(.methodNotAllowed, "\(request.method) \(path): use GET"))
        case (_, "/swap"), (_, "/rollback"), (_, "/restart"):
            return .error(ControlError(.methodNotAllowed, "\(request.method) \(path): use POST"))
        default:
            return .error(ControlError(.notFound, "no such endpoint: \(request.method) \(path) (try GET /status, POST /swap, POST /rollback, POST /restart, GET /history, GET /metrics)"))
        }
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
