#define _GNU_SOURCE
#include "CSupervisorShims.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/un.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stddef.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

int csup_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef SYS_renameat2
#define SYS_renameat2 316
#endif

int csup_rename_exchange(const char *a, const char *b) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

int csup_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int csup_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int csup_pidfd_reap(int pidfd, int *code_out, int *status_out) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    int rc;
    do {
        rc = waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;
    *code_out = info.si_code;
    *status_out = info.si_status;
    return 0;
}

/* The child's side of taking an unprivileged identity: supplementary
   groups, gid, uid (raw syscalls: only this thread exists after fork), so no
   capability of root's survives (a uid change from 0 clears the permitted and
   effective sets; the bounding and ambient sets are emptied first). */
static int take_credentials(const struct csup_credentials *c, int no_new_privs) {
    if (no_new_privs) {
        for (int cap = 0; cap < 64; cap++) {
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break;
        }
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    }
    if (syscall(SYS_setgroups, (size_t)c->n_groups, c->groups) != 0) return errno;
    if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) != 0) return errno;
    if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) != 0) return errno;
    if (no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
    return 0;
}

static void write_pid_digits(char *slot, pid_t pid) {
    char digits[16];
    int n = 0;
    unsigned long value = (unsigned long)pid;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 && n < 15);
    for (int i = 0; i < n; i++) {
        slot[i] = digits[n - 1 - i];
    }
    slot[n] = '\0';
}

/* Writes `value` in decimal at `slot`; returns the position after it. */
static char *write_decimal(char *slot, unsigned long long value) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 && n < 23);
    for (int i = 0; i < n; i++) slot[i] = digits[n - 1 - i];
    return slot + n;
}

/* See struct csup_journal_stream. Async-signal-safe. */
static void connect_journal_stream(const struct csup_journal_stream *journal) {
    /* Non-blocking while connecting: a journald that does not accept (its
       backlog full, wedged) must not stall the spawn; the app then keeps the
       inherited output. */
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return;
    if (s < 3) {
        /* Never one of the standard fds (dup2 onto itself would keep CLOEXEC). */
        int moved = fcntl(s, F_DUPFD_CLOEXEC, 3);
        close(s);
        if (moved < 0) return;
        s = moved;
    }
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    static const char socket_path[] = "/run/systemd/journal/stdout";
    memcpy(address.sun_path, socket_path, sizeof(socket_path));
    if (connect(s, (struct sockaddr *)&address, sizeof(address)) != 0 || shutdown(s, SHUT_RD) != 0) {
        close(s);
        return;
    }
    /* The header is small: one send on a fresh socket takes it, or it fails
       (MSG_NOSIGNAL: the signals are at their defaults here, and a SIGPIPE
       would kill the child before execve). */
    const char *next = journal->header;
    int left = journal->header_length;
    while (left > 0) {
        ssize_t n = send(s, next, (size_t)left, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { close(s); return; }
        next += n;
        left -= (int)n;
    }
    /* The app writes with ordinary blocking writes, as to any stdout. */
    int flags = fcntl(s, F_GETFL);
    if (flags < 0 || fcntl(s, F_SETFL, flags & ~O_NONBLOCK) != 0) { close(s); return; }
    struct stat info;
    if (fstat(s, &info) != 0 || dup2(s, 1) < 0 || dup2(s, 2) < 0) { close(s); return; }
    if (journal->env_slot != NULL) {
        char *end = write_decimal(journal->env_slot, (unsigned long long)info.st_dev);
        *end++ = ':';
        end = write_decimal(end, (unsigned long long)info.st_ino);
        *end = '\0';
    }
    close(s);
}

/* Child side: only async-signal-safe calls from here to execve. */
static void child_exec(const char *path, char *const argv[], char *const envp[],
                       const char *working_directory,
                       const int *keep_fds, int n_keep_fds,
                       char *listen_pid_slot, int stdout_fd, int stderr_fd, int new_session,
                       const struct csup_credentials *credentials,
                       const struct csup_journal_stream *journal, int report_fd) {
    int err = 0;
    /* Every signal is blocked here (the parent blocked them around fork):
       reset every disposition first, then unblock. An ignored signal
       (the daemon ignores SIGPIPE) would otherwise stay ignored across
       execve, and a handler of the daemon's must never run in the child. */
    struct sigaction default_action;
    memset(&default_action, 0, sizeof(default_action));
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    /* glibc refuses the two signals it reserves (32, 33): a zeroed kernel
       sigaction is SIG_DFL on every architecture's layout. */
    unsigned long zeroed[8] = {0};
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (sigaction(sig, &default_action, NULL) != 0) {
            syscall(SYS_rt_sigaction, sig, zeroed, NULL, (size_t)(_NSIG / 8));
        }
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    if (new_session && setsid() < 0) { err = errno; goto fail; }
    if (stdout_fd >= 0) {
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0) { err = errno; goto fail; }
        if (dup2(null_fd, 0) < 0) { err = errno; goto fail; }
        if (null_fd != 0) close(null_fd);
        if (dup2(stdout_fd, 1) < 0) { err = errno; goto fail; }
    }
    if (stderr_fd >= 0 && dup2(stderr_fd, 2) < 0) { err = errno; goto fail; }
    if (credentials != NULL && (err = take_credentials(credentials, 1)) != 0) goto fail;
    if (working_directory != NULL && chdir(working_directory) != 0) { err = errno; goto fail; }
    /* With the app's own identity: journald records its uid as well as its pid. */
    if (journal != NULL) connect_journal_stream(journal);

    /* Move kept fds above the range we will fill, then dup them into 3, 4, ... */
    int high_base = 3 + n_keep_fds + 64;
    if (report_fd < high_base) {
        int moved = fcntl(report_fd, F_DUPFD_CLOEXEC, high_base + n_keep_fds);
        if (moved < 0) { err = errno; goto fail; }
        report_fd = moved;
    }
    int staged[64];
    if (n_keep_fds > 64) { err = EINVAL; goto fail; }
    for (int i = 0; i < n_keep_fds; i++) {
        staged[i] = fcntl(keep_fds[i], F_DUPFD, high_base + i);
        if (staged[i] < 0) { err = errno; goto fail; }
    }
    for (int i = 0; i < n_keep_fds; i++) {
        if (dup2(staged[i], 3 + i) < 0) { err = errno; goto fail; }
    }
    /* Close everything else >= 3 + n_keep_fds except the report pipe (CLOEXEC). */
    int first_close = 3 + n_keep_fds;
    for (int fd = first_close; fd < report_fd; fd++) close(fd);
    if (syscall(SYS_close_range, report_fd + 1, ~0U, 0) != 0) {
        for (int fd = report_fd + 1; fd < 65536; fd++) close(fd);
    }

    if (listen_pid_slot != NULL) {
        write_pid_digits(listen_pid_slot, getpid());
    }
    execve(path, argv, envp);
    err = errno;
fail:
    (void)!write(report_fd, &err, sizeof(err));
    _exit(127);
}

