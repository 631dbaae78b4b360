#!/usr/bin/env bash
# Builds the Debian package operators install: dist/supervisor-swap_<version>_<arch>.deb
#
#   scripts/package.sh [--version VERSION] [--out DIR] [--with-demo-app]
#
# supervisord and supervisorctl are built in release mode with the Swift
# runtime and Foundation linked statically: the host needs no Swift, only
# the Debian libraries named in Depends: (worked out by dpkg-shlibdeps).
# The version is the repository's VERSION file unless --version says
# otherwise (a test builds a higher one); it is compiled in, so it is what
# `--version` prints. The build runs in a copy of the working tree under
# .build-package/ (kept, so the next run is incremental); this checkout is
# never changed. --with-demo-app also builds demo-app the same way, to
# dist/demo-app (for tests on a host without Swift; not in the package).
#
# Layout (beside Debian's Python `supervisor` package, whose files are never
# touched): /usr/sbin/supervisord and /usr/sbin/supervisorctl (the Python
# ones are in /usr/bin; root's PATH lists /usr/sbin first), the units in
# /lib/systemd/system, the man pages in section 8 (theirs are section 1),
# completions, /usr/sbin/supervisor-emergency-rollback (the sh fallback),
# docs and examples in /usr/share/doc/supervisor-swap.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

PACKAGE=supervisor-swap
version="$(tr -d '[:space:]' < VERSION)"
out=dist
with_demo_app=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --with-demo-app) with_demo_app=1; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ ! $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]]; then
    echo "package.sh: \"$version\" is not a Debian version (digits first, then letters, digits and . + ~ -)" >&2
    exit 2
fi

ensure_swift
ensure_packages pkg-config libsystemd-dev libcurl4-openssl-dev dpkg-dev binutils
work=.build-package
src=$work/src
mkdir -p "$src"

