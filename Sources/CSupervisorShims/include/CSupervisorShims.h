#ifndef CSUPERVISOR_SHIMS_H
#define CSUPERVISOR_SHIMS_H

#include <sys/types.h>
#include <stdint.h>

/* pidfd_open(2): glibc 2.36 declares it, older ones do not; go through syscall. */
int csup_pidfd_open(pid_t pid);

/* Layout-identical to struct ucred, usable without _GNU_SOURCE. */
struct csup_ucred {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
};

/* SOL_SOCKET / SO_PEERCRED values for use through NIO's socket-option API. */
static const int CSUP_SOL_SOCKET = 1;
static const int CSUP_SO_PEERCRED = 17;

/* renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE): swaps two paths atomically. */
int csup_rename_exchange(const char *a, const char *b);

/* A unix datagram socket bound to `path` with SO_PASSCRED (a NOTIFY_SOCKET); "@name" is
   in the abstract namespace. -1 on error. */
int csup_notify_socket(const char *path);

/* Receives one datagram with the sender's pid (SCM_CREDENTIALS); waits at
   most timeout_ms. Returns its length, 0 on timeout, -1 on error. */
int csup_notify_receive(int fd, char *buffer, int capacity, int timeout_ms, int32_t *sender_pid);

/* A listening TCP socket on host:port (IPv4 or IPv6 literal), CLOEXEC, SO_REUSEADDR. -1 with errno. */
int csup_listen_tcp(const char *host, int port, int backlog);
/* The same without listen(2): a bound TCP socket (CLOEXEC, SO_REUSEADDR), or -1 with errno. */
int csup_bind_tcp(const char *host, int port);

/* pipe2(fds, O_CLOEXEC). */
int csup_pipe_cloexec(int fds[2]);

/* pidfd_send_signal(2). */
int csup_pidfd_send_signal(int pidfd, int sig);

/* Wait for and reap the process behind a pidfd (waitid P_PIDFD, WEXITED).
   Returns 0 and fills code/status (CLD_EXITED etc.), or -1 with errno (ECHILD: not our child). */
int csup_pidfd_reap(int pidfd, int *code_out, int *status_out);

/* An unprivileged identity a child takes before it runs anything. */
struct csup_credentials {
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int n_groups;
};

/* The peer's supplementary groups as the kernel recorded them at connect
   (SO_PEERGROUPS), sorted ascending; unused entries stay 0. */
struct csup_peer_groups {
    uint32_t gids[1024];
};
static const int CSUP_SO_PEERGROUPS = 59;

/* Opens `path` as `credentials` would (NULL: as this process), in a forked
   child that takes them, and hands the descriptor back: a regular file opened
   for reading, or, for anything else (FIFO, device, socket, directory), an
   O_PATH descriptor that only tells what it is (fstat). A FIFO never blocks
   and no device is opened; an open that hangs (a stuck mount) is abandoned
   after timeout_ms (ETIMEDOUT, the child killed). -1 with *error_out as the
   opener saw it. */
int csup_open_as(const char *path, const struct csup_credentials *credentials, int timeout_ms, int *error_out);


/*
 * Start a child: fork, setsid (when new_session), chdir, exec with the given argv/envp.
 * No parent-death signal: the child outlives the supervisor.
 * Every signal disposition is reset to SIG_DFL in the child (ignored ones
 * too: SIG_IGN would survive execve) before its mask is emptied; signals
 * stay blocked from fork until then. Every fd >= 3 except
 * those in `keep_fds` (which become 3, 4, ... in order) is closed.
 * If stdout_fd >= 0 it becomes stdout and stdin is /dev/null (commands whose
 * output the supervisor reads); if stderr_fd >= 0 it becomes stderr.
 * Otherwise they are inherited.
 * If `credentials` is not NULL the child takes them (supplementary groups,
 * gid, uid) after emptying its capability bounding and ambient sets, and sets
 * no_new_privs, before chdir and execve.
 * If `listen_pid_slot` is not NULL it points into envp's storage at a
 * "LISTEN_PID=" entry with room for the digits: the child writes its own pid
 * there before execve (async-signal-safe work only).
 * Returns the pid, or -1 with *error_out set to the errno of the failing step
 * (for exec failures, reported back through a CLOEXEC pipe).
 */
/* A journal stream of the child's own: it connects to journald's stdout
 * socket itself (so journald records its pid and uid, not the daemon's),
 * sends `header` (identifier, unit, priority, level prefix, forwarding:
 * sd_journal_stream_fd's protocol) and makes the socket its stdout and
 * stderr. `env_slot`, when not NULL, points into envp's storage just after
 * "JOURNAL_STREAM=" with room for 48 characters: the child writes the new
 * stream's "device:inode" there. When it cannot connect, everything stays
 * inherited (and the slot as it was). */
struct csup_journal_stream {
    const char *header;
    int header_length;
    char *env_slot;
};

pid_t csup_spawn(const char *path, char *const argv[], char *const envp[],
                 const char *working_directory,
                 const int *keep_fds, int n_keep_fds,
                 char *listen_pid_slot,
                 int stdout_fd, int stderr_fd, int new_session,
                 const struct csup_credentials *credentials,
                 const struct csup_journal_stream *journal,
                 int *error_out);

/* Activity of established TCP connections whose local port is `port`
   (sock_diag, tcp_info): how many there are and the smallest
   min(last_data_recv, last_data_sent) among them in ms.
   Returns 0, or -1 with errno. */
int csup_tcp_port_activity(uint16_t port, int *connections, uint32_t *min_idle_ms);

/* One TCP connection on a local port (sock_diag), any state but LISTEN. */
struct csup_tcp_peer {
    uint8_t family;
    uint8_t state;
    uint16_t remote_port;
    uint32_t remote_address[4];
};

/* The connections whose local port is `port` (IPv4 and IPv6): up to
   `capacity` written to `out`; returns how many there are, or -1 (errno). */
int csup_tcp_port_peers(uint16_t port, struct csup_tcp_peer *out, int capacity);

/* Inodes of the listening TCP sockets (IPv4 and IPv6, any address) whose
   local port is `port` (sock_diag). Stores at most `capacity`; returns how
   many there are, or -1 with errno. */
int csup_tcp_listening_inodes(uint16_t port, uint32_t *inodes, int capacity);

/* From now on SIGINT (Ctrl-C) writes `message` to stderr and exits 130:
   for a CLI whose work goes on elsewhere (a swap in the daemon). */
void csup_on_interrupt_say(const char *message);

/* The release both binaries report (version.c; scripts/package.sh rewrites it). */
const char *csup_supervisor_version(void);

/* A listening unix stream socket at `path` (CLOEXEC, `backlog`), whose
   descriptor the caller keeps: the control socket, which an in-place
   re-exec carries across execve. Returns the fd, or -1 with errno. The
   path must not exist. */
int csup_listen_unix(const char *path, int backlog);

/* Whether `pid` is a child of this process (alive or not yet reaped): true
   for an app a previous image of this process started before an in-place
   re-exec, whose exit status is then ours to reap. */
int csup_is_child(pid_t pid);

/* Marks every descriptor from `lowfd` up close-on-exec (close_range, or
   /proc/self/fd on older kernels): before an in-place re-exec, so only the
   descriptors it clears again cross execve (libraries open some without
   O_CLOEXEC). */
int csup_cloexec_from(int lowfd);

/* execve of the file open at `fd` (execveat with AT_EMPTY_PATH): the
   previous supervisord image, run again when a new one cannot start.
   Returns only on failure (-1, errno). */
int csup_fexecve(int fd, char *const argv[], char *const envp[]);

#endif