/* fork(2) with every signal blocked across it: until the child has reset
   the dispositions (or exits), a signal sent to it must wait, not run the
   daemon's handlers (libdispatch's re-raise to a thread the child does not
   have). The child returns with everything still blocked; the parent gets
   its mask back, and fork's errno in *fork_errno. */
static pid_t fork_signals_blocked(int *fork_errno) {
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t pid = fork();
    if (pid == 0) return 0;
    *fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return pid;
}

pid_t csup_spawn(const char *path, char *const argv[], char *const envp[],
                 const char *working_directory,
                 const int *keep_fds, int n_keep_fds,
                 char *listen_pid_slot,
                 int stdout_fd, int stderr_fd, int new_session,
                 const struct csup_credentials *credentials,
                 const struct csup_journal_stream *journal,
                 int *error_out) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        *error_out = errno;
        return -1;
    }
    int fork_errno = 0;
    pid_t pid = fork_signals_blocked(&fork_errno);
    if (pid == 0) {
        close(pipefd[0]);
        child_exec(path, argv, envp, working_directory, keep_fds, n_keep_fds, listen_pid_slot, stdout_fd, stderr_fd, new_session, credentials, journal, pipefd[1]);
    }
    if (pid < 0) {
        *error_out = fork_errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    close(pipefd[1]);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(pipefd[0], &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof(child_errno)) {
        /* exec failed: reap the child that reported it. */
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *error_out = child_errno;
        return -1;
    }
    *error_out = 0;
    return pid;
}

/* One sock_diag dump: every TCP socket of `family` in `states` (a bit mask of
 * TCP states; the kernel filters) whose local port is `port`, each handed to
 * `each` with its attributes. 0 when the dump ended, -1 with errno. */
