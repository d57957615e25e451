/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * userbpf: libbpf's object API (open, load and attach BPF ELF objects),
 * skeletons, ring and perf buffers, netlink (XDP/TC) helpers and the BPF
 * linker, as exported by userbpf's libbpf.so.1.
 *
 * Conventions (libbpf 1.x):
 * - calls returning a pointer return NULL on failure and set errno;
 * - calls returning int return a negative errno on failure (errno is set
 *   as well);
 * - every struct *_opts starts with `size_t sz`: declare it with
 *   LIBBPF_OPTS(type, name, .field = ...); a NULL opts means all defaults;
 * - objects, programs, maps, links and buffers are opaque handles.
 */
#ifndef __LIBBPF_LIBBPF_H
#define __LIBBPF_LIBBPF_H

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h> /* pid_t */
#include <linux/bpf.h>

#include "libbpf_common.h"
#include "libbpf_legacy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- version, errors, logging ---------------------------------------------- */

LIBBPF_API __u32 libbpf_major_version(void);
LIBBPF_API __u32 libbpf_minor_version(void);
/* "v1.7" style */
LIBBPF_API const char *libbpf_version_string(void);

/* libbpf's own error codes, past the errno range. */
enum libbpf_errno {
	__LIBBPF_ERRNO__START = 4000,
	LIBBPF_ERRNO__LIBELF = __LIBBPF_ERRNO__START,	/* libelf failure */
	LIBBPF_ERRNO__FORMAT,		/* bad BPF object format */
	LIBBPF_ERRNO__KVERSION,		/* bad or missing kernel version */
	LIBBPF_ERRNO__ENDIAN,		/* endianness mismatch */
	LIBBPF_ERRNO__INTERNAL,		/* internal error */
	LIBBPF_ERRNO__RELOC,		/* relocation failed */
	LIBBPF_ERRNO__LOAD,		/* load failed, reason unknown */
	LIBBPF_ERRNO__VERIFY,		/* rejected by the verifier */
	LIBBPF_ERRNO__PROG2BIG,		/* program too big */
	LIBBPF_ERRNO__KVER,		/* wrong kernel version */
	LIBBPF_ERRNO__PROGTYPE,		/* program type unsupported */
	LIBBPF_ERRNO__WRNGPID,		/* netlink: wrong pid */
	LIBBPF_ERRNO__INVSEQ,		/* netlink: bad sequence */
	LIBBPF_ERRNO__NLPARSE,		/* netlink: parse error */
	__LIBBPF_ERRNO__END,
};

/* Message for an errno or LIBBPF_ERRNO__* value, either sign. */
LIBBPF_API int libbpf_strerror(int err, char *buf, size_t size);

/* Names as the kernel spells them ("kprobe", "hash", ...), NULL if unknown. */
LIBBPF_API const char *libbpf_bpf_attach_type_str(enum bpf_attach_type t);
LIBBPF_API const char *libbpf_bpf_link_type_str(enum bpf_link_type t);
LIBBPF_API const char *libbpf_bpf_map_type_str(enum bpf_map_type t);
LIBBPF_API const char *libbpf_bpf_prog_type_str(enum bpf_prog_type t);

enum libbpf_print_level {
	LIBBPF_WARN,
	LIBBPF_INFO,
	LIBBPF_DEBUG,
};

typedef int (*libbpf_print_fn_t)(enum libbpf_print_level level, const char *fmt, va_list ap);

/*
 * Install a log callback (NULL: no logging) and return the previous one.
 * The default prints WARN and INFO to stderr (LIBBPF_LOG_LEVEL changes
 * the threshold). errno is preserved across the callback.
 */
LIBBPF_API libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);

/* --- objects ----------------------------------------------------------------- */

struct bpf_object;

struct bpf_object_open_opts {
	size_t sz;
	const char *object_name;	/* default: from the path or buffer address */
	bool relaxed_maps;		/* tolerate unknown map definition fields */
	const char *pin_root_path;	/* for maps pinned by name; default /sys/fs/bpf */
	__u32 :32;			/* removed field (attach_prog_fd); keep the hole */
	const char *kconfig;		/* extra "CONFIG_X=y" lines for .kconfig externs */
	const char *btf_custom_path;	/* target BTF for CO-RE instead of vmlinux */
	char *kernel_log_buf;		/* verifier/BTF log unless a program sets its own */
	size_t kernel_log_size;
	__u32 kernel_log_level;
	const char *bpf_token_path;	/* BPF FS to create a token from (1.4) */
	size_t :0;
};
#define bpf_object_open_opts__last_field bpf_token_path

LIBBPF_API struct bpf_object *bpf_object__open(const char *path);
LIBBPF_API struct bpf_object *bpf_object__open_file(const char *path,
						    const struct bpf_object_open_opts *opts);
LIBBPF_API struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
						   const struct bpf_object_open_opts *opts);

/* Everything bpf_object__load does except loading programs (1.6). */
LIBBPF_API int bpf_object__prepare(struct bpf_object *obj);
LIBBPF_API int bpf_object__load(struct bpf_object *obj);
/* Frees the object with its programs and maps; NULL is fine. */
LIBBPF_API void bpf_object__close(struct bpf_object *obj);

