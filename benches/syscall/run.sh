#!/bin/bash
# Syscall tracepoint overhead (issue 7): ns added to each getppid() call by
# userbpf's agent (syscall interception, JIT-compiled programs) and by the
# kernel's tracepoints running a BPF program, in one run.
#
# Usage (root for the kernel rows; without root they are skipped):
#   cargo build --release -p userbpf-cli -p userbpf-libbpf-so -p userbpf-agent
#   bash benches/syscall/run.sh
#
# Environment:
#   CALLS   calls per repetition (1000000)
#   REPS    repetitions per row and mode in each round (5)
#   ROUNDS  passes over all rows (3), so that a burst of other load does
#           not hit one row alone; medians are over all REPS x ROUNDS
#   MODES   how the target calls getppid (libc syscallfn inline anon), see
#           target.c
#   ROWS    the rows to run, by name (all of them), see `rows` below
#   REPORT_ONLY=1  print the tables of the last run again
#   USERBPF the userbpf executable (target/release/userbpf); it, the agent
#           and libbpf.so.1 next to it are copied at start, so a rebuild
#           during the run changes nothing
#
# A row's program is attached by loader.c, an ordinary libbpf program: on
# userbpf's libbpf.so.1 (`userbpf load`, USERBPF_BACKEND=user) for userbpf
# rows, the targets then running under `userbpf start --engine jit`; on the
# system's libbpf (the kernel) for kernel rows, the targets running without
# the agent. Per row and mode, a fresh target process (target.c) times
# CALLS calls of getppid, REPS times, after a warm-up, in thread CPU time
# (which includes the kernel's part of the call). The HASH programs count
# calls per process: each target's count must equal the getppid calls it
# made, else its cell is marked **miscounted** and the exit status is 1;
# "(not seen)" marks the anon mode of rows without SUD, whose calls the
# agent does not intercept by design (it turns SUD on only when a module
# could not be scanned; USERBPF_SYSCALL_DISPATCH=on forces it). Work files
# and the raw output of every row stay in target/syscall-bench.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CALLS=${CALLS:-1000000}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-libc syscallfn inline anon}
USERBPF=${USERBPF:-$repo/target/release/userbpf}
CLANG=${CLANG:-clang-16}
work=$repo/target/syscall-bench
NS_PREFIX="sysbench-$$"

# name | kind (none, agent, userbpf, kernel) | program | target env | label
rows=(
    "base|none|||baseline, no agent"
    "agent|agent|||agent loaded, no syscall program"
    "ub_other|userbpf|tp_other||userbpf tp sys_enter_getpid (other nr), empty"
    "ub_tp|userbpf|tp_empty||userbpf tp sys_enter_getppid, empty"
    "ub_tp_map|userbpf|tp_map||userbpf tp sys_enter_getppid, HASH update"
    "ub_raw|userbpf|raw_empty||userbpf raw_tp sys_enter, empty"
    "ub_raw_map|userbpf|raw_map||userbpf raw_tp sys_enter, HASH update"
    "ub_tp_sud|userbpf|tp_empty|USERBPF_SYSCALL_DISPATCH=on|userbpf tp sys_enter_getppid, empty, SUD on"
    "ub_tp_map_sud|userbpf|tp_map|USERBPF_SYSCALL_DISPATCH=on|userbpf tp sys_enter_getppid, HASH update, SUD on"
    "k_other|kernel|tp_other||kernel tp sys_enter_getpid (other nr), empty"
    "k_tp|kernel|tp_empty||kernel tp sys_enter_getppid, empty"
    "k_tp_map|kernel|tp_map||kernel tp sys_enter_getppid, HASH update"
    "k_raw|kernel|raw_empty||kernel raw_tp sys_enter, empty"
    "k_raw_map|kernel|raw_map||kernel raw_tp sys_enter, HASH update"
)
# Ratios printed at the end: kernel row / userbpf row (added ns).
pairs=("k_tp ub_tp" "k_tp_map ub_tp_map" "k_raw ub_raw" "k_raw_map ub_raw_map" "k_other ub_other")

# Only what the rows set.
unset USERBPF_SYSCALL_DISPATCH USERBPF_ENGINE USERBPF_BACKEND USERBPF_NAMESPACE

die() {
    echo "syscall bench: $*" >&2
    exit 1
}