typedef void (*diag_visitor)(struct inet_diag_msg *msg, struct rtattr *attrs, int attrs_len, void *context);

static int sock_diag_dump(int nl, int family, uint32_t states, uint8_t extensions, uint16_t port,
                          diag_visitor each, void *context) {
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } request;
    memset(&request, 0, sizeof(request));
    request.nlh.nlmsg_len = sizeof(request);
    request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.req.sdiag_family = (uint8_t)family;
    request.req.sdiag_protocol = IPPROTO_TCP;
    request.req.idiag_states = states;
    request.req.idiag_ext = extensions;
    request.req.id.idiag_sport = htons(port);

    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof(kernel));
    kernel.nl_family = AF_NETLINK;
    if (sendto(nl, &request, sizeof(request), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        return -1;
    }
    char buffer[32768];
    for (;;) {
        ssize_t n = recv(nl, buffer, sizeof(buffer), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        struct nlmsghdr *h = (struct nlmsghdr *)buffer;
        for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = (struct nlmsgerr *)NLMSG_DATA(h);
                errno = -e->error;
                return -1;
            }
            struct inet_diag_msg *msg = (struct inet_diag_msg *)NLMSG_DATA(h);
            if (ntohs(msg->id.idiag_sport) != port) continue;
            each(msg, (struct rtattr *)(msg + 1), (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg))), context);
        }
    }
}

/* Both address families, on one netlink socket. */
static int sock_diag_both(uint32_t states, uint8_t extensions, uint16_t port, diag_visitor each, void *context) {
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return -1;
    int rc = sock_diag_dump(nl, AF_INET, states, extensions, port, each, context);
    if (rc == 0) rc = sock_diag_dump(nl, AF_INET6, states, extensions, port, each, context);
    int saved = errno;
    close(nl);
    errno = saved;
    return rc;
}

struct peers { struct csup_tcp_peer *out; int capacity; int count; };

static void collect_peer(struct inet_diag_msg *msg, struct rtattr *attr, int len, void *context) {
    (void)attr;
    (void)len;
    struct peers *peers = context;
    if (peers->count < peers->capacity) {
        struct csup_tcp_peer *peer = &peers->out[peers->count];
        memset(peer, 0, sizeof(*peer));
        peer->family = msg->idiag_family;
        peer->state = msg->idiag_state;
        peer->remote_port = ntohs(msg->id.idiag_dport);
        memcpy(peer->remote_address, msg->id.idiag_dst, sizeof(peer->remote_address));
    }
    peers->count++;
}

int csup_tcp_port_peers(uint16_t port, struct csup_tcp_peer *out, int capacity) {
    struct peers peers = { out, capacity, 0 };
    /* Every state but LISTEN: established, closing, and TIME_WAIT (a
       connection the app closed first stays visible for a minute). */
    uint32_t states = 0xFFFu & ~(1u << 10 /* TCP_LISTEN */);
    if (sock_diag_both(states, 0, port, collect_peer, &peers) != 0) return -1;
    return peers.count;
}

struct activity { int connections; uint32_t min_idle_ms; };

static void count_activity(struct inet_diag_msg *msg, struct rtattr *attr, int len, void *context) {
    (void)msg;
    struct activity *activity = context;
    activity->connections++;
    for (; RTA_OK(attr, len); attr = RTA_NEXT(attr, len)) {
        if (attr->rta_type != INET_DIAG_INFO) continue;
        struct tcp_info *info = (struct tcp_info *)RTA_DATA(attr);
        uint32_t idle = info->tcpi_last_data_recv < info->tcpi_last_data_sent
            ? info->tcpi_last_data_recv : info->tcpi_last_data_sent;
        if (idle < activity->min_idle_ms) activity->min_idle_ms = idle;
    }
}

int csup_tcp_port_activity(uint16_t port, int *connections, uint32_t *min_idle_ms) {
    struct activity activity = { 0, UINT32_MAX };
    int rc = sock_diag_both(1u << 1 /* TCP_ESTABLISHED */, 1u << (INET_DIAG_INFO - 1), port, count_activity, &activity);
    *connections = activity.connections;
    *min_idle_ms = activity.min_idle_ms;
    return rc;
}

struct listeners { uint32_t *inodes; int capacity; int count; };