LIBBPF_API int bpf_object__pin_maps(struct bpf_object *obj, const char *path);
LIBBPF_API int bpf_object__unpin_maps(struct bpf_object *obj, const char *path);
LIBBPF_API int bpf_object__pin_programs(struct bpf_object *obj, const char *path);
LIBBPF_API int bpf_object__unpin_programs(struct bpf_object *obj, const char *path);
LIBBPF_API int bpf_object__pin(struct bpf_object *object, const char *path);
LIBBPF_API int bpf_object__unpin(struct bpf_object *object, const char *path);

LIBBPF_API const char *bpf_object__name(const struct bpf_object *obj);
LIBBPF_API unsigned int bpf_object__kversion(const struct bpf_object *obj);
LIBBPF_API int bpf_object__set_kversion(struct bpf_object *obj, __u32 kern_version);
LIBBPF_API int bpf_object__token_fd(const struct bpf_object *obj);

struct btf;
LIBBPF_API struct btf *bpf_object__btf(const struct bpf_object *obj);
LIBBPF_API int bpf_object__btf_fd(const struct bpf_object *obj);

LIBBPF_API struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj,
								const char *name);

/* SEC() name to program/attach type, as the loader would guess them. */
LIBBPF_API int libbpf_prog_type_by_name(const char *name, enum bpf_prog_type *prog_type,
					enum bpf_attach_type *expected_attach_type);
LIBBPF_API int libbpf_attach_type_by_name(const char *name, enum bpf_attach_type *attach_type);
/* vmlinux BTF id of the attach target `name` for the given attach type. */
LIBBPF_API int libbpf_find_vmlinux_btf_id(const char *name, enum bpf_attach_type attach_type);

/* --- programs ------------------------------------------------------------------ */

struct bpf_program;

/* Iteration in ELF order; NULL starts, NULL ends. */
LIBBPF_API struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
							struct bpf_program *prog);
LIBBPF_API struct bpf_program *bpf_object__prev_program(const struct bpf_object *obj,
							struct bpf_program *prog);

#define bpf_object__for_each_program(pos, obj)					\
	for ((pos) = bpf_object__next_program((obj), NULL); (pos) != NULL;	\
	     (pos) = bpf_object__next_program((obj), (pos)))

LIBBPF_API void bpf_program__set_ifindex(struct bpf_program *prog, __u32 ifindex);
LIBBPF_API const char *bpf_program__name(const struct bpf_program *prog);
LIBBPF_API const char *bpf_program__section_name(const struct bpf_program *prog);

/* Whether bpf_object__load loads it / attach_skeleton attaches it. */
LIBBPF_API bool bpf_program__autoload(const struct bpf_program *prog);
LIBBPF_API int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
LIBBPF_API bool bpf_program__autoattach(const struct bpf_program *prog);
LIBBPF_API void bpf_program__set_autoattach(struct bpf_program *prog, bool autoattach);

struct bpf_insn;

/* The instructions as they are now (relocated after prepare/load). */
LIBBPF_API const struct bpf_insn *bpf_program__insns(const struct bpf_program *prog);
LIBBPF_API int bpf_program__set_insns(struct bpf_program *prog, struct bpf_insn *new_insns,
				      size_t new_insn_cnt);
LIBBPF_API size_t bpf_program__insn_cnt(const struct bpf_program *prog);

LIBBPF_API int bpf_program__fd(const struct bpf_program *prog);
LIBBPF_API int bpf_program__pin(struct bpf_program *prog, const char *path);
LIBBPF_API int bpf_program__unpin(struct bpf_program *prog, const char *path);
LIBBPF_API void bpf_program__unload(struct bpf_program *prog);

/* --- links ------------------------------------------------------------------------ */

struct bpf_link;

LIBBPF_API struct bpf_link *bpf_link__open(const char *path);
LIBBPF_API int bpf_link__fd(const struct bpf_link *link);
LIBBPF_API const char *bpf_link__pin_path(const struct bpf_link *link);
LIBBPF_API int bpf_link__pin(struct bpf_link *link, const char *path);
LIBBPF_API int bpf_link__unpin(struct bpf_link *link);
LIBBPF_API int bpf_link__update_program(struct bpf_link *link, struct bpf_program *prog);
/* After this, destroying the link frees it but leaves the attachment. */
LIBBPF_API void bpf_link__disconnect(struct bpf_link *link);
LIBBPF_API int bpf_link__detach(struct bpf_link *link);
/* Detach (unless disconnected) and free; NULL is fine. */
LIBBPF_API int bpf_link__destroy(struct bpf_link *link);

/* --- attaching programs: each returns a link, or NULL with errno set ----------------- */

/* By SEC() name, as the skeleton's attach does. */
LIBBPF_API struct bpf_link *bpf_program__attach(const struct bpf_program *prog);

struct bpf_perf_event_opts {
	size_t sz;
	__u64 bpf_cookie;		/* for bpf_get_attach_cookie() */
	bool force_ioctl_attach;	/* PERF_EVENT_IOC_SET_BPF, not a BPF link */
	bool dont_enable;		/* leave the perf event disabled */
	size_t :0;
};
#define bpf_perf_event_opts__last_field dont_enable

LIBBPF_API struct bpf_link *bpf_program__attach_perf_event(const struct bpf_program *prog,
							   int pfd);
LIBBPF_API struct bpf_link *
bpf_program__attach_perf_event_opts(const struct bpf_program *prog, int pfd,
				    const struct bpf_perf_event_opts *opts);