# The working tree's files (tracked and new, not ignored), copied with their
# times so an unchanged file does not rebuild; files gone from the tree go
# from the copy too.
say "copying the working tree to $src"
git ls-files -z --cached --others --exclude-standard | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done; true' sh > "$work/files"
tar --null -T "$work/files" -cf - | tar -C "$src" -xpf -
[[ -f Package.resolved ]] && cp -p Package.resolved "$src/"
(cd "$src" && find . -path ./.build -prune -o -type f -print0) | while IFS= read -r -d '' file; do
    file=${file#./}
    [[ $file == Package.resolved ]] && continue
    grep -qxF -- "$file" <(tr '\0' '\n' < "$work/files") || rm -f "$src/$file"
done

# The version, compiled in. Rewritten only when it differs: the build stays incremental.
version_c="$src/Sources/CSupervisorShims/version.c"
wanted="const char *csup_supervisor_version(void) { return \"$version\"; }"
if ! grep -qxF "$wanted" "$version_c"; then
    sed -i "s|^const char \*csup_supervisor_version(void).*|$wanted|" "$version_c"
fi
printf '%s\n' "$version" > "$src/VERSION"

products=(supervisord supervisorctl)
[[ $with_demo_app -eq 1 ]] && products+=(demo-app)
for product in "${products[@]}"; do
    say "building $product $version (release, Swift runtime linked statically)"
    (cd "$src" && swift build -c release --static-swift-stdlib --product "$product" --quiet >&2) || {
        echo "package.sh: the build of $product failed" >&2
        exit 1
    }
done
bin="$(cd "$src" && swift build -c release --static-swift-stdlib --show-bin-path)"
for product in "${products[@]}"; do
    if ldd "$bin/$product" | grep -q -i swift; then
        echo "package.sh: $product still links a Swift library dynamically:" >&2
        ldd "$bin/$product" >&2
        exit 1
    fi
done
if [[ $("$bin/supervisord" --version) != "$version" ]]; then
    echo "package.sh: the built supervisord says $("$bin/supervisord" --version), not $version" >&2
    exit 1
fi

arch="$(dpkg --print-architecture)"
# Debian's usual variables name who built it.
maintainer="${DEBFULLNAME:-supervisor developers} <${DEBEMAIL:-supervisor-maintainers@example.org}>"
root=$work/root
rm -rf "$root"
mkdir -p "$root/DEBIAN"
doc=$root/usr/share/doc/$PACKAGE

say "staging the package"
install -D -m 0755 "$bin/supervisord" "$root/usr/sbin/supervisord"
install -D -m 0755 "$bin/supervisorctl" "$root/usr/sbin/supervisorctl"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/sbin/supervisord" "$root/usr/sbin/supervisorctl"
install -D -m 0755 scripts/emergency-rollback.sh "$root/usr/sbin/supervisor-emergency-rollback"

for unit in 'supervisor@.service' 'supervisor@.socket'; do
    install -D -m 0644 "systemd/$unit" "$root/lib/systemd/system/$unit"
    sed -i -e 's|/usr/local/bin/supervisord|/usr/sbin/supervisord|g' \
        -e 's|man:supervisord(1)|man:supervisord(8)|g; s|man:supervisorctl(1)|man:supervisorctl(8)|g' "$root/lib/systemd/system/$unit"
done

# Section 8 (system administration), which also keeps them apart from the
# Python Supervisor's supervisord(1) and supervisorctl(1).
section8() {
    sed -e 's/^\.Dt SUPERVISORD 1$/.Dt SUPERVISORD 8/; s/^\.Dt SUPERVISORCTL 1$/.Dt SUPERVISORCTL 8/' \
        -e 's/^\.Xr supervisord 1/.Xr supervisord 8/; s/^\.Xr supervisorctl 1/.Xr supervisorctl 8/' "$1"
}
mkdir -p "$root/usr/share/man/man8" "$root/usr/share/man/man5"
section8 docs/man/supervisord.1 | gzip -9n > "$root/usr/share/man/man8/supervisord.8.gz"
section8 docs/man/supervisorctl.1 | gzip -9n > "$root/usr/share/man/man8/supervisorctl.8.gz"
section8 docs/man/supervisor-emergency-rollback.8 | gzip -9n > "$root/usr/share/man/man8/supervisor-emergency-rollback.8.gz"
section8 docs/man/supervisor.toml.5 | gzip -9n > "$root/usr/share/man/man5/supervisor.toml.5.gz"

for tool in supervisord supervisorctl; do
    install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
    # Sourced, not run: no #! line.
    "$bin/$tool" --generate-completion-script bash | sed '1{/^#!/d}' > "$root/usr/share/bash-completion/completions/$tool"
    "$bin/$tool" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_$tool"
    "$bin/$tool" --generate-completion-script fish > "$root/usr/share/fish/vendor_completions.d/$tool.fish"
done
chmod 0644 "$root"/usr/share/bash-completion/completions/* "$root"/usr/share/zsh/vendor-completions/* "$root"/usr/share/fish/vendor_completions.d/*

install -D -m 0644 README.md "$doc/README.md"
for page in operations configuration fleet architecture reliability; do
    install -D -m 0644 "docs/$page.md" "$doc/$page.md"
done
install -D -m 0644 examples/myapp.toml "$doc/examples/myapp.toml"
install -D -m 0644 Caddyfile.example "$doc/examples/Caddyfile"
install -D -m 0644 nginx.conf.example "$doc/examples/nginx.conf"
install -D -m 0644 systemd/myapp-listen.socket.example "$doc/examples/myapp-listen.socket"
(cd examples && find ansible -type f -print0) | while IFS= read -r -d '' file; do
    install -D -m 0644 "examples/$file" "$doc/examples/$file"
done
install -D -m 0644 packaging/deb/copyright "$doc/copyright"
{
    echo "$PACKAGE ($version) stable; urgency=medium"
    echo
    echo "  * Built by scripts/package.sh from $(git rev-parse --short HEAD 2>/dev/null || echo 'a source tree')."
    echo
    echo " -- $maintainer  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n > "$doc/changelog.gz"

for script in postinst prerm postrm; do
    sed "s|#VERSION#|$version|g" "packaging/deb/$script" > "$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
done

# Depends: what the binaries link, as dpkg-shlibdeps reads it from Debian's shlibs.
shlibs=$work/shlibs
rm -rf "$shlibs"
mkdir -p "$shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PACKAGE" "$PACKAGE" > "$shlibs/debian/control"
depends="$(cd "$shlibs" && dpkg-shlibdeps -O "$OLDPWD/$root/usr/sbin/supervisord" "$OLDPWD/$root/usr/sbin/supervisorctl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
if [[ -z $depends ]]; then
    echo "package.sh: dpkg-shlibdeps found no dependencies" >&2
    exit 1
fi

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: $PACKAGE
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends, systemd, procps
Suggests: caddy | nginx
Section: admin
Priority: optional
Description: zero-downtime binary swaps for one web service under systemd
 supervisord runs one web service (a single compiled binary) under systemd
 and swaps its binary with zero failed requests: it starts the new binary
 beside the old one, probes its health, switches Caddy or nginx (or hands
 over its listening sockets), drains and stops the old one, keeps the
 previous binary for an instant rollback, and rolls back on its own when
 anything fails. supervisorctl drives it: swap, rollback, status, history.
 .
 Not related to the Python process manager packaged as "supervisor": the
 commands share its names, so these live in /usr/sbin and their manual
 pages in section 8. Upgrading this package re-executes each running
 supervisor@NAME in place; the services' apps keep running.
EOF

mkdir -p "$out"
deb="$out/${PACKAGE}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
if [[ $with_demo_app -eq 1 ]]; then
    install -m 0755 "$bin/demo-app" "$out/demo-app"
fi
say "built $deb ($(du -h "$deb" | cut -f1)); Depends: $depends, systemd, procps"
echo "$deb"
