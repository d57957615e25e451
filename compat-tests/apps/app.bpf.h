/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* BPF-side includes shared by the skeleton apps (vmlinux.h is generated at
 * build time from /sys/kernel/btf/vmlinux, never committed). */
#ifndef USERBPF_APP_BPF_H
#define USERBPF_APP_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EPERM 1
#define ENOENT 2
#define E2BIG 7
#define EAGAIN 11
#define EEXIST 17
#define EINVAL 22

char LICENSE[] SEC("license") = "GPL";

#endif
