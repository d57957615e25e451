/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Shared between malloccount.bpf.c and malloccount.c. */
#ifndef MALLOCCOUNT_H
#define MALLOCCOUNT_H

#define COMM_LEN 16
#define MAX_PIDS 10240

/* The value of the `counts` map, keyed by the process id (tgid). */
struct malloc_stats {
	__u64 calls;
	__u64 bytes;
	char comm[COMM_LEN];
};

#endif