# --- build ---------------------------------------------------------------------
# REPORT_ONLY=1: print the tables of the last run again (no build, no run).
if [ -z "${REPORT_ONLY:-}" ]; then
    rm -rf "$work"
    mkdir -p "$work/bin" "$work/rows"
    for f in userbpf libuserbpf_agent.so libbpf.so.1; do
        src="$(dirname "$USERBPF")/$f"
        [ -e "$src" ] || die "$src missing: cargo build --release -p userbpf-cli -p userbpf-libbpf-so -p userbpf-agent"
        cp -L "$src" "$work/bin/$f" || die "copying $src"
    done
    UB=$work/bin/userbpf
    "$CLANG" -target bpf -g -O2 -I/usr/include/x86_64-linux-gnu -c "$here/syscall.bpf.c" \
        -o "$work/syscall.bpf.o" || die "clang failed"
    # The loader is built against the system's libbpf; `userbpf load` swaps in ours.
    cc -O2 -Wall "$here/loader.c" -o "$work/syscall_loader" -lbpf || die "building the loader failed"
    cc -O2 -Wall "$here/target.c" -o "$work/syscall_target" || die "building the target failed"
fi

is_root=0
[ "$(id -u)" = 0 ] && is_root=1
selected() {
    [ -z "${ROWS:-}" ] && return 0
    case " $ROWS " in *" $1 "*) return 0 ;; esac
    return 1
}

# Namespace directories to remove at exit (once their loaders are gone).
ns_dirs=()
loader_pid=""
cleanup() {
    [ -n "$loader_pid" ] && kill -KILL "$loader_pid" 2>/dev/null
    for d in "${ns_dirs[@]}"; do
        case "$d" in */"$NS_PREFIX"-*) rm -rf "$d" ;; esac
    done
}
trap cleanup EXIT

# run_row NAME KIND PROG ENV ROUND: one loader (if the row has one), then
# one target process per mode, whose output goes to rows/NAME.out; a
# HASH row's count for each target (its pid is the key) is checked against
# the calls it made, a difference goes to rows/NAME.MODE.mismatch. On
# failure, the reason goes to rows/NAME.fail.
run_row() {
    local name=$1 kind=$2 prog=$3 envs=$4 round=$5
    local log="$work/rows/$name.r$round" ns="$NS_PREFIX-$name-$round"
    local lo_cmd=() start=() rc m tpid want got
    local -A pids=()
    # shellcheck disable=SC2206 # envs: NAME=VALUE words
    case $kind in
    agent) start=(env $envs "$UB" start --namespace "$ns" --engine jit --) ;;
    userbpf)
        lo_cmd=(env USERBPF_BACKEND=user "$UB" load --namespace "$ns" --engine jit --
            "$work/syscall_loader" "$work/syscall.bpf.o" "$prog")
        start=(env $envs "$UB" start --namespace "$ns" --engine jit --)
        ;;
    kernel) lo_cmd=("$work/syscall_loader" "$work/syscall.bpf.o" "$prog") ;;
    esac
    if [ "$kind" = agent ] || [ "$kind" = userbpf ]; then
        ns_dirs+=("$("$UB" list --namespace "$ns" 2>/dev/null | sed -n 's/^namespace //p')")
    fi
    if [ ${#lo_cmd[@]} -gt 0 ]; then
        "${lo_cmd[@]}" >"$log.loader" 2>"$log.loader.err" &
        loader_pid=$!
        local ok=0
        for _ in $(seq 300); do
            grep -q '^ready' "$log.loader" 2>/dev/null && { ok=1; break; }
            kill -0 "$loader_pid" 2>/dev/null || break
            sleep 0.1
        done
        if [ $ok -ne 1 ]; then
            kill -KILL "$loader_pid" 2>/dev/null
            wait "$loader_pid" 2>/dev/null
            loader_pid=""
            echo "loader: $(tail -n 3 "$log.loader.err" | tr '\n' ' ')" >"$work/rows/$name.fail"
            return
        fi
    fi
    for m in $MODES; do
        timeout 600 "${start[@]}" "$work/syscall_target" "$CALLS" "$REPS" "$m" \
            >"$log.$m.target" 2>"$log.$m.target.err"
        rc=$?
        if [ $rc -ne 0 ]; then
            echo "$m: target exit $rc: $(tail -n 3 "$log.$m.target.err" | tr '\n' ' ')" >"$work/rows/$name.fail"
            break
        fi
        cat "$log.$m.target" >>"$work/rows/$name.out"
        # The HASH key (`start` execs: the pid is the target's).
        pids[$m]=$(sed -n 's/^pid //p' "$log.$m.target")
    done
    if [ -n "$loader_pid" ]; then
        kill -TERM "$loader_pid" 2>/dev/null
        wait "$loader_pid" 2>/dev/null
        loader_pid=""
    fi
    [ -e "$work/rows/$name.fail" ] && return
    case $prog in
    *_map)
        for m in $MODES; do
            tpid=${pids[$m]}
            want=$(sed -n 's/^total //p' "$log.$m.target")
            got=$(awk -v p="$tpid" '$1 == "count" && $2 == p { print $3 }' "$log.loader")
            if [ "$want" != "${got:-0}" ]; then
                echo "round $round: counted ${got:-0} of $want calls" >>"$work/rows/$name.$m.mismatch"
            fi
        done
        ;;
    esac
}

