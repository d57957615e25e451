#!/usr/bin/env bash
# userbpf: install what the project needs on Debian 12 (bookworm).
#
#   bash scripts/setup.sh [build|demo|test|all]     (default: all)
#
# Idempotent and fast when everything is already there: one dpkg-query, no
# apt-get at all. `make test` and `make demo` run it every time.
#
# As root it installs whatever is missing (apt-get update only then), and
# mounts tracefs at /sys/kernel/tracing if it is not mounted. As another
# user it only reports what is missing and the command to run.
#
# Exits non-zero only when something the chosen target truly needs is
# missing after all of that (optional things only warn).
set -euo pipefail

target="${1:-all}"
case "$target" in
    build | demo | test | all) ;;
    -h | --help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "setup.sh: unknown target '$target' (expected build, demo, test or all)" >&2
        exit 2
        ;;
esac

export DEBIAN_FRONTEND=noninteractive
APT_GET=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -q)

info() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: warning: %s\n' "$*" >&2; }
fail() { printf 'setup: error: %s\n' "$*" >&2; }

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1

# --- Debian packages -------------------------------------------------------
# Needed to build and link the whole workspace: cc as linker, pkg-config,
# libelf and zlib for the libbpf that libbpf-sys builds (the compat oracle),
# and clang-16 for the BPF programs build scripts compile (benches).
pkgs_build=(build-essential pkg-config libelf-dev zlib1g-dev clang-16 llvm-16 bpftool libbpf-dev)
# Needed by the tests: the real libbpf headers/library to compare against,
# bpftool for skeletons/BTF, libbpf-tools as real libbpf programs to run,
# libclang, which bindgen loads to regenerate libbpf-so/src/cabi.rs, and
# <sys/sdt.h> for the USDT test programs.
pkgs_test=(bpftool libbpf-dev libbpf-tools libclang1-16 systemtap-sdt-dev)
# Nice to have (profiling); never required.
pkgs_optional=(linux-perf)

case "$target" in
    build | demo) required=("${pkgs_build[@]}") ;;
    test | all) required=("${pkgs_build[@]}" "${pkgs_test[@]}") ;;
esac
# What we install as root: everything the project uses, whatever the target,
# so that one run of setup is enough for every make target.
wanted=("${pkgs_build[@]}" "${pkgs_test[@]}")

# Print the packages among "$@" that are not installed.
missing_pkgs() {
    local installed
    # dpkg-query exits non-zero if any name is unknown; its stdout still lists
    # the known ones.
    installed="$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "$@" 2>/dev/null |
        awk '$1 == "ii" { print $2 }' || true)"
    local p
    for p in "$@"; do
        if ! grep -qxF -- "$p" <<<"$installed"; then
            printf '%s\n' "$p"
        fi
    done
}

# Run an apt-get command, retrying while another apt/dpkg holds a lock
# (DPkg::Lock::Timeout covers the dpkg lock; the lists lock taken by
# `apt-get update` is retried here).
apt_retry() {
    local tries=0 rc log
    log="$(mktemp)"
    while :; do
        rc=0
        "${APT_GET[@]}" "$@" </dev/null 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
        if [ "$rc" -eq 0 ]; then
            rm -f "$log"
            return 0
        fi
        if grep -q 'Could not get lock\|Unable to acquire\|is another process using it' "$log" &&
            [ "$tries" -lt 60 ]; then
            tries=$((tries + 1))
            info "apt is locked by another process; waiting ($tries/60)..."
            sleep 10
            continue
        fi
        rm -f "$log"
        return "$rc"
    done
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    warn "dpkg-query not found: not a Debian system? skipping package checks"
    missing=()
else
    mapfile -t missing < <(missing_pkgs "${wanted[@]}")
    mapfile -t missing_opt < <(missing_pkgs "${pkgs_optional[@]}")

    todo=("${missing[@]}" "${missing_opt[@]}")
    if [ "${#todo[@]}" -gt 0 ]; then
        if [ "$is_root" -eq 1 ]; then
            info "installing: ${todo[*]}"
            apt_retry update || warn "apt-get update failed; trying to install anyway"
            if [ "${#missing[@]}" -gt 0 ]; then
                if ! apt_retry install -y "${missing[@]}"; then
                    # One bad package makes apt install none: try them one by one.
                    warn "apt-get install of ${missing[*]} failed; trying one package at a time"
                    for p in "${missing[@]}"; do
                        apt_retry install -y "$p" ||
                            warn "apt-get install $p failed"
                    done
                fi
            fi
            if [ "${#missing_opt[@]}" -gt 0 ]; then
                # linux-perf is optional: ignore failure.
                apt_retry install -y "${missing_opt[@]}" ||
                    warn "optional package(s) not installed: ${missing_opt[*]}"
            fi
            mapfile -t missing < <(missing_pkgs "${wanted[@]}")
        else
            warn "not root, so not installing. Missing Debian packages: ${todo[*]}"
            warn "to install them, run as root:"
            warn "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${todo[*]}"
        fi
    fi
fi

# Which of the still-missing packages does this target need?
missing_required=()
for p in "${missing[@]}"; do
    for r in "${required[@]}"; do
        if [ "$p" = "$r" ]; then
            missing_required+=("$p")
        fi
    done
done
status=0
if [ "${#missing_required[@]}" -gt 0 ]; then
    fail "required for '$target' but not installed: ${missing_required[*]}"
    status=1
elif [ "${#missing[@]}" -gt 0 ]; then
    warn "not installed (not needed for '$target'): ${missing[*]}"
fi

# --- tracefs -----------------------------------------------------------------
# The agent and the uprobe/tracepoint tests use /sys/kernel/tracing.
if ! awk '$2 == "/sys/kernel/tracing" { found = 1 } END { exit !found }' /proc/mounts 2>/dev/null; then
    if [ "$is_root" -eq 1 ]; then
        if mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; then
            info "mounted tracefs at /sys/kernel/tracing"
        else
            warn "could not mount tracefs at /sys/kernel/tracing (a container?); tests that need it will skip"
        fi
    else
        warn "tracefs is not mounted at /sys/kernel/tracing; as root: mount -t tracefs tracefs /sys/kernel/tracing"
    fi
fi

# --- Rust toolchain ----------------------------------------------------------
cargo_bin="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
if ! command -v "${CARGO:-cargo}" >/dev/null 2>&1 && [ -x "$cargo_bin/cargo" ]; then
    export PATH="$cargo_bin:$PATH"
fi
if ! command -v "${CARGO:-cargo}" >/dev/null 2>&1; then
    fail "cargo not found (looked in PATH and $cargo_bin). Install a Rust toolchain >= 1.80 with rustup" \
        "(components rustfmt and clippy); Debian 12's own cargo is too old."
    status=1
elif [ "$target" = test ] || [ "$target" = all ]; then
    for comp in fmt clippy; do
        if ! "${CARGO:-cargo}" "$comp" --version >/dev/null 2>&1; then
            fail "'cargo $comp' is not available: rustup component add $([ "$comp" = fmt ] && echo rustfmt || echo clippy)"
            status=1
        fi
    done
fi

if [ "$status" -eq 0 ]; then
    info "ok ($target)"
fi
exit "$status"
