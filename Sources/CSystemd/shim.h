#ifndef CSYSTEMD_SHIM_H
#define CSYSTEMD_SHIM_H

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

/* sd_notifyf and friends are variadic; Swift formats the string itself and
   calls these typed entry points instead. */
static inline int csd_notify(const char *state) {
    return sd_notify(0, state);
}

static inline int csd_watchdog_enabled(uint64_t *usec) {
    return sd_watchdog_enabled(0, usec);
}

static inline int csd_listen_fds(void) {
    return sd_listen_fds(0);
}

static inline int csd_listen_fds_with_names(char ***names) {
    return sd_listen_fds_with_names(0, names);
}

static inline int csd_pid_notify_with_fds(pid_t pid, const char *state, const int *fds, unsigned n_fds) {
    return sd_pid_notify_with_fds(pid, 0, state, fds, n_fds);
}

#endif