# --- run -----------------------------------------------------------------------
if [ -z "${REPORT_ONLY:-}" ]; then
    {
        echo "syscall bench: $(date -u '+%F %T') UTC, commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)" \
            "($(git -C "$repo" status --porcelain -- agent runtime libbpf-compat libbpf-so 2>/dev/null | wc -l) uncommitted files in agent/ runtime/ libbpf-*)"
        echo "kernel $(uname -r), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); CALLS=$CALLS REPS=$REPS ROUNDS=$ROUNDS MODES='$MODES'"
        [ $is_root -eq 1 ] || echo "not root: kernel rows skipped"
    } | tee "$work/header"
    for round in $(seq "$ROUNDS"); do
        for r in "${rows[@]}"; do
            IFS='|' read -r name kind prog envs label <<<"$r"
            selected "$name" || continue
            if [ "$kind" = kernel ] && [ $is_root -ne 1 ]; then
                echo "skipped: kernel rows need root" >"$work/rows/$name.fail"
                continue
            fi
            [ -e "$work/rows/$name.fail" ] && continue
            echo "  round $round: $name" >&2
            run_row "$name" "$kind" "$prog" "$envs" "$round"
        done
    done
    echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$work/header"
else
    [ -d "$work/rows" ] || die "no previous run in $work"
    cat "$work/header"
fi

# --- results -------------------------------------------------------------------
# repstat NAME MODE median|min: over the rep lines' CPU column.
repstat() {
    local f="$work/rows/$1.out"
    [ -s "$f" ] || return 1
    awk -v m="$2" '$1 == "rep" && $2 == m { print $3 }' "$f" | sort -g |
        awk -v s="$3" '{ v[NR] = $1 } END {
            if (NR == 0) exit 1
            if (s == "min") printf "%.1f", v[1]
            else if (NR % 2) printf "%.1f", v[(NR + 1) / 2]
            else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
declare -A med best
for r in "${rows[@]}"; do
    IFS='|' read -r name kind prog envs label <<<"$r"
    for m in $MODES; do
        v=$(repstat "$name" "$m" median) && med[$name.$m]=$v
        # shellcheck disable=SC2034 # read through table's nameref
        v=$(repstat "$name" "$m" min) && best[$name.$m]=$v
    done
done

# not_seen_by_design NAME MODE ENVS: the anon mode without SUD, none of its
# calls counted in any round.
not_seen_by_design() {
    [ "$2" = anon ] || return 1
    case "$3" in *USERBPF_SYSCALL_DISPATCH=on*) return 1 ;; esac
    [ -e "$work/rows/$1.$2.mismatch" ] || return 1
    ! grep -qv ' counted 0 of ' "$work/rows/$1.$2.mismatch"
}
# The HASH row that checks an empty row's interception (same agent set-up).
declare -A checked_by=([ub_other]=ub_tp_map [ub_tp]=ub_tp_map [ub_raw]=ub_raw_map [ub_tp_sud]=ub_tp_map_sud)
# status NAME MODE ENVS: "miscounted", "not seen" (by design: also for an
# empty row whose checking row saw nothing), or nothing.
status() {
    if [ -e "$work/rows/$1.$2.mismatch" ]; then
        if not_seen_by_design "$1" "$2" "$3"; then echo "not seen"; else echo miscounted; fi
    elif [ -n "${checked_by[$1]:-}" ] && not_seen_by_design "${checked_by[$1]}" "$2" "$3"; then
        echo "not seen"
    fi
}

