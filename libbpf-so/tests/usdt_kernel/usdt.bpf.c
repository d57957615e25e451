// SPDX-License-Identifier: GPL-2.0
/* A USDT program reading two arguments through usdt.bpf.h. */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/usdt.bpf.h>
__u64 sum, hits;
SEC("usdt") int BPF_USDT(on_tick, int a, long b) { sum += a + b; hits++; return 0; }
char LICENSE[] SEC("license") = "GPL";
