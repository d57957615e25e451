// SPDX-License-Identifier: GPL-2.0 OR MIT
/* A kprobe program for kernel_verdicts' attach check: it loads on any
 * kernel; attaching it needs kprobes, which the test kernel lacks. */
#include "kapp.bpf.h"

SEC("kprobe/do_nanosleep")
int kprobe_nanosleep(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