# table ARRAY: one line per row, "value (added over the baseline row)".
table() {
    local -n t=$1
    local hdr="| row |" sep="|---|" line v b
    for m in $MODES; do
        hdr+=" $m |"
        sep+="---:|"
    done
    echo "$hdr"
    echo "$sep"
    for r in "${rows[@]}"; do
        IFS='|' read -r name kind prog envs label <<<"$r"
        selected "$name" || continue
        line="| $label |"
        for m in $MODES; do
            v=${t[$name.$m]:-}
            b=${t[base.$m]:-}
            if [ -z "$v" ] || [ -e "$work/rows/$name.fail" ]; then
                line+=" n/a"
            elif [ "$name" = base ] || [ -z "$b" ]; then
                line+=" $v"
            else
                line+=" $v ($(awk -v v="$v" -v b="$b" 'BEGIN { printf "%+.1f", v - b }'))"
            fi
            case $(status "$name" "$m" "$envs") in
            "not seen") line+=" (not seen)" ;;
            miscounted) line+=" **miscounted**" ;;
            esac
            line+=" |"
        done
        echo "$line"
    done
}

echo
echo "ns per getppid() call, median thread CPU time over all repetitions (added over the baseline row, same mode):"
echo
table med
echo
echo "the same, best repetition (least disturbed by other load):"
echo
table best
echo
echo "kernel added / userbpf added (same mode):"
echo
hdr="| programs |"
sep="|---|"
for m in $MODES; do
    hdr+=" $m |"
    sep+="---:|"
done
echo "$hdr"
echo "$sep"
for p in "${pairs[@]}"; do
    read -r k u <<<"$p"
    selected "$k" && selected "$u" || continue
    line="| $k / $u |"
    for m in $MODES; do
        kv=${med[$k.$m]:-}
        uv=${med[$u.$m]:-}
        b=${med[base.$m]:-}
        if [ -z "$kv" ] || [ -z "$uv" ] || [ -z "$b" ] || [ -e "$work/rows/$k.fail" ] || [ -e "$work/rows/$u.fail" ]; then
            line+=" n/a |"
        elif [ -n "$(status "$u" "$m" "")" ]; then
            line+=" n/a ($(status "$u" "$m" "")) |"
        else
            line+=" $(awk -v k="$kv" -v u="$uv" -v b="$b" 'BEGIN { ku = u - b; if (ku <= 0.5) printf "n/a (userbpf %+.1f)", ku; else printf "%.1fx", (k - b) / ku }') |"
        fi
    done
    echo "$line"
done


echo
# The issue's target: an empty program adds at most 20 ns per syscall.
for n in ub_tp ub_raw; do
    selected "$n" && selected base || continue
    [ -e "$work/rows/$n.fail" ] && continue
    for m in $MODES; do
        v=${med[$n.$m]:-}
        b=${med[base.$m]:-}
        [ -n "$v" ] && [ -n "$b" ] || continue
        [ -n "$(status "$n" "$m" "")" ] && continue
        awk -v n="$n" -v m="$m" -v v="$v" -v b="$b" 'BEGIN {
            printf "target (empty program adds <= 20 ns): %s, %s: %+.1f ns: %s\n", n, m, v - b, (v - b <= 20) ? "met" : "NOT met" }'
    done
done

echo
echo "syscall sites after the loop (first bytes in memory; 0f 05 = syscall left as is):"
for r in "${rows[@]}"; do
    IFS='|' read -r name kind prog envs label <<<"$r"
    [ -s "$work/rows/$name.out" ] || continue
    case $name in base | agent | ub_tp | ub_tp_sud) ;; *) continue ;; esac
    awk -v n="$name" '$1 == "site" && !seen[$2]++ { $1 = ""; print "  " n ":" $0 }' "$work/rows/$name.out"
done
fail=0
for r in "${rows[@]}"; do
    IFS='|' read -r name kind prog envs label <<<"$r"
    if [ -e "$work/rows/$name.fail" ]; then
        echo "$name: $(cat "$work/rows/$name.fail")"
    fi
    for m in $MODES; do
        if [ -e "$work/rows/$name.$m.mismatch" ]; then
            if not_seen_by_design "$name" "$m" "$envs"; then
                echo "$name, $m: not intercepted (SUD off): counted 0 calls"
            else
                echo "$name, $m: the program missed calls: $(tr '\n' ' ' <"$work/rows/$name.$m.mismatch")"
                fail=1
            fi
        fi
    done
done
echo "raw output: $work/rows"
exit $fail
