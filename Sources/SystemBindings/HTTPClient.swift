#if canImport(Glibc)
import Glibc
#endif
import CCurl

/// A failed HTTP exchange: the transport did not complete (no status code).
public struct HTTPTransportError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case couldNotConnect
        case timedOut
        case other
    }
    public let kind: Kind
    public let curlCode: Int
    public let message: String
    /// The operating system's errno for a failed connect (EACCES, ECONNREFUSED, ENOENT …), 0 if none.
    public var osErrno: Int32 = 0
    public var description: String { message }
}

public struct HTTPResponse: Sendable {
    public let status: Int
    public let body: [UInt8]

    public init(status: Int, body: [UInt8]) {
        self.status = status
        self.body = body
    }
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// One HTTP request over libcurl, over TCP or a unix socket.
///
/// Blocking: call it from a thread that may block (`BlockingThread.run`).
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var unixSocketPath: String?
    public var headers: [String]
    public var body: [UInt8]?
    public var timeout: Duration
    public var connectTimeout: Duration?

    public init(
        method: String = "GET", url: String, unixSocketPath: String? = nil,
        headers: [String] = [], body: [UInt8]? = nil, timeout: Duration,
        connectTimeout: Duration? = nil
    ) {
        self.method = method
        self.url = url
        self.unixSocketPath = unixSocketPath
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
    }

    /// Runs the request, buffering the body.
    public func perform() throws(HTTPTransportError) -> HTTPResponse {
        var collected: [UInt8] = []
        let status = try perform { chunk in collected.append(contentsOf: chunk) }
        return HTTPResponse(status: status, body: collected)
    }

    /// Runs the request, handing each body chunk to `onData` as it arrives.
    /// Returns the status code.
    public func perform(onData: (UnsafeRawBufferPointer) -> Void) throws(HTTPTransportError) -> Int {
        CurlGlobal.ensureInitialized()
        guard let handle = curl_easy_init() else {
            throw HTTPTransportError(kind: .other, curlCode: -1, message: "curl_easy_init failed")
        }
        defer { curl_easy_cleanup(handle) }

        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        for header in headers {
            headerList = curl_slist_append(headerList, header)
        }

        return try withoutActuallyEscaping(onData) { (sink) throws(HTTPTransportError) -> Int in
            let box = WriteSink(sink)
            let unmanaged = Unmanaged.passRetained(box)
            defer { unmanaged.release() }

            let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errorPointer in
                _ = ccurl_setopt_string(handle, CURLOPT_URL, url)
                _ = ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)
                _ = ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
                _ = ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Self.milliseconds(timeout))
                if let connectTimeout {
                    _ = ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(connectTimeout))
                }
                _ = ccurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
                _ = ccurl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorPointer.baseAddress)
                if let unixSocketPath {
                    _ = ccurl_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, unixSocketPath)
                }
                if let headerList {
                    _ = ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)
                }
                _ = ccurl_setopt_write_function(handle, curlWriteCallback)
                _ = ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, unmanaged.toOpaque())

                if let body {
                    return body.withUnsafeBufferPointer { bodyPointer in
                        _ = ccurl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, bodyPointer.count)
                        _ = ccurl_setopt_pointer(
                            handle, CURLOPT_POSTFIELDS,
                            UnsafeMutableRawPointer(mutating: bodyPointer.baseAddress))
                        return curl_easy_perform(handle)
                    }
                }
                return curl_easy_perform(handle)
            }

            guard code == CURLE_OK else {
                let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let summary = String(cString: curl_easy_strerror(code))
                let kind: HTTPTransportError.Kind
                switch code {
                case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST: kind = .couldNotConnect
                case CURLE_OPERATION_TIMEDOUT: kind = .timedOut
                default: kind = .other
                }
                var osErrno: Int = 0
                _ = ccurl_getinfo_long(handle, CURLINFO_OS_ERRNO, &osErrno)
                throw HTTPTransportError(
                    kind: kind, curlCode: Int(code.rawValue),
                    message: Self.plainWords(code, errno: Int32(osErrno), timeout: timeout) ?? (detail.isEmpty ? summary : detail),
                    osErrno: Int32(osErrno))
            }
            var status: Int = 0
            _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
            return status
        }
    }

    /// What happened, in words for an operator rather than libcurl's ("Failed to
    /// connect to localhost port 80 after 0 ms"); nil: libcurl's own text.
    static func plainWords(_ code: CURLcode, errno: Int32, timeout: Duration) -> String? {
        switch code {
        case CURLE_COULDNT_CONNECT:
            switch errno {
            case ECONNREFUSED: return "connection refused (nothing is listening there)"
            case ENOENT: return "no such socket file"
            case EACCES, EPERM: return "permission denied"
            case 0: return "could not connect"
            default: return "could not connect: \(String(cString: strerror(errno)))"
            }
        case CURLE_OPERATION_TIMEDOUT: return "no answer in time (at most \(milliseconds(timeout)) ms allowed)"
        case CURLE_GOT_NOTHING: return "the connection closed without an answer"
        case CURLE_RECV_ERROR: return errno == ECONNRESET ? "the connection was reset" : nil
        case CURLE_COULDNT_RESOLVE_HOST: return "unknown host name"
        default: return nil
        }
    }

    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
    }
}

private final class WriteSink {
    let sink: (UnsafeRawBufferPointer) -> Void
    init(_ sink: @escaping (UnsafeRawBufferPointer) -> Void) { self.sink = sink }
}

private let curlWriteCallback: ccurl_write_callback = { pointer, size, count, userData in
    let length = size * count
    guard let userData else { return 0 }
    let box = Unmanaged<WriteSink>.fromOpaque(userData).takeUnretainedValue()
    box.sink(UnsafeRawBufferPointer(start: pointer, count: length))
    return length
}

private enum CurlGlobal {
    static let initialized: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
    }()
    static func ensureInitialized() { _ = initialized }
}

extension HTTPRequest {
    /// `perform()` on a thread that may block, never the cooperative pool.
    public func performed() async -> Result<HTTPResponse, HTTPTransportError> {
        await BlockingThread.run {
            do throws(HTTPTransportError) { return .success(try perform()) } catch { return .failure(error) }
        }
    }
}
