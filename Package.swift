// swift-tools-version:6.2
import PackageDescription

/// Our own targets build with warnings as errors (dependencies are not affected).
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "supervisor",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "supervisord", targets: ["supervisord"]),
        .executable(name: "supervisorctl", targets: ["supervisorctl"]),
        .executable(name: "demo-app", targets: ["demo-app"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries, each wrapped by one small typed Swift API in SystemBindings.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // Linux system calls glibc does not wrap (pidfd_open) and SO_PEERCRED.
        .target(name: "CSupervisorShims"),

        // Typed Swift over libsystemd, libcurl and the Linux process/socket calls.
        .target(
            name: "SystemBindings",
            dependencies: ["CSystemd", "CCurl", "CSupervisorShims"],
            swiftSettings: strict
        ),

        // The pure core: config model and validation, decisions. Standard library only.
        .target(name: "SupervisorCore", swiftSettings: strict),

        // What the daemon and the CLI share, and the CLI needs without the
        // daemon's NIO, lifecycle and Prometheus: config loading (TOMLKit), the
        // control API's JSON, the state directory's files, the binary files
        // (stage, commit, exchange) and the emergency rollback.
        .target(
            name: "SupervisorShared",
            dependencies: [
                "SupervisorCore",
                "SystemBindings",
                "CSupervisorShims",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),

        // The daemon: adapters (processes, health, proxy, control server) and the runtime.
        .target(
            name: "SupervisorDaemon",
            dependencies: [
                "SupervisorCore",
                "SupervisorShared",
                "SystemBindings",
                "CSupervisorShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),

        // What both command-line tools share: exit codes for usage errors.
        .target(
            name: "CommandLineSupport",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),

        .executableTarget(
            name: "supervisord",
            dependencies: [
                "SupervisorDaemon",
                "SupervisorShared",
                "SupervisorCore",
                "CommandLineSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "supervisorctl",
            dependencies: [
                "SupervisorCore",
                "SupervisorShared",
                "CommandLineSupport",
                "SystemBindings",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "demo-app",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        .testTarget(
            name: "SupervisorCoreTests",
            dependencies: ["SupervisorCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "SupervisorCore", "SupervisorDaemon", "SupervisorShared", "SystemBindings",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
