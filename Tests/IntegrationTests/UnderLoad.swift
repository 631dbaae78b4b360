import Testing

/// End-to-end tests that measure failed requests under wrk load. They run
/// one at a time (nested suites inherit `.serialized`), so one test's load
/// never skews another's counts.
@Suite(.serialized)
enum UnderLoad {}
