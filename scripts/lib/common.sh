# Shared by scripts/*.sh: dependency installation and small helpers.
# shellcheck shell=bash

# Debian packages the build, tests, demo and benchmarks need.
SUPERVISOR_APT_PACKAGES=(pkg-config libsystemd-dev libcurl4-openssl-dev caddy nginx wrk curl procps iproute2 util-linux systemd man-db python3 sqlite3 dpkg-dev binutils lintian)

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
[[ -t 2 ]] || say() { printf '==> %s\n' "$*" >&2; }

# Installs whichever of the packages are missing (apt, as root or with sudo).
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    say "installing missing packages: ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "error: missing packages (${missing[*]}) and not root; install them with apt-get as root" >&2
            return 1
        fi
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Debian's nginx and caddy packages try to start their default service on
    # install; policy-rc.d 101 stops that so nothing grabs port 80 behind our back.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        created_policy=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    [[ $created_policy -eq 1 ]] && "${sudo[@]}" rm -f "$policy"
    return 0
}

# Swift must already be on the machine (it is not an apt package here).
ensure_swift() {
    if ! command -v swift >/dev/null; then
        echo "error: swift is not on PATH; install the Swift 6 toolchain first (https://www.swift.org/install/)" >&2
        return 1
    fi
}

# ansible-core from PyPI in a venv of its own (.build/ansible), for the
# fleet test of examples/ansible. Debian's python3 and python3-venv.
ANSIBLE_VENV=.build/ansible
ensure_ansible() {
    if [[ -x "$ANSIBLE_VENV/bin/ansible-playbook" ]]; then return 0; fi
    ensure_packages python3 python3-venv
    say "installing ansible-core from PyPI into $ANSIBLE_VENV"
    /usr/bin/python3 -m venv "$ANSIBLE_VENV"
    "$ANSIBLE_VENV/bin/pip" install --quiet --disable-pip-version-check 'ansible-core>=2.16,<2.18'
}
