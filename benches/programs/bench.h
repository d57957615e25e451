/*
 * Shared by every benchmark program. Each program is one C file defining
 * `u64 bpf_main(void *mem)`; it is built twice: for -target bpf (raw .text,
 * no maps, no helpers, no globals, no rodata) and for the host, where
 * build.rs renames bpf_main with a #define.
 *
 * No libc headers: the BPF target has none, so types come from the
 * compiler's predefined macros.
 */
#ifndef USERBPF_BENCH_H
#define USERBPF_BENCH_H

typedef __UINT8_TYPE__ u8;
typedef __UINT16_TYPE__ u16;
typedef __UINT32_TYPE__ u32;
typedef __UINT64_TYPE__ u64;
typedef __INT8_TYPE__ s8;
typedef __INT32_TYPE__ s32;
typedef __INT64_TYPE__ s64;

/* Everything but bpf_main must inline: the BPF image is bpf_main alone. */
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

u64 bpf_main(void *mem);

#endif
