#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

@main
struct DemoApp {
    static func main() {
        let environment = ProcessInfo.processInfo.environment

        let options: DemoOptions
        switch DemoOptions.parse(BakedArguments.ofRunningExecutable() + CommandLine.arguments.dropFirst(), environment: environment) {
        case .success(let parsed): options = parsed
        case .failure(let message):
            if message.isEmpty {
                print(DemoOptions.usage)
                exit(0)
            }
            log("error: \(message)\n\n\(DemoOptions.usage)")
            exit(2)
        }
        if options.printVersion {
            print(options.versionTag)
            exit(0)
        }
        if options.crashAtStart {
            log("demo-app \(options.versionTag): crashing at start (--crash-at-start)")
            exit(3)
        }
        if let path = options.lockFile {
            // Taken first, the way an app opens its database before it listens.
            if case .failure(let message) = ExclusiveLock.take(path) {
                log("demo-app \(options.versionTag): \(message)")
                exit(5)
            }
        }
        if options.startDelayMilliseconds > 0 {
            usleep(UInt32(options.startDelayMilliseconds) * 1000)
        }
        run(options, environment: environment)
    }

    static func run(_ options: DemoOptions, environment: [String: String]) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let drainer = DrainController()
        let fullyShutdown = group.next().makePromise(of: Void.self)

        let versionTag = options.versionTag
        let failHealth = options.failHealth
        let responseDelay = TimeAmount.milliseconds(Int64(options.responseDelayMilliseconds))
        let healthFields = options.healthFields
        let schemaDatabase = options.schemaDatabase
        let unhealthyFrom: NIODeadline? = options.failHealthAfterMilliseconds > 0
            ? .now() + .milliseconds(Int64(options.failHealthAfterMilliseconds)) : nil
        @Sendable func initialize(_ channel: Channel) -> EventLoopFuture<Void> {
            drainer.register(channel)
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(
                    DemoHTTPHandler(versionTag: versionTag, failHealth: failHealth, responseDelay: responseDelay, healthFields: healthFields,
                        unhealthyFrom: unhealthyFrom, drainer: drainer, schemaDatabase: schemaDatabase))
            }
        }

        // Stop signals are handled from before the app listens (a supervisor
        // may stop it as soon as it answers); the drain is armed once it exists.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let signalQueue = DispatchQueue(label: "demo-app.signals")
        let ignoreSIGTERM = options.ignoreSIGTERM
        let trigger = DrainTrigger()
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
            source.setEventHandler {
                if signalNumber == SIGTERM && ignoreSIGTERM {
                    log("demo-app \(versionTag): ignoring SIGTERM (--ignore-sigterm)")
                    return
                }
                log("demo-app \(versionTag): draining (signal \(signalNumber))")
                trigger.fire()
            }
            source.resume()
            sources.append(source)
        }

        // Stops accepting; connections already accepted go on.
        let stopAccepting: @Sendable (@escaping @Sendable () -> Void) -> Void
        if let fd = inheritedListenFD(environment) {
            // A socket shared with other instances (socket handoff): see SharedSocketAcceptor.
            let acceptor = SharedSocketAcceptor(listenFD: fd, group: group, initializer: initialize)
            stopAccepting = { done in acceptor.stop(done) }
            log("demo-app \(versionTag): listening on inherited fd \(fd) (pid \(getpid()))")
        } else {
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer(initialize)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            let serverChannel: Channel
            do {
                serverChannel = try bootstrap.bind(host: options.host, port: options.port).wait()
            } catch {
                log("demo-app \(versionTag): cannot listen on \(options.host):\(options.port): \(error)")
                exit(1)
            }
            stopAccepting = { done in serverChannel.close().whenComplete { _ in done() } }
            log("demo-app \(versionTag): listening on \(serverChannel.localAddress.map { "\($0)" } ?? "?") (pid \(getpid()))")
        }
        if let notifySocket = environment["NOTIFY_SOCKET"] {
            sdNotify("READY=1\nSTATUS=demo-app \(versionTag) serving", socketPath: notifySocket)
        }

        if options.crashAfterMilliseconds > 0 {
            group.next().scheduleTask(in: .milliseconds(Int64(options.crashAfterMilliseconds))) {
                log("demo-app \(versionTag): crashing after \(options.crashAfterMilliseconds) ms (--crash-after-ms)")
                exit(4)
            }
        }

        let drainDelay = options.drainDelayMilliseconds
        trigger.arm {
            signalQueue.asyncAfter(deadline: .now() + .milliseconds(drainDelay)) {
                // Stop accepting, then let every connection finish with "Connection: close".
                stopAccepting {
                    drainer.drain(idleGrace: .seconds(2), eventLoop: group.next()) {
                        fullyShutdown.succeed(())
                    }
                }
            }
        }

        do {
            try fullyShutdown.futureResult.wait()
        } catch {
            log("demo-app \(versionTag): shutdown error: \(error)")
        }
        log("demo-app \(versionTag): drained, exiting")
        _ = sources
        exit(0)
    }

    /// fd 3 when started by systemd-style socket activation for this pid.
    static func inheritedListenFD(_ environment: [String: String]) -> Int32? {
        guard let count = environment["LISTEN_FDS"].flatMap(Int.init), count >= 1,
            let pid = environment["LISTEN_PID"].flatMap(Int32.init), pid == getpid()
        else { return nil }
        return 3
    }
}

func log(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { buffer in
        _ = write(2, buffer.baseAddress, buffer.count)
    }
}

/// The sd_notify protocol, by hand: one datagram to $NOTIFY_SOCKET.
func sdNotify(_ state: String, socketPath: String) {
    var path = socketPath
    if path.hasPrefix("@") { path = "\0" + path.dropFirst() }  // abstract namespace
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
    _ = state.withCString { text in
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, text, strlen(text), 0, $0, length) }
        }
    }
}