static void collect_listener(struct inet_diag_msg *msg, struct rtattr *attrs, int len, void *context) {
    (void)attrs;
    (void)len;
    struct listeners *listeners = context;
    if (msg->idiag_inode == 0) return;
    if (listeners->count < listeners->capacity) listeners->inodes[listeners->count] = msg->idiag_inode;
    listeners->count++;
}

int csup_tcp_listening_inodes(uint16_t port, uint32_t *inodes, int capacity) {
    struct listeners listeners = { inodes, capacity, 0 };
    /* TCP_LISTEN: the kernel filters, however many other sockets there are. */
    int rc = sock_diag_both(1u << 10, 0, port, collect_listener, &listeners);
    return rc == 0 ? listeners.count : -1;
}

int csup_notify_socket(const char *path) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length >= sizeof(address.sun_path)) { close(fd); errno = ENAMETOOLONG; return -1; }
    memcpy(address.sun_path, path, length);
    socklen_t address_length = (socklen_t)sizeof(address);
    if (path[0] == '@') {
        /* Abstract namespace (sd_notify's "@name"): no file, no permissions to grant. */
        address.sun_path[0] = '\0';
        address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length);
    } else {
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&address, address_length) != 0) { int e = errno; close(fd); errno = e; return -1; }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

int csup_notify_receive(int fd, char *buffer, int capacity, int timeout_ms, int32_t *sender_pid) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int ready = poll(&p, 1, timeout_ms);
    if (ready <= 0) return ready;
    struct iovec iov = { .iov_base = buffer, .iov_len = (size_t)capacity };
    union { struct cmsghdr align; char data[CMSG_SPACE(sizeof(struct ucred))]; } control;
    struct msghdr message;
    memset(&message, 0, sizeof(message));
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control.data;
    message.msg_controllen = sizeof(control.data);
    ssize_t n = recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    *sender_pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof(cred));
            *sender_pid = cred.pid;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            /* Never keep descriptors a child sends us. */
            int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *fds = (int *)CMSG_DATA(c);
            for (int i = 0; i < count; i++) close(fds[i]);
        }
    }
    return (int)n;
}

int csup_bind_tcp(const char *host, int port) {
    struct sockaddr_storage storage;
    memset(&storage, 0, sizeof(storage));
    socklen_t length;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&storage;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&storage;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        family = AF_INET; v4->sin_family = AF_INET; v4->sin_port = htons((uint16_t)port); length = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        family = AF_INET6; v6->sin6_family = AF_INET6; v6->sin6_port = htons((uint16_t)port); length = sizeof(*v6);
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&storage, length) != 0) {
        int e = errno; close(fd); errno = e; return -1;
    }
    return fd;
}

int csup_listen_tcp(const char *host, int port, int backlog) {
    int fd = csup_bind_tcp(host, port);
    if (fd < 0) return -1;
    if (listen(fd, backlog) != 0) {
        int e = errno; close(fd); errno = e; return -1;
    }
    return fd;
}

/* "/proc/self/fd/N" without snprintf (async-signal-safe after fork). */
static void proc_fd_path(char out[32], int fd) {
    const char *prefix = "/proc/self/fd/";
    int n = 0;
    while (prefix[n] != '\0') { out[n] = prefix[n]; n++; }
    char digits[12];
    int count = 0;
    unsigned value = (unsigned)fd;
    do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value > 0 && count < 11);
    while (count > 0) out[n++] = digits[--count];
    out[n] = '\0';
}

/* Opens `path` without side effects (O_PATH), and only a regular file for
   reading, through /proc/self/fd: a FIFO never blocks, a device is never
   opened. Returns the read fd, the O_PATH fd for anything else, or -1. */
static int open_regular_or_path(const char *path, int *error_out) {
    int path_fd = open(path, O_PATH | O_CLOEXEC);
    if (path_fd < 0) { *error_out = errno; return -1; }
    struct stat info;
    if (fstat(path_fd, &info) != 0) { *error_out = errno; close(path_fd); return -1; }
    if (!S_ISREG(info.st_mode)) { *error_out = 0; return path_fd; }
    char proc_path[32];
    proc_fd_path(proc_path, path_fd);
    int fd = open(proc_path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) { *error_out = errno; close(path_fd); return -1; }
    close(path_fd);
    *error_out = 0;
    return fd;
}

/* The opener child: nothing of the daemon's but the reply socket, not
   dumpable (the caller it runs as must not attach to a copy of root's
   memory), then the caller's credentials, then one open. Signals stay
   blocked; it only opens, sends and exits. */