/* How kprobes and uprobes are created. */
enum probe_attach_mode {
	PROBE_ATTACH_MODE_DEFAULT = 0,	/* best the kernel supports */
	PROBE_ATTACH_MODE_LEGACY,	/* tracefs kprobe_events/uprobe_events */
	PROBE_ATTACH_MODE_PERF,		/* perf_event_open + ioctl */
	PROBE_ATTACH_MODE_LINK,		/* perf_event_open + BPF link */
};

struct bpf_kprobe_opts {
	size_t sz;
	__u64 bpf_cookie;
	size_t offset;			/* within func_name */
	bool retprobe;
	enum probe_attach_mode attach_mode;	/* 1.2 */
	size_t :0;
};
#define bpf_kprobe_opts__last_field attach_mode

LIBBPF_API struct bpf_link *bpf_program__attach_kprobe(const struct bpf_program *prog,
						       bool retprobe, const char *func_name);
LIBBPF_API struct bpf_link *bpf_program__attach_kprobe_opts(const struct bpf_program *prog,
							    const char *func_name,
							    const struct bpf_kprobe_opts *opts);

/* Either a glob pattern (argument) or syms/addrs with cnt entries. */
struct bpf_kprobe_multi_opts {
	size_t sz;
	const char **syms;
	const unsigned long *addrs;
	const __u64 *cookies;
	size_t cnt;
	bool retprobe;
	bool session;			/* entry and return, one program */
	bool unique_match;		/* the pattern must match exactly one symbol */
	size_t :0;
};
#define bpf_kprobe_multi_opts__last_field unique_match

LIBBPF_API struct bpf_link *
bpf_program__attach_kprobe_multi_opts(const struct bpf_program *prog, const char *pattern,
				      const struct bpf_kprobe_multi_opts *opts);

struct bpf_uprobe_multi_opts {
	size_t sz;
	const char **syms;
	const unsigned long *offsets;
	const unsigned long *ref_ctr_offsets;
	const __u64 *cookies;
	size_t cnt;
	bool retprobe;
	bool session;
	size_t :0;
};
#define bpf_uprobe_multi_opts__last_field session

LIBBPF_API struct bpf_link *
bpf_program__attach_uprobe_multi(const struct bpf_program *prog, pid_t pid,
				 const char *binary_path, const char *func_pattern,
				 const struct bpf_uprobe_multi_opts *opts);

struct bpf_ksyscall_opts {
	size_t sz;
	__u64 bpf_cookie;
	bool retprobe;
	size_t :0;
};
#define bpf_ksyscall_opts__last_field retprobe

/* A kprobe on the syscall's kernel entry point ("openat" -> __x64_sys_openat). */
LIBBPF_API struct bpf_link *bpf_program__attach_ksyscall(const struct bpf_program *prog,
							 const char *syscall_name,
							 const struct bpf_ksyscall_opts *opts);

struct bpf_uprobe_opts {
	size_t sz;
	size_t ref_ctr_offset;		/* USDT semaphore file offset */
	__u64 bpf_cookie;
	bool retprobe;
	const char *func_name;		/* resolved in binary_path (0.8); "f@VER" allowed */
	enum probe_attach_mode attach_mode;	/* 1.2 */
	size_t :0;
};
#define bpf_uprobe_opts__last_field attach_mode

/* pid -1: all processes, 0: this one. func_offset is a file offset, or an
 * offset within opts->func_name when that is set.
 */
LIBBPF_API struct bpf_link *bpf_program__attach_uprobe(const struct bpf_program *prog,
						       bool retprobe, pid_t pid,
						       const char *binary_path,
						       size_t func_offset);
LIBBPF_API struct bpf_link *bpf_program__attach_uprobe_opts(const struct bpf_program *prog,
							    pid_t pid, const char *binary_path,
							    size_t func_offset,
							    const struct bpf_uprobe_opts *opts);

struct bpf_usdt_opts {
	size_t sz;
	__u64 usdt_cookie;		/* for bpf_usdt_cookie() */
	size_t :0;
};
#define bpf_usdt_opts__last_field usdt_cookie

LIBBPF_API struct bpf_link *bpf_program__attach_usdt(const struct bpf_program *prog, pid_t pid,
						     const char *binary_path,
						     const char *usdt_provider,
						     const char *usdt_name,
						     const struct bpf_usdt_opts *opts);

struct bpf_tracepoint_opts {
	size_t sz;
	__u64 bpf_cookie;
};
#define bpf_tracepoint_opts__last_field bpf_cookie

LIBBPF_API struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog,
							   const char *tp_category,
							   const char *tp_name);
LIBBPF_API struct bpf_link *
bpf_program__attach_tracepoint_opts(const struct bpf_program *prog, const char *tp_category,
				    const char *tp_name,
				    const struct bpf_tracepoint_opts *opts);

struct bpf_raw_tracepoint_opts {
	size_t sz;
	__u64 cookie;
	size_t :0;
};
#define bpf_raw_tracepoint_opts__last_field cookie

LIBBPF_API struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *prog,
							       const char *tp_name);
LIBBPF_API struct bpf_link *
bpf_program__attach_raw_tracepoint_opts(const struct bpf_program *prog, const char *tp_name,
					struct bpf_raw_tracepoint_opts *opts);

