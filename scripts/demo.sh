#!/usr/bin/env bash
# userbpf demo (run by `make demo` after setup and a release build).
#
# What it shows today:
#   1. the bpf_conformance summary on the checked interpreter and the
#      Cranelift JIT, in process and through the plugin;
#   2. the bpf-conformance-plugin running one program the way the
#      bpf_conformance runner drives it, on each engine: program bytes as
#      hex on stdin, input memory as hex in argv[1] (empty here), r0 printed
#      in hex.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
CARGO="${CARGO:-cargo}"
PLUGIN="${PLUGIN:-target/release/bpf-conformance-plugin}"
failures=0

echo "== userbpf demo =="
echo

echo "-- 1. bpf_conformance suite on both engines --"
echo "+ $CARGO test --release -p userbpf-runtime --test conformance -- --nocapture"
if ! "$CARGO" test --release -p userbpf-runtime --test conformance -- --nocapture; then
    echo "demo: the conformance test failed" >&2
    failures=$((failures + 1))
fi
echo

echo "-- 2. bpf-conformance-plugin on one program --"
# mov %r0, 42 ; exit
program="b7 00 00 00 2a 00 00 00 95 00 00 00 00 00 00 00"
echo "program:  mov %r0, 42; exit"
echo "bytes:    $program"
if [ ! -x "$PLUGIN" ]; then
    echo "demo: $PLUGIN not found: build it with 'make build'" >&2
    failures=$((failures + 1))
else
  for engine in interp jit; do
    echo "+ echo '$program' | $PLUGIN '' --engine $engine"
    rc=0
    output="$(printf '%s\n' "$program" | "$PLUGIN" "" --engine "$engine")" || rc=$?
    echo "output:   ${output:-<nothing>}"
    echo "exit:     $rc"
    # The runner reads r0 as hex: 42 = 0x2a.
    value="$(tr -d '[:space:]' <<<"$output" | tr '[:upper:]' '[:lower:]')"
    value="${value#0x}"
    if [ "$rc" -eq 0 ] && [ "$value" = "2a" ]; then
        echo "result:   r0 = 0x2a = 42, as expected"
    else
        echo "demo: expected the plugin to print 2a (r0 = 42) and exit 0" >&2
        failures=$((failures + 1))
    fi
  done
fi
echo

if [ "$failures" -ne 0 ]; then
    echo "demo: $failures step(s) failed" >&2
    exit 1
fi
echo "demo: ok"
