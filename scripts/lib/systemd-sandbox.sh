#!/bin/bash
# Boots a real systemd as PID 1 of private namespaces, for the end-to-end
# tests under systemd (Tests/IntegrationTests/SystemdBootTests.swift).
#
#   systemd-sandbox.sh UNIT_DIR DIR...
#
# UNIT_DIR holds the only units this systemd sees (SYSTEMD_UNIT_PATH) and
# must contain sandbox.target, the unit it boots, and empty sysinit, basic,
# sockets, timers, paths and shutdown targets: nothing of the host's units
# ever runs (the host's tmpfiles rules would empty a shared /tmp).
# Each DIR stays visible at the same path inside; everything else in /run,
# /tmp, /var/tmp, /var/log and /var/lib is a private tmpfs.
#
# With SANDBOX_PACKAGES=1 the sandbox can install Debian packages without
# touching the host: /usr, /etc and /var/cache are overlays whose changes
# live in the sandbox's /run, /var/lib/dpkg and /var/lib/apt are copies,
# /lib/systemd/system and /etc/systemd/system start empty (so only the
# units a package installs are there, beside UNIT_DIR's), and systemd reads
# units from all three. SANDBOX_HIDE="/opt/swift …" mounts an empty tmpfs
# over each directory named (a host without the Swift toolchain).
#
# The caller's process is the unshare process; systemd is its only child.
# Tear down: SIGKILL that child (the whole PID namespace dies with it), then
# remove the cgroup printed on the first line of stderr ("cgroup: PATH").
# Exits 77 when this machine cannot do it (not root, no cgroup2).
set -euo pipefail

if [[ "${1:-}" != "--inside" ]]; then
    if [[ $(id -u) -ne 0 ]]; then echo "systemd-sandbox: needs root" >&2; exit 77; fi
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then unified=/sys/fs/cgroup
    elif [[ -f /sys/fs/cgroup/unified/cgroup.procs ]]; then unified=/sys/fs/cgroup/unified
    else echo "systemd-sandbox: no cgroup2 (unified) hierarchy on this machine" >&2; exit 77; fi
    for tool in unshare nsenter /lib/systemd/systemd; do
        command -v "$tool" >/dev/null || { echo "systemd-sandbox: $tool is missing" >&2; exit 77; }
    done
    # A cgroup of our own, so the namespaced systemd's cgroup root is ours.
    cgroup="$unified/supervisor-sandbox-$$"
    mkdir "$cgroup"
    echo "$$" >"$cgroup/cgroup.procs"
    echo "cgroup: $cgroup" >&2
    exec unshare --pid --fork --mount --mount-proc --uts --ipc --cgroup --propagation private \
        "$0" --inside "$@"
fi

shift
units=$1
shift
# Carry the given directories across the tmpfs mounts: bind each to a
# private staging tmpfs, mount the tmpfs, move each back to its own path.
stage=/mnt
mount -t tmpfs -o mode=700 sandbox-stage "$stage"
index=0
for dir in "$@"; do
    mkdir -p "$stage/$index"
    mount --bind "$dir" "$stage/$index"
    index=$((index + 1))
done
packages=${SANDBOX_PACKAGES:-0}
if [[ $packages == 1 ]]; then
    # Everything a package writes must land in an overlay: /lib must be /usr/lib (merged /usr).
    if [[ $(readlink /lib) != usr/lib ]]; then echo "systemd-sandbox: SANDBOX_PACKAGES needs a merged /usr (/lib -> usr/lib)" >&2; exit 77; fi
    mkdir -p "$stage/host-var-lib"
    mount --bind /var/lib "$stage/host-var-lib"
fi
for private in /run /tmp /var/tmp /var/log /var/lib; do
    mount -t tmpfs -o mode=755 sandbox "$private"
done
chmod 1777 /tmp /var/tmp
index=0
for dir in "$@"; do
    mkdir -p "$dir"
    mount --move "$stage/$index" "$dir"
    index=$((index + 1))
done
if [[ $packages == 1 ]]; then
    cp -a "$stage/host-var-lib/dpkg" "$stage/host-var-lib/apt" /var/lib/
    umount "$stage/host-var-lib"
    layers=/run/sandbox-layers
    mkdir -p "$layers"
    mount -t tmpfs -o mode=700 sandbox-layers "$layers"
    for dir in /usr /etc /var/cache; do
        name=${dir//\//_}
        mkdir -p "$layers/$name/upper" "$layers/$name/work"
        mount -t overlay overlay -o "lowerdir=$dir,upperdir=$layers/$name/upper,workdir=$layers/$name/work" "$dir"
    done
    mount -t tmpfs -o mode=755 sandbox-units /usr/lib/systemd/system
    mount -t tmpfs -o mode=755 sandbox-units /etc/systemd/system
fi
for hidden in ${SANDBOX_HIDE:-}; do
    case $hidden in
        /|/usr|/usr/|/etc|/etc/|/bin|/lib|/sbin) echo "systemd-sandbox: refusing to hide $hidden" >&2; exit 77 ;;
    esac
    if [[ -d $hidden ]]; then mount -t tmpfs -o mode=755,size=1m sandbox-hidden "$hidden"; fi
done
umount "$stage"
umount -l /sys/fs/cgroup 2>/dev/null || true
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname supervisor-sandbox
# systemd logs to /dev/console: inside, that is the caller's stdout (a file),
# never the host's console.
if [[ -f "$(readlink -f /proc/self/fd/1)" ]]; then
    mount --bind "$(readlink -f /proc/self/fd/1)" /dev/console
fi
export SYSTEMD_UNIT_PATH="$units"
if [[ $packages == 1 ]]; then SYSTEMD_UNIT_PATH="$units:/etc/systemd/system:/lib/systemd/system"; fi
exec /lib/systemd/systemd --system --unit=sandbox.target --show-status=no --log-target=console
