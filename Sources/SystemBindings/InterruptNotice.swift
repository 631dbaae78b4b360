import CSupervisorShims

/// What Ctrl-C says when the work it would interrupt goes on elsewhere: the
/// message is written from the signal handler, then the process exits 130.
public enum InterruptNotice {
    public static func say(_ message: String) {
        csup_on_interrupt_say(message)
    }
}
