#!/usr/bin/env bash
# userbpf demo: a malloc counter, no root needed (`make demo` runs it after
# setup and a release build).
#
#   1. builds demo/ into target/demo: malloccount (an ordinary libbpf
#      skeleton app: SEC("uprobe/libc.so.6:malloc"), a hash map of calls and
#      bytes per process) and victim (exactly PER_TICK mallocs per second);
#   2. `userbpf load -- malloccount`: the unmodified app runs on userbpf's
#      libbpf.so.1, which publishes its program, map and uprobe link in the
#      namespace instead of asking the kernel;
#   3. `userbpf start -- victim`: the victim runs with the userbpf agent
#      preloaded, which installs the uprobe inside it;
#   4. `userbpf list` shows both sides; malloccount prints what it counted,
#      and the count for the victim's pid must be exactly what the victim
#      says it did (calls and bytes). Exits non-zero otherwise.
#
# Environment: DEMO_TICKS (3), DEMO_PER_TICK (1000), DEMO_ENGINE (interp or
# jit; default: userbpf's), USERBPF (the userbpf executable,
# target/release/userbpf).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
USERBPF="${USERBPF:-target/release/userbpf}"
TICKS="${DEMO_TICKS:-3}"
PER_TICK="${DEMO_PER_TICK:-1000}"
# A namespace of our own: other loaders of this user do not interfere.
NS="demo-$$"
engine_opt=()
[ -n "${DEMO_ENGINE:-}" ] && engine_opt=(--engine "$DEMO_ENGINE")

fail() {
    echo "demo: FAILED: $*" >&2
    exit 1
}

echo "== userbpf demo: counting malloc calls in another process, in user space =="
echo

# --- prerequisites -----------------------------------------------------------
[ -x "$USERBPF" ] || fail "$USERBPF not found: build it with 'make build' (or cargo build --release -p userbpf-cli)"
libdir="$("$USERBPF" libdir)" || fail "userbpf's libbpf.so.1 is missing (cargo build --release -p userbpf-libbpf-so)"
[ -e "$(dirname "$USERBPF")/libuserbpf_agent.so" ] ||
    fail "libuserbpf_agent.so is missing next to $USERBPF (cargo build --release -p userbpf-agent)"
for tool in "${CLANG:-clang-16}" "${BPFTOOL:-bpftool}" gcc pkg-config make; do
    command -v "$tool" >/dev/null || fail "$tool not found: run 'bash scripts/setup.sh all' as root"
done
[ -e /usr/include/bpf/bpf_helpers.h ] ||
    fail "/usr/include/bpf/bpf_helpers.h not found: install libbpf-dev (bash scripts/setup.sh all, as root)"

# --- 1. build ------------------------------------------------------------------
echo "-- 1. build demo/ into target/demo (clang-16 -target bpf, bpftool gen skeleton, gcc -lbpf)"
make -s -C demo LIBDIR="$libdir" || fail "building demo/ failed"
echo

work="$(mktemp -d)"
mc_pid=""
victim_pid=""
ns_dir="$("$USERBPF" list --namespace "$NS" | sed -n 's/^namespace //p')"
cleanup() {
    [ -n "$victim_pid" ] && kill -KILL "$victim_pid" 2>/dev/null
    [ -n "$mc_pid" ] && kill -KILL "$mc_pid" 2>/dev/null
    rm -rf "$work"
    # The namespace directory, once its loader and agents are gone.
    case "$ns_dir" in */"$NS") rm -rf "$ns_dir" ;; esac
}
trap cleanup EXIT

show_mc_log() {
    echo "--- malloccount stdout:" >&2
    cat "$work/mc.out" >&2
    echo "--- malloccount stderr:" >&2
    cat "$work/mc.err" >&2
}

# --- 2. the loader -------------------------------------------------------------
echo "-- 2. the unmodified libbpf app, on userbpf's libbpf.so.1"
echo "+ userbpf load --namespace $NS ${engine_opt[*]} -- target/demo/malloccount &"
"$USERBPF" load --namespace "$NS" "${engine_opt[@]}" -- target/demo/malloccount \
    >"$work/mc.out" 2>"$work/mc.err" &