static void opener_child(const char *path, const struct csup_credentials *credentials, int reply) {
    if (reply != 3) {
        if (dup2(reply, 3) < 0) _exit(126);
        reply = 3;
    }
    if (syscall(SYS_close_range, 4, ~0U, 0) != 0) {
        for (int fd = 4; fd < 65536; fd++) close(fd);
    }
    for (int fd = 0; fd < 3; fd++) close(fd);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Keep no capability across the uid change, whatever securebits the unit set. */
    prctl(PR_SET_SECUREBITS, 0, 0, 0, 0);
    int err = take_credentials(credentials, 1);
    int fd = -1;
    if (err == 0) fd = open_regular_or_path(path, &err);
    union { struct cmsghdr align; char data[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof(control));
    struct iovec iov = { .iov_base = &err, .iov_len = sizeof(err) };
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        msg.msg_control = control.data;
        msg.msg_controllen = sizeof(control.data);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    _exit(sendmsg(reply, &msg, MSG_NOSIGNAL) < 0 ? 1 : 0);
}

int csup_open_as(const char *path, const struct csup_credentials *credentials, int timeout_ms, int *error_out) {
    if (credentials == NULL) return open_regular_or_path(path, error_out);
    int sv[2];
    /* SEQPACKET, not DGRAM: a child that dies (or is killed by the caller it
       runs as) gives end-of-file rather than an endless wait. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) { *error_out = errno; return -1; }
    int fork_errno = 0;
    pid_t pid = fork_signals_blocked(&fork_errno);
    if (pid == 0) {
        close(sv[0]);
        opener_child(path, credentials, sv[1]);
    }
    close(sv[1]);
    if (pid < 0) { close(sv[0]); *error_out = fork_errno; return -1; }
    int err = EIO, fd = -1;
    /* A path on a hung mount (or one the caller's FUSE daemon holds) must
       not hold the daemon: wait at most timeout_ms, then kill the opener. */
    struct pollfd p = { .fd = sv[0], .events = POLLIN };
    int ready;
    do { ready = poll(&p, 1, timeout_ms); } while (ready < 0 && errno == EINTR);
    if (ready == 0) {
        err = ETIMEDOUT;
        kill(pid, SIGKILL);
    } else if (ready > 0) {
        union { struct cmsghdr align; char data[CMSG_SPACE(sizeof(int))]; } control;
        struct iovec iov = { .iov_base = &err, .iov_len = sizeof(err) };
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data;
        msg.msg_controllen = sizeof(control.data);
        ssize_t n;
        do { n = recvmsg(sv[0], &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); } while (n < 0 && errno == EINTR);
        struct cmsghdr *cmsg = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
        if (cmsg != NULL && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
        }
        if (n != (ssize_t)sizeof(err) || (msg.msg_flags & MSG_CTRUNC)) {
            if (fd >= 0) close(fd);
            fd = -1;
            err = EIO;
        }
    }
    close(sv[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (fd < 0) { *error_out = err == 0 ? EIO : err; return -1; }
    *error_out = 0;
    return fd;
}

static char *interrupt_message = NULL;
static size_t interrupt_length = 0;

static void say_and_exit(int sig) {
    (void)sig;
    if (interrupt_message != NULL) (void)!write(2, interrupt_message, interrupt_length);
    _exit(130);
}

void csup_on_interrupt_say(const char *message) {
    char *copy = strdup(message);
    if (copy == NULL) return;
    interrupt_length = strlen(copy);
    interrupt_message = copy;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = say_and_exit;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
}

int csup_listen_unix(const char *path, int backlog) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(address.sun_path)) { errno = ENAMETOOLONG; return -1; }
    strcpy(address.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0 || listen(fd, backlog) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int csup_is_child(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    int rc;
    do {
        rc = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (rc < 0 && errno == EINTR);
    return rc == 0;
}

int csup_cloexec_from(int lowfd) {
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
    DIR *directory = opendir("/proc/self/fd");
    if (!directory) return -1;
    int own = dirfd(directory);
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        int fd = atoi(entry->d_name);
        if (fd >= lowfd && fd != own) {
            int flags = fcntl(fd, F_GETFD);
            if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }
    closedir(directory);
    return 0;
}

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
int csup_fexecve(int fd, char *const argv[], char *const envp[]) {
    syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    return -1;
}
