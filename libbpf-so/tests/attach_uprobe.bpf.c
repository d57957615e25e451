// SPDX-License-Identifier: MIT OR Apache-2.0
/* Programs for tests/attach_uprobe.rs: auto-attachable uprobe sections,
 * manual ones, and the error cases. */
#define SEC(n) __attribute__((section(n), used))

SEC("uprobe/libc.so.6:malloc") int up_malloc(void *ctx) { return 0; }
SEC("uprobe/libc.so.6:malloc+0x4") int up_malloc4(void *ctx) { return 0; }
SEC("uretprobe/libc.so.6:free") int uret_free(void *ctx) { return 0; }
SEC("uprobe.s/libc.so.6:realpath@@GLIBC_2.3") int up_realpath(void *ctx) { return 0; }
SEC("uprobe.multi/libc.so.6:pthread_cond_*") int multi_cond(void *ctx) { return 0; }
SEC("uprobe") int manual(void *ctx) { return 0; }
SEC("uprobe.multi") int manual_multi(void *ctx) { return 0; }
SEC("uprobe") int unloaded(void *ctx) { return 0; }
/* errors */
SEC("uprobe/libc.so.6") int bad_fmt(void *ctx) { return 0; }
SEC("uprobe/libc.so.6:no_such_fn_xyz") int bad_func(void *ctx) { return 0; }
SEC("uretprobe/libc.so.6:malloc+8") int bad_retoff(void *ctx) { return 0; }
SEC("uprobe.multi/libc.so.6") int bad_multi(void *ctx) { return 0; }
SEC("uprobe/libc.so.6:realpath") int ambiguous(void *ctx) { return 0; }
SEC("socket") int not_probe(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