mc_pid=$!

# Until its uprobe link is published (or it dies).
linked=0
for _ in $(seq 100); do
    if ! kill -0 "$mc_pid" 2>/dev/null; then
        wait "$mc_pid"
        rc=$?
        mc_pid=""
        show_mc_log
        fail "malloccount exited (status $rc) before its link appeared"
    fi
    if "$USERBPF" list --namespace "$NS" 2>/dev/null | grep -q 'uprobe .*count_malloc'; then
        linked=1
        break
    fi
    sleep 0.2
done
if [ "$linked" -ne 1 ]; then
    show_mc_log
    fail "no uprobe link in namespace $NS after 20 s"
fi
echo "+ userbpf list --namespace $NS"
"$USERBPF" list --namespace "$NS"
echo

# --- 3. the target -------------------------------------------------------------
echo "-- 3. the target, with the agent preloaded"
echo "+ userbpf start --namespace $NS -- target/demo/victim $TICKS $PER_TICK"
"$USERBPF" start --namespace "$NS" "${engine_opt[@]}" -- target/demo/victim "$TICKS" "$PER_TICK" \
    >"$work/victim.out" 2>"$work/victim.err" &
victim_pid=$!
# The victim sleeps a second before each tick: look at it meanwhile.
sleep 1.5
echo "+ userbpf list --namespace $NS   (while the victim runs)"
"$USERBPF" list --namespace "$NS"
wait "$victim_pid"
victim_rc=$?
victim_pid=""
cat "$work/victim.out"
cat "$work/victim.err" >&2
[ "$victim_rc" -eq 0 ] || fail "the victim exited with status $victim_rc"
echo

# --- 4. the counts ---------------------------------------------------------------
# One more tick of malloccount's, then stop it as Ctrl-C would (SIGTERM is
# handled the same way; SIGINT may be ignored in a background job).
sleep 1.2
kill -TERM "$mc_pid" 2>/dev/null
for _ in $(seq 50); do
    kill -0 "$mc_pid" 2>/dev/null || break
    sleep 0.2
done
if kill -0 "$mc_pid" 2>/dev/null; then
    show_mc_log
    fail "malloccount did not stop within 10 s of SIGTERM"
fi
wait "$mc_pid"
mc_rc=$?
mc_pid=""
echo "-- 4. what malloccount printed"
cat "$work/mc.out"
[ -s "$work/mc.err" ] && { echo "(stderr)"; cat "$work/mc.err"; }
[ "$mc_rc" -eq 0 ] || fail "malloccount exited with status $mc_rc"
echo

# "victim <pid>: done: calls <n> bytes <n>"
read -r v_pid v_calls v_bytes < <(sed -n 's/^victim \([0-9]*\): done: calls \([0-9]*\) bytes \([0-9]*\)$/\1 \2 \3/p' "$work/victim.out")
[ -n "${v_pid:-}" ] || fail "the victim did not report what it did"
# "final pid <pid> comm <comm> calls <n> bytes <n>"
line="$(awk -v p="$v_pid" '$1 == "final" && $2 == "pid" && $3 == p' "$work/mc.out")"
[ -n "$line" ] || fail "malloccount counted nothing for the victim (pid $v_pid): the uprobe did not fire in it"
read -r _ _ _ _ m_comm _ m_calls _ m_bytes <<<"$line"

echo "victim (pid $v_pid) says:      calls $v_calls bytes $v_bytes"
echo "malloccount counted ($m_comm): calls $m_calls bytes $m_bytes"
[ "$m_calls" = "$v_calls" ] || fail "malloc calls: counted $m_calls, the victim made $v_calls"
[ "$m_bytes" = "$v_bytes" ] || fail "bytes: counted $m_bytes, the victim asked for $v_bytes"
echo "demo: ok: every malloc call of the victim was counted, exactly, and nothing else"
