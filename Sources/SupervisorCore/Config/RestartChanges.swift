/// What `supervisorctl restart` takes from the config file read again: the
/// keys that only say how the app is started (`[app] args`, `env`,
/// `working_directory`) apply to the new instance; every other change is
/// named, and takes effect when supervisord itself starts again.
public struct RestartChanges: Sendable, Equatable {
    /// The running config with the keys a restart applies taken from the file.
    public let config: SupervisorConfig
    /// Keys whose new values the restart applies (`app.env`, …).
    public let applied: [String]
    /// Keys that changed in the file but are not applied by a restart.
    public let notApplied: [String]

    public init(running: SupervisorConfig, file: SupervisorConfig) {
        var config = running
        config.app.args = file.app.args
        config.app.env = file.app.env
        config.app.workingDirectory = file.app.workingDirectory
        self.config = config

        let app = [
            ("app.args", running.app.args == file.app.args),
            ("app.env", running.app.env == file.app.env),
            ("app.working_directory", running.app.workingDirectory == file.app.workingDirectory),
        ]
        applied = app.filter { !$0.1 }.map(\.0)
        let others: [(String, Bool)] = [
            ("name", running.name == file.name),
            ("state_dir", running.stateDirectory == file.stateDirectory),
            ("app.binary", running.app.binary == file.app.binary),
            ("app.ports", running.app.ports == file.app.ports),
            ("app.listen", running.app.listen == file.app.listen),
            ("app.user", running.app.user == file.app.user),
            ("app.group", running.app.group == file.app.group),
            ("app.stop_signal", running.app.stopSignal == file.app.stopSignal),
            ("app.stop_timeout", running.app.stopTimeout == file.app.stopTimeout),
            ("app.preflight", running.app.preflight == file.app.preflight),
            ("app.version_command", running.app.versionCommand == file.app.versionCommand),
            ("[health]", running.health == file.health),
            ("[proxy]", running.proxy == file.proxy),
            ("[hooks]", running.hooks == file.hooks),
            ("[drain]", running.drain == file.drain),
            ("[control]", running.control == file.control),
            ("[metrics]", running.metrics == file.metrics),
        ]
        notApplied = others.filter { !$0.1 }.map(\.0)
    }
}
