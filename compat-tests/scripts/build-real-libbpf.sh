#!/usr/bin/env bash
# Build the real libbpf (the version the workspace's libbpf-sys crate ships,
# 1.7 today) as a shared library, out of tree, for oracle runs:
#
#   bash compat-tests/scripts/build-real-libbpf.sh        # prints the directory
#
# Output, in <repo>/target/real-libbpf/ (or $REAL_LIBBPF_DIR):
#   libbpf.so.1.7.0, libbpf.so.1 -> libbpf.so.1.7.0, libbpf.so -> libbpf.so.1,
#   libbpf.a, libbpf.pc, and a STAMP naming the source it was built from.
#
# So `LD_LIBRARY_PATH=target/real-libbpf app` runs `app` on the real libbpf
# 1.7 instead of Debian's 1.1.2 or ours. The source is the libbpf tree inside
# the libbpf-sys crate in cargo's registry (fetched with `cargo fetch` if it
# is not there yet); nothing is written into it (make runs with OBJDIR set).
#
# Idempotent: when the stamp names the same source and the libraries are
# there, it only prints the directory (make is not even run). Needs make, cc, pkg-config, libelf-dev and
# zlib1g-dev (scripts/setup.sh build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${REAL_LIBBPF_DIR:-$repo/target/real-libbpf}"
cargo="${CARGO:-cargo}"
cargo_home="${CARGO_HOME:-${HOME:-/root}/.cargo}"

log() { printf 'build-real-libbpf: %s\n' "$*" >&2; }

# The libbpf-sys version the workspace locked (e.g. 1.7.0+v1.7.0).
version="$(awk '
    $0 == "name = \"libbpf-sys\"" { found = 1; next }
    found && /^version = / { gsub(/"/, "", $3); print $3; exit }
' "$repo/Cargo.lock")"
if [ -z "$version" ]; then
    log "libbpf-sys not found in $repo/Cargo.lock"
    exit 1
fi

find_src() {
    local d
    for d in "$cargo_home"/registry/src/*/"libbpf-sys-$version"/libbpf/src; do
        if [ -f "$d/libbpf.map" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    done
    return 1
}

if ! src="$(find_src)"; then
    log "libbpf-sys $version is not in $cargo_home/registry/src: cargo fetch"
    "$cargo" fetch --manifest-path "$repo/compat-tests/Cargo.toml" >&2
    src="$(find_src)" || {
        log "libbpf-sys $version still not found after cargo fetch"
        exit 1
    }
fi

# The release the source declares (libbpf.so.<major>.<minor>.<patch>).
lib_version="$(awk -F' *:= *' '
    $1 == "LIBBPF_MAJOR_VERSION" { ma = $2 }
    $1 == "LIBBPF_MINOR_VERSION" { mi = $2 }
    $1 == "LIBBPF_PATCH_VERSION" { pa = $2 }
    END { print ma "." mi "." pa }
' "$src/Makefile")"
stamp="libbpf-sys $version, libbpf $lib_version, from $src"

# One build at a time (parallel test processes): the rest wait, then find
# it up to date.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9

if [ -f "$out/STAMP" ] && [ "$(cat "$out/STAMP")" = "$stamp" ] &&
    [ -f "$out/libbpf.so.$lib_version" ] && [ -L "$out/libbpf.so.1" ] && [ -f "$out/libbpf.a" ]; then
    # Up to date: registry sources never change under the same version.
    printf '%s\n' "$out"
    exit 0
fi
log "building libbpf $lib_version from $src into $out"

mkdir -p "$out"
# BUILD_STATIC_ONLY= (empty) builds both the shared and the static library.
# CFLAGS without libbpf's default -Werror: a newer compiler's new warning
# must not break the oracle.
make -s -C "$src" -j"$(nproc 2>/dev/null || echo 2)" \
    OBJDIR="$out" BUILD_STATIC_ONLY= CFLAGS="-g -O2 -Wall" \
    "$out/libbpf.a" "$out/libbpf.so" "$out/libbpf.pc" >&2
printf '%s\n' "$stamp" >"$out/STAMP"

# Sanity: SONAME and the newest version node.
if command -v readelf >/dev/null 2>&1; then
    soname="$(readelf -d "$out/libbpf.so.$lib_version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
    if [ "$soname" != "libbpf.so.1" ]; then
        log "unexpected SONAME '$soname' in $out/libbpf.so.$lib_version"
        exit 1
    fi
fi
printf '%s\n' "$out"