/* fentry/fexit/fmod_ret/tp_btf/freplace at the target chosen at load. */
struct bpf_trace_opts {
	size_t sz;
	__u64 cookie;
};
#define bpf_trace_opts__last_field cookie

LIBBPF_API struct bpf_link *bpf_program__attach_trace(const struct bpf_program *prog);
LIBBPF_API struct bpf_link *bpf_program__attach_trace_opts(const struct bpf_program *prog,
							   const struct bpf_trace_opts *opts);

/* libbpf 1.8 (exported by userbpf ahead of the 1.8 headers). */
struct bpf_tracing_multi_opts {
	size_t sz;
	const __u32 *ids;		/* BTF ids instead of a pattern */
	const __u64 *cookies;
	size_t cnt;
	size_t :0;
};
#define bpf_tracing_multi_opts__last_field cnt

LIBBPF_API struct bpf_link *
bpf_program__attach_tracing_multi(const struct bpf_program *prog, const char *pattern,
				  const struct bpf_tracing_multi_opts *opts);

LIBBPF_API struct bpf_link *bpf_program__attach_lsm(const struct bpf_program *prog);
LIBBPF_API struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog,
						       int cgroup_fd);
LIBBPF_API struct bpf_link *bpf_program__attach_netns(const struct bpf_program *prog,
						      int netns_fd);
LIBBPF_API struct bpf_link *bpf_program__attach_sockmap(const struct bpf_program *prog,
							int map_fd);
LIBBPF_API struct bpf_link *bpf_program__attach_xdp(const struct bpf_program *prog,
						    int ifindex);
LIBBPF_API struct bpf_link *bpf_program__attach_freplace(const struct bpf_program *prog,
							 int target_fd,
							 const char *attach_func_name);

struct bpf_netfilter_opts {
	size_t sz;
	__u32 pf;
	__u32 hooknum;
	__s32 priority;
	__u32 flags;
};
#define bpf_netfilter_opts__last_field flags

LIBBPF_API struct bpf_link *bpf_program__attach_netfilter(const struct bpf_program *prog,
							  const struct bpf_netfilter_opts *opts);

/* tcx, netkit and cgroup links: position relative to another program/link. */
struct bpf_tcx_opts {
	size_t sz;
	__u32 flags;
	__u32 relative_fd;
	__u32 relative_id;
	__u64 expected_revision;
	size_t :0;
};
#define bpf_tcx_opts__last_field expected_revision

LIBBPF_API struct bpf_link *bpf_program__attach_tcx(const struct bpf_program *prog,
						    int ifindex,
						    const struct bpf_tcx_opts *opts);

struct bpf_netkit_opts {
	size_t sz;
	__u32 flags;
	__u32 relative_fd;
	__u32 relative_id;
	__u64 expected_revision;
	size_t :0;
};
#define bpf_netkit_opts__last_field expected_revision

LIBBPF_API struct bpf_link *bpf_program__attach_netkit(const struct bpf_program *prog,
						       int ifindex,
						       const struct bpf_netkit_opts *opts);

struct bpf_cgroup_opts {
	size_t sz;
	__u32 flags;
	__u32 relative_fd;
	__u32 relative_id;
	__u64 expected_revision;
	size_t :0;
};
#define bpf_cgroup_opts__last_field expected_revision

LIBBPF_API struct bpf_link *bpf_program__attach_cgroup_opts(const struct bpf_program *prog,
							    int cgroup_fd,
							    const struct bpf_cgroup_opts *opts);

struct bpf_map;

/* Register a struct_ops map; the link replaces it with bpf_link__update_map. */
LIBBPF_API struct bpf_link *bpf_map__attach_struct_ops(const struct bpf_map *map);
LIBBPF_API int bpf_link__update_map(struct bpf_link *link, const struct bpf_map *map);

struct bpf_iter_attach_opts {
	size_t sz;
	union bpf_iter_link_info *link_info;
	__u32 link_info_len;
};
#define bpf_iter_attach_opts__last_field link_info_len

LIBBPF_API struct bpf_link *bpf_program__attach_iter(const struct bpf_program *prog,
						     const struct bpf_iter_attach_opts *opts);

/* --- program properties (setters work only before load) ------------------------------ */

LIBBPF_API enum bpf_prog_type bpf_program__type(const struct bpf_program *prog);
LIBBPF_API int bpf_program__set_type(struct bpf_program *prog, enum bpf_prog_type type);
LIBBPF_API enum bpf_attach_type bpf_program__expected_attach_type(const struct bpf_program *prog);
LIBBPF_API int bpf_program__set_expected_attach_type(struct bpf_program *prog,
						     enum bpf_attach_type type);
LIBBPF_API __u32 bpf_program__flags(const struct bpf_program *prog);
LIBBPF_API int bpf_program__set_flags(struct bpf_program *prog, __u32 flags);
LIBBPF_API __u32 bpf_program__log_level(const struct bpf_program *prog);
LIBBPF_API int bpf_program__set_log_level(struct bpf_program *prog, __u32 log_level);
LIBBPF_API const char *bpf_program__log_buf(const struct bpf_program *prog, size_t *log_size);
LIBBPF_API int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf,
					size_t log_size);
