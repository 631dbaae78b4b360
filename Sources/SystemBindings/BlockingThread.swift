#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Runs blocking work (poll, libcurl) on a dedicated OS thread so it never
/// occupies one of the few threads of Swift's cooperative pool.
public enum BlockingThread {
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        final class Box: @unchecked Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        pthread_attr_destroy(&attributes)
        if rc != 0 {
            // No thread: run inline rather than lose the work.
            Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body()
        }
        _ = name
    }

    /// Runs `body` on one of a few long-lived worker threads (not a thread
    /// per call) and returns its result.
    public static func run<T: Sendable, E: Error>(
        _ body: @escaping @Sendable () throws(E) -> T
    ) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            BlockingPool.shared.submit {
                do throws(E) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}

/// A fixed set of worker threads for short blocking calls (a libcurl
/// request, a file copy and fsync, a fork-and-exec). More threads start, up
/// to `maximum`, only while every one is busy; idle ones stay for the next call.
final class BlockingPool: Sendable {
    static let shared = BlockingPool(maximum: 8)

    private struct State: ~Copyable {
        var queue: [@Sendable () -> Void] = []
        var threads = 0
        var idle = 0
    }

    private let maximum: Int
    private let state = Mutex(State())
    private let available = Condition()

    init(maximum: Int) {
        self.maximum = maximum
    }

    func submit(_ work: @escaping @Sendable () -> Void) {
        let startThread = state.withLock { state -> Bool in
            state.queue.append(work)
            guard state.idle == 0, state.threads < maximum else { return false }
            state.threads += 1
            return true
        }
        available.signal()
        if startThread {
            BlockingThread.start(name: "blocking-pool") { [self] in workLoop() }
        }
    }

    private func workLoop() {
        while true {
            let work: (@Sendable () -> Void)? = state.withLock { state in
                state.queue.isEmpty ? nil : state.queue.removeFirst()
            }
            if let work {
                work()
                continue
            }
            state.withLock { $0.idle += 1 }
            available.wait { self.state.withLock { !$0.queue.isEmpty } }
            state.withLock { $0.idle -= 1 }
        }
    }
}

/// A condition variable over a pthread mutex: wait until `ready()` holds.
final class Condition: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    func signal() {
        pthread_mutex_lock(&mutex)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    func wait(until ready: () -> Bool) {
        pthread_mutex_lock(&mutex)
        while !ready() {
            pthread_cond_wait(&condition, &mutex)
        }
        pthread_mutex_unlock(&mutex)
    }
}
