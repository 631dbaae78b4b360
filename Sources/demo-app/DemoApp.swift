#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix

@main
struct DemoApp {
    static func main() {
        let environment = ProcessInfo.processInfo.environment

        let options: DemoOptions
        switch DemoOptions.parse(Array(CommandLine.arguments.dropFirst()), environment: environment) {
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
        if options.startDelayMilliseconds > 0 {
            usleep(UInt32(options.startDelayMilliseconds) * 1000)
        }
        run(options, environment: environment)
    }

    static func run(_ options: DemoOptions, environment: [String: String]) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let quiesce = ServerQuiescingHelper(group: group)
        let fullyShutdown = group.next().makePromise(of: Void.self)

        let versionTag = options.versionTag
        let failHealth = options.failHealth
        let responseDelay = TimeAmount.milliseconds(Int64(options.responseDelayMilliseconds))
        let healthFields = options.healthFields
        let unhealthyFrom: NIODeadline? = options.failHealthAfterMilliseconds > 0
            ? .now() + .milliseconds(Int64(options.failHealthAfterMilliseconds)) : nil
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        DemoHTTPHandler(versionTag: versionTag, failHealth: failHealth, responseDelay: responseDelay, healthFields: healthFields,
                            unhealthyFrom: unhealthyFrom))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)

        let serverChannel: Channel
        let inherited = inheritedListenFD(environment)
        do {
            if let fd = inherited {
                serverChannel = try bootstrap.withBoundSocket(fd).wait()
            } else {
                serverChannel = try bootstrap.bind(host: options.host, port: options.port).wait()
            }
        } catch {
            let target = inherited.map { "inherited fd \($0)" } ?? "\(options.host):\(options.port)"
            log("demo-app \(versionTag): cannot listen on \(target): \(error)")
            exit(1)
        }
        log("demo-app \(versionTag): listening on \(serverChannel.localAddress.map { "\($0)" } ?? "?") (pid \(getpid()))")

        if options.crashAfterMilliseconds > 0 {
            group.next().scheduleTask(in: .milliseconds(Int64(options.crashAfterMilliseconds))) {
                log("demo-app \(versionTag): crashing after \(options.crashAfterMilliseconds) ms (--crash-after-ms)")
                exit(4)
            }
        }

        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let signalQueue = DispatchQueue(label: "demo-app.signals")
        let drainDelay = options.drainDelayMilliseconds
        let ignoreSIGTERM = options.ignoreSIGTERM
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
            source.setEventHandler {
                if signalNumber == SIGTERM && ignoreSIGTERM {
                    log("demo-app \(versionTag): ignoring SIGTERM (--ignore-sigterm)")
                    return
                }
                log("demo-app \(versionTag): draining (signal \(signalNumber))")
                signalQueue.asyncAfter(deadline: .now() + .milliseconds(drainDelay)) {
                    quiesce.initiateShutdown(promise: fullyShutdown)
                }
            }
            source.resume()
            sources.append(source)
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
    static func inheritedListenFD(_ environment: [String: String]) -> NIOBSDSocket.Handle? {
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
