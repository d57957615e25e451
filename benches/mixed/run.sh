#!/bin/bash
# Mixed-object cost (issue 8): a user-space program on kernel maps (auto
# mode, as root) against the same program on userbpf's maps (user mode).
# Usage (as root, after `cargo build --release --workspace`):
#   bash benches/mixed/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
clang-16 -target bpf -g -O2 -I/usr/include/x86_64-linux-gnu -c "$here/mixed.bpf.c" -o "$out/mixed.bpf.o"
cc -O2 -I"$repo/include" "$here/mixed_bench.c" -o "$out/mixed_bench" -L"$repo/target/release" -lbpf
export LD_LIBRARY_PATH="$repo/target/release"
USERBPF_BACKEND=auto "$out/mixed_bench" "$out/mixed.bpf.o" mixed
USERBPF_BACKEND=user "$out/mixed_bench" "$out/mixed.bpf.o" user