LIBBPF_API struct bpf_func_info *bpf_program__func_info(const struct bpf_program *prog);
LIBBPF_API __u32 bpf_program__func_info_cnt(const struct bpf_program *prog);
LIBBPF_API struct bpf_line_info *bpf_program__line_info(const struct bpf_program *prog);
LIBBPF_API __u32 bpf_program__line_info_cnt(const struct bpf_program *prog);

/* fentry/fexit/freplace target: a function in vmlinux (attach_prog_fd 0)
 * or in the BPF program attach_prog_fd.
 */
LIBBPF_API int bpf_program__set_attach_target(struct bpf_program *prog, int attach_prog_fd,
					      const char *attach_func_name);

struct bpf_prog_assoc_struct_ops_opts;
LIBBPF_API int bpf_program__assoc_struct_ops(struct bpf_program *prog, struct bpf_map *map,
					     struct bpf_prog_assoc_struct_ops_opts *opts);

struct bpf_prog_load_opts;
/* libbpf 1.8: load one more copy of a prepared program; returns its fd. */
LIBBPF_API int bpf_program__clone(struct bpf_program *prog,
				  const struct bpf_prog_load_opts *opts);

/* --- maps ---------------------------------------------------------------------------- */

LIBBPF_API struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj,
							const char *name);
LIBBPF_API int bpf_object__find_map_fd_by_name(const struct bpf_object *obj, const char *name);

/* Iteration in definition order; NULL starts, NULL ends. */
LIBBPF_API struct bpf_map *bpf_object__next_map(const struct bpf_object *obj,
						const struct bpf_map *map);
LIBBPF_API struct bpf_map *bpf_object__prev_map(const struct bpf_object *obj,
						const struct bpf_map *map);

#define bpf_object__for_each_map(pos, obj)					\
	for ((pos) = bpf_object__next_map((obj), NULL); (pos) != NULL;		\
	     (pos) = bpf_object__next_map((obj), (pos)))
#define bpf_map__for_each bpf_object__for_each_map

/* Setters fail with -EBUSY once the map exists (after load). */
LIBBPF_API int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate);
LIBBPF_API bool bpf_map__autocreate(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_autoattach(struct bpf_map *map, bool autoattach);
LIBBPF_API bool bpf_map__autoattach(const struct bpf_map *map);
/* -1 until the map is created. */
LIBBPF_API int bpf_map__fd(const struct bpf_map *map);
LIBBPF_API int bpf_map__reuse_fd(struct bpf_map *map, int fd);
LIBBPF_API const char *bpf_map__name(const struct bpf_map *map);
LIBBPF_API enum bpf_map_type bpf_map__type(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_type(struct bpf_map *map, enum bpf_map_type type);
LIBBPF_API __u32 bpf_map__max_entries(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
LIBBPF_API __u32 bpf_map__map_flags(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_map_flags(struct bpf_map *map, __u32 flags);
LIBBPF_API __u32 bpf_map__numa_node(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_numa_node(struct bpf_map *map, __u32 numa_node);
LIBBPF_API __u32 bpf_map__key_size(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_key_size(struct bpf_map *map, __u32 size);
LIBBPF_API __u32 bpf_map__value_size(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_value_size(struct bpf_map *map, __u32 size);
LIBBPF_API __u32 bpf_map__btf_key_type_id(const struct bpf_map *map);
LIBBPF_API __u32 bpf_map__btf_value_type_id(const struct bpf_map *map);
LIBBPF_API __u32 bpf_map__ifindex(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_ifindex(struct bpf_map *map, __u32 ifindex);
LIBBPF_API __u64 bpf_map__map_extra(const struct bpf_map *map);
LIBBPF_API int bpf_map__set_map_extra(struct bpf_map *map, __u64 map_extra);

/* Initial contents of global-data maps (.data, .rodata, .bss, ...). */
LIBBPF_API int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
LIBBPF_API void *bpf_map__initial_value(const struct bpf_map *map, size_t *psize);
/* Maps the loader made itself (global data, .kconfig, ...). */
LIBBPF_API bool bpf_map__is_internal(const struct bpf_map *map);

LIBBPF_API int bpf_map__set_pin_path(struct bpf_map *map, const char *path);
LIBBPF_API const char *bpf_map__pin_path(const struct bpf_map *map);
LIBBPF_API bool bpf_map__is_pinned(const struct bpf_map *map);
LIBBPF_API int bpf_map__pin(struct bpf_map *map, const char *path);
LIBBPF_API int bpf_map__unpin(struct bpf_map *map, const char *path);

/* Map-in-map. */
LIBBPF_API int bpf_map__set_inner_map_fd(struct bpf_map *map, int fd);
LIBBPF_API struct bpf_map *bpf_map__inner_map(struct bpf_map *map);

/* Element access by map handle; key_sz/value_sz must match the map
 * (value_sz covers all CPUs for per-CPU maps).
 */
LIBBPF_API int bpf_map__lookup_elem(const struct bpf_map *map, const void *key, size_t key_sz,
				    void *value, size_t value_sz, __u64 flags);
LIBBPF_API int bpf_map__update_elem(const struct bpf_map *map, const void *key, size_t key_sz,
				    const void *value, size_t value_sz, __u64 flags);
LIBBPF_API int bpf_map__delete_elem(const struct bpf_map *map, const void *key, size_t key_sz,
				    __u64 flags);
LIBBPF_API int bpf_map__lookup_and_delete_elem(const struct bpf_map *map, const void *key,
					       size_t key_sz, void *value, size_t value_sz,
					       __u64 flags);
LIBBPF_API int bpf_map__get_next_key(const struct bpf_map *map, const void *cur_key,
				     void *next_key, size_t key_sz);

/* 1.7: restrict the map to one program (by its hash). */
LIBBPF_API int bpf_map__set_exclusive_program(struct bpf_map *map, struct bpf_program *prog);
LIBBPF_API struct bpf_program *bpf_map__exclusive_program(struct bpf_map *map);

/* --- XDP ----------------------------------------------------------------------------- */

/* Unused by any function; kept for source compatibility. */
struct bpf_xdp_set_link_opts {
	size_t sz;
	int old_fd;
	size_t :0;
};
#define bpf_xdp_set_link_opts__last_field old_fd

struct bpf_xdp_attach_opts {
	size_t sz;
	int old_prog_fd;		/* replace only this program */
	size_t :0;
};
#define bpf_xdp_attach_opts__last_field old_prog_fd

struct bpf_xdp_query_opts {
	size_t sz;
	__u32 prog_id;			/* out, as are all the fields below */
	__u32 drv_prog_id;
	__u32 hw_prog_id;
	__u32 skb_prog_id;
	__u8 attach_mode;
	__u64 feature_flags;
	__u32 xdp_zc_max_segs;
	size_t :0;
};
#define bpf_xdp_query_opts__last_field xdp_zc_max_segs

LIBBPF_API int bpf_xdp_attach(int ifindex, int prog_fd, __u32 flags,
			      const struct bpf_xdp_attach_opts *opts);
LIBBPF_API int bpf_xdp_detach(int ifindex, __u32 flags, const struct bpf_xdp_attach_opts *opts);
LIBBPF_API int bpf_xdp_query(int ifindex, int flags, struct bpf_xdp_query_opts *opts);
LIBBPF_API int bpf_xdp_query_id(int ifindex, int flags, __u32 *prog_id);

/* --- TC (classic clsact/cls_bpf via netlink) ------------------------------------------- */

enum bpf_tc_attach_point {
	BPF_TC_INGRESS = 1 << 0,
	BPF_TC_EGRESS = 1 << 1,
	BPF_TC_CUSTOM = 1 << 2,		/* parent given in bpf_tc_hook.parent */
	BPF_TC_QDISC = 1 << 3,		/* qdisc given in bpf_tc_hook.qdisc */
};

/* A TC handle "major:minor". */
#define BPF_TC_PARENT(a, b) ((((a) << 16) & 0xFFFF0000U) | ((b) & 0x0000FFFFU))

enum bpf_tc_flags {
	BPF_TC_F_REPLACE = 1 << 0,
};

struct bpf_tc_hook {
	size_t sz;
	int ifindex;
	enum bpf_tc_attach_point attach_point;
	__u32 parent;
	__u32 handle;
	const char *qdisc;
	size_t :0;
};
#define bpf_tc_hook__last_field qdisc

struct bpf_tc_opts {
	size_t sz;
	int prog_fd;
	__u32 flags;
	__u32 prog_id;
	__u32 handle;
	__u32 priority;
	size_t :0;
};
#define bpf_tc_opts__last_field priority

LIBBPF_API int bpf_tc_hook_create(struct bpf_tc_hook *hook);
LIBBPF_API int bpf_tc_hook_destroy(struct bpf_tc_hook *hook);
LIBBPF_API int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);
LIBBPF_API int bpf_tc_detach(const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts);
LIBBPF_API int bpf_tc_query(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);

/* --- BPF ring buffers (BPF_MAP_TYPE_RINGBUF) ---------------------------------------------- */

struct ring_buffer;
struct ring;
struct user_ring_buffer;

/* Called per record; a negative return stops consumption and is returned. */
typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);

struct ring_buffer_opts {
	size_t sz;
};
#define ring_buffer_opts__last_field sz

LIBBPF_API struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn sample_cb,
						void *ctx, const struct ring_buffer_opts *opts);
LIBBPF_API void ring_buffer__free(struct ring_buffer *rb);
LIBBPF_API int ring_buffer__add(struct ring_buffer *rb, int map_fd,
				ring_buffer_sample_fn sample_cb, void *ctx);
/* Wait up to timeout_ms, then consume; returns the number of records. */
LIBBPF_API int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
LIBBPF_API int ring_buffer__consume(struct ring_buffer *rb);
LIBBPF_API int ring_buffer__consume_n(struct ring_buffer *rb, size_t n);
LIBBPF_API int ring_buffer__epoll_fd(const struct ring_buffer *rb);

/* One ring of a ring_buffer, by the order of ring_buffer__new/add. */
LIBBPF_API struct ring *ring_buffer__ring(struct ring_buffer *rb, unsigned int idx);
LIBBPF_API unsigned long ring__consumer_pos(const struct ring *r);
LIBBPF_API unsigned long ring__producer_pos(const struct ring *r);
LIBBPF_API size_t ring__avail_data_size(const struct ring *r);
LIBBPF_API size_t ring__size(const struct ring *r);
LIBBPF_API int ring__map_fd(const struct ring *r);
LIBBPF_API int ring__consume(struct ring *r);
LIBBPF_API int ring__consume_n(struct ring *r, size_t n);

/* BPF_MAP_TYPE_USER_RINGBUF: user space produces, BPF consumes. */
struct user_ring_buffer_opts {
	size_t sz;
};
#define user_ring_buffer_opts__last_field sz

LIBBPF_API struct user_ring_buffer *user_ring_buffer__new(int map_fd,
							  const struct user_ring_buffer_opts *opts);
LIBBPF_API void *user_ring_buffer__reserve(struct user_ring_buffer *rb, __u32 size);
LIBBPF_API void *user_ring_buffer__reserve_blocking(struct user_ring_buffer *rb, __u32 size,
						    int timeout_ms);
LIBBPF_API void user_ring_buffer__submit(struct user_ring_buffer *rb, void *sample);
LIBBPF_API void user_ring_buffer__discard(struct user_ring_buffer *rb, void *sample);
LIBBPF_API void user_ring_buffer__free(struct user_ring_buffer *rb);

/* --- perf buffers (BPF_MAP_TYPE_PERF_EVENT_ARRAY) ------------------------------------------- */

struct perf_buffer;

typedef void (*perf_buffer_sample_fn)(void *ctx, int cpu, void *data, __u32 size);
typedef void (*perf_buffer_lost_fn)(void *ctx, int cpu, __u64 cnt);

struct perf_buffer_opts {
	size_t sz;
	__u32 sample_period;		/* wakeup_events; 0 means 1 (1.2) */
	size_t :0;
};
#define perf_buffer_opts__last_field sample_period

/* page_cnt: data pages per CPU, a power of two. */
LIBBPF_API struct perf_buffer *perf_buffer__new(int map_fd, size_t page_cnt,
						perf_buffer_sample_fn sample_cb,
						perf_buffer_lost_fn lost_cb, void *ctx,
						const struct perf_buffer_opts *opts);

enum bpf_perf_event_ret {
	LIBBPF_PERF_EVENT_DONE = 0,
	LIBBPF_PERF_EVENT_ERROR = -1,
	LIBBPF_PERF_EVENT_CONT = -2,
};

struct perf_event_header;

typedef enum bpf_perf_event_ret (*perf_buffer_event_fn)(void *ctx, int cpu,
							 struct perf_event_header *event);

struct perf_buffer_raw_opts {
	size_t sz;
	long :0;			/* two removed fields; */
	long :0;			/* zero-width, so cpu_cnt stays at 8 */
	int cpu_cnt;			/* 0: every possible CPU */
	int *cpus;
	int *map_keys;
};
#define perf_buffer_raw_opts__last_field map_keys

struct perf_event_attr;

LIBBPF_API struct perf_buffer *perf_buffer__new_raw(int map_fd, size_t page_cnt,
						    struct perf_event_attr *attr,
						    perf_buffer_event_fn event_cb, void *ctx,
						    const struct perf_buffer_raw_opts *opts);
LIBBPF_API void perf_buffer__free(struct perf_buffer *pb);
LIBBPF_API int perf_buffer__epoll_fd(const struct perf_buffer *pb);
/* Returns the number of buffers that had data, or a negative error. */
LIBBPF_API int perf_buffer__poll(struct perf_buffer *pb, int timeout_ms);
LIBBPF_API int perf_buffer__consume(struct perf_buffer *pb);
LIBBPF_API int perf_buffer__consume_buffer(struct perf_buffer *pb, size_t buf_idx);
LIBBPF_API size_t perf_buffer__buffer_cnt(const struct perf_buffer *pb);
LIBBPF_API int perf_buffer__buffer_fd(const struct perf_buffer *pb, size_t buf_idx);
LIBBPF_API int perf_buffer__buffer(struct perf_buffer *pb, int buf_idx, void **buf,
				   size_t *buf_size);

/* --- line info of a loaded program ------------------------------------------------------ */

struct bpf_prog_linfo;
struct bpf_prog_info;

LIBBPF_API void bpf_prog_linfo__free(struct bpf_prog_linfo *prog_linfo);
LIBBPF_API struct bpf_prog_linfo *bpf_prog_linfo__new(const struct bpf_prog_info *info);
LIBBPF_API const struct bpf_line_info *
bpf_prog_linfo__lfind_addr_func(const struct bpf_prog_linfo *prog_linfo, __u64 addr,
				__u32 func_idx, __u32 nr_skip);
LIBBPF_API const struct bpf_line_info *
bpf_prog_linfo__lfind(const struct bpf_prog_linfo *prog_linfo, __u32 insn_off, __u32 nr_skip);

/* --- feature probes: 1 supported, 0 not, <0 error; opts must be NULL --------------------- */

LIBBPF_API int libbpf_probe_bpf_prog_type(enum bpf_prog_type prog_type, const void *opts);
LIBBPF_API int libbpf_probe_bpf_map_type(enum bpf_map_type map_type, const void *opts);
LIBBPF_API int libbpf_probe_bpf_helper(enum bpf_prog_type prog_type,
				       enum bpf_func_id helper_id, const void *opts);

/* From /sys/devices/system/cpu/possible; the per-CPU value count. */
LIBBPF_API int libbpf_num_possible_cpus(void);

/* --- skeletons (filled in by code from `bpftool gen skeleton`) --------------------------- */

/* Arrays of these are walked with the stride map_skel_sz / prog_skel_sz,
 * so older and newer generators both work.
 */
struct bpf_map_skeleton {
	const char *name;
	struct bpf_map **map;
	void **mmaped;			/* global data: set to the map's memory */
	struct bpf_link **link;		/* struct_ops maps (1.5; map_skel_sz >= 32) */
};

struct bpf_prog_skeleton {
	const char *name;
	struct bpf_program **prog;
	struct bpf_link **link;
};

struct bpf_object_skeleton {
	size_t sz;			/* sizeof(struct bpf_object_skeleton) */
	const char *name;
	const void *data;		/* the embedded ELF object */
	size_t data_sz;
	struct bpf_object **obj;
	int map_cnt;
	int map_skel_sz;
	struct bpf_map_skeleton *maps;
	int prog_cnt;
	int prog_skel_sz;
	struct bpf_prog_skeleton *progs;
};

LIBBPF_API int bpf_object__open_skeleton(struct bpf_object_skeleton *s,
					 const struct bpf_object_open_opts *opts);
LIBBPF_API int bpf_object__load_skeleton(struct bpf_object_skeleton *s);
LIBBPF_API int bpf_object__attach_skeleton(struct bpf_object_skeleton *s);
LIBBPF_API void bpf_object__detach_skeleton(struct bpf_object_skeleton *s);
/* Closes the object and frees s, s->maps and s->progs with free(). */
LIBBPF_API void bpf_object__destroy_skeleton(struct bpf_object_skeleton *s);

/* Subskeletons: views of a library's part of an object opened elsewhere. */
struct bpf_var_skeleton {
	const char *name;
	struct bpf_map **map;
	void **addr;
};

struct bpf_object_subskeleton {
	size_t sz;
	const struct bpf_object *obj;
	int map_cnt;
	int map_skel_sz;
	struct bpf_map_skeleton *maps;
	int prog_cnt;
	int prog_skel_sz;
	struct bpf_prog_skeleton *progs;
	int var_cnt;
	int var_skel_sz;
	struct bpf_var_skeleton *vars;
};

LIBBPF_API int bpf_object__open_subskeleton(struct bpf_object_subskeleton *s);
LIBBPF_API void bpf_object__destroy_subskeleton(struct bpf_object_subskeleton *s);

/* Light skeletons: record the load as a loader program. */
struct gen_loader_opts {
	size_t sz;
	const char *data;		/* out */
	const char *insns;		/* out */
	__u32 data_sz;
	__u32 insns_sz;
	bool gen_hash;
};
#define gen_loader_opts__last_field gen_hash

LIBBPF_API int bpf_object__gen_loader(struct bpf_object *obj, struct gen_loader_opts *opts);

/* Value of a tristate CONFIG_ extern (y/n/m). */
enum libbpf_tristate {
	TRI_NO = 0,
	TRI_YES = 1,
	TRI_MODULE = 2,
};

/* --- static linking of BPF objects ------------------------------------------------------- */

struct bpf_linker_opts {
	size_t sz;
};
#define bpf_linker_opts__last_field sz

struct bpf_linker_file_opts {
	size_t sz;
};
#define bpf_linker_file_opts__last_field sz

struct bpf_linker;

LIBBPF_API struct bpf_linker *bpf_linker__new(const char *filename, struct bpf_linker_opts *opts);
LIBBPF_API struct bpf_linker *bpf_linker__new_fd(int fd, struct bpf_linker_opts *opts);
LIBBPF_API int bpf_linker__add_file(struct bpf_linker *linker, const char *filename,
				    const struct bpf_linker_file_opts *opts);
LIBBPF_API int bpf_linker__add_fd(struct bpf_linker *linker, int fd,
				  const struct bpf_linker_file_opts *opts);
LIBBPF_API int bpf_linker__add_buf(struct bpf_linker *linker, void *buf, size_t buf_sz,
				   const struct bpf_linker_file_opts *opts);
LIBBPF_API int bpf_linker__finalize(struct bpf_linker *linker);
LIBBPF_API void bpf_linker__free(struct bpf_linker *linker);

/* --- custom SEC() handlers ------------------------------------------------------------- */

typedef int (*libbpf_prog_setup_fn_t)(struct bpf_program *prog, long cookie);
typedef int (*libbpf_prog_prepare_load_fn_t)(struct bpf_program *prog,
					     struct bpf_prog_load_opts *opts, long cookie);
typedef int (*libbpf_prog_attach_fn_t)(const struct bpf_program *prog, long cookie,
				       struct bpf_link **link);

struct libbpf_prog_handler_opts {
	size_t sz;
	long cookie;			/* passed to the callbacks */
	libbpf_prog_setup_fn_t prog_setup_fn;		/* at open */
	libbpf_prog_prepare_load_fn_t prog_prepare_load_fn;	/* before each load */
	libbpf_prog_attach_fn_t prog_attach_fn;		/* bpf_program__attach */
};
#define libbpf_prog_handler_opts__last_field prog_attach_fn

/* sec: as in SEC(); NULL is a fallback for unmatched sections. Returns an
 * id for libbpf_unregister_prog_handler.
 */
LIBBPF_API int libbpf_register_prog_handler(const char *sec, enum bpf_prog_type prog_type,
					    enum bpf_attach_type exp_attach_type,
					    const struct libbpf_prog_handler_opts *opts);
LIBBPF_API int libbpf_unregister_prog_handler(int handler_id);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* __LIBBPF_LIBBPF_H */
