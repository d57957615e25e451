//! libbpf's `bpf.h`: the thin fd wrappers over `bpf(2)`, served by the
//! userspace backend for userbpf's own objects and by the kernel for kernel
//! objects (see "Kernel objects" below).
//!
//! Each wrapper keeps libbpf 1.7's signature and error convention (the
//! negative errno, and `errno` set) and answers with the errno the kernel
//! gives for the same call, in the kernel's order of checks. The kernel's
//! behaviour was taken from its sources and checked against Linux 6.18 (the
//! test `tests/bpf_api.rs` runs the C program `tests/bpf_api.c` on both). Checks the map
//! types decide (element semantics, type-specific errnos) stay in
//! `userbpf_runtime::maps`; this module does what the kernel's syscall layer
//! does: fd and permission checks, attribute validation, key and value
//! copies, batching, ids, object info, pins.
//!
//! # Objects and fds
//!
//! - A map fd is an fd of the map's memfd. `bpf_map_create` returns a new fd
//!   (dup'd, `O_CLOEXEC`, never 0..2, like libbpf's `ensure_good_fd`) and
//!   drops its [`Map`]: the fd keeps the memory alive. Calls map it again
//!   with [`Map::open`] and keep the mapping in a cache by file identity,
//!   which forgets a map once no fd of the process names it (checked at
//!   most once a second, and before any id lookup), so a closed map goes
//!   away as in the kernel. A call costs an `fcntl` and an `fstat` on top
//!   of the map operation.
//! - Access modes are per fd, as in the kernel: `BPF_F_RDONLY` /
//!   `BPF_F_WRONLY` at creation, `BPF_OBJ_GET` or `GET_FD_BY_ID` give an
//!   `O_RDONLY` / `O_WRONLY` fd, and a frozen map is not writable through
//!   any fd.
//! - A program fd is an fd of its sealed program file;
//!   [`userspace::program_by_fd`] finds the loaded program by file identity.
//! - Anything else is refused as the kernel refuses a non-BPF fd: `EBADF`
//!   for a closed fd, `EINVAL` for a file that is not one of ours (except
//!   `bpf_obj_get_info_by_fd`, which says `EBADFD` for a closed fd, as the
//!   kernel does).
//! - NULL pointers never fault: where the kernel would copy from or to them
//!   the call fails with `EFAULT`; pointers only libbpf itself dereferences
//!   (`count`, `info_len`, `next_id`) fail with `EINVAL` where libbpf would
//!   crash. Non-NULL pointers must be valid, as with libbpf.
//!
//! # Kernel objects
//!
//! Every wrapper that takes a map, program, link or BTF fd serves both
//! kinds of fd. One `fstat` tells them apart (it is the call the userspace
//! path makes anyway, for the map cache's file identity): userbpf's maps
//! and programs are memfds, regular files; anything else (kernel BPF objects
//! are anon inodes) goes to the kernel through `bpf(2)` exactly as libbpf's
//! `bpf.c` makes the call (submodule `kernel`): element operations, freeze,
//! the batch calls (`*count` written back), `bpf_obj_get_info_by_fd` and its
//! typed variants, `bpf_prog_test_run_opts` (the kernel's test run, its
//! outputs set within the caller's `sz`), `bpf_obj_pin`, and the calls
//! only kernel objects have (`bpf_prog_stream_read`, whose streams a
//! userbpf program cannot write, so they read empty; `bpf_prog_assoc_struct_ops`;
//! `bpf_token_create`). A foreign fd that is no BPF object gets the
//! kernel's `EINVAL`, as before.
//!
//! Where new objects go, by `USERBPF_BACKEND`
//! (`userbpf_libbpf_compat::backend::placement`):
//!
//! - `kernel`: `bpf_map_create` and `bpf_prog_load` create kernel objects
//!   (libbpf's `EAGAIN` attempts, the `E2BIG` func/line info fix-up, the
//!   level-1 log retry); ids (`bpf_*_get_next_id`, `bpf_*_get_fd_by_id`) are
//!   the kernel's; the feature probes (`libbpf_probe_bpf_*`) probe the kernel
//!   as libbpf's `libbpf_probes.c` does.
//! - `auto` (the default) and `user`: objects are created in user space, as
//!   before, with one exception in `auto` mode: what only the kernel can
//!   serve follows its fds there (a map-in-map whose inner map is a kernel
//!   map, a program whose instructions or `fd_array` name a kernel map; in
//!   user space both would fail with `EINVAL`). Ids are userbpf's namespace
//!   ids: kernel ids and userbpf's overlap (both count from 1), so one id
//!   space cannot serve both without guessing; objects of the other kind
//!   are reached through their fds and pins. The probes answer for the
//!   userspace backend.
//! - BTF (`bpf_btf_load`, `btf__load_into_kernel`, in `btf_api`) is a kernel
//!   concept: it goes to the kernel in `kernel` mode, and in `auto` mode when
//!   the process may use the kernel's BPF.
//!
//! Pins: a kernel object is pinned into the real bpffs (`BPF_OBJ_PIN`);
//! `bpf_obj_get` asks the real bpffs first and falls back to userbpf's pins
//! (below) where the path does not exist for real; the two never share a
//! path (pinning over a live pin of the other kind is `EEXIST`).
//!
//! # Program types that load in user space
//!
//! `KPROBE` (kprobes and uprobes, context `struct pt_regs`), `TRACEPOINT`
//! (the tracepoint record), `PERF_EVENT` (`struct bpf_perf_event_data`),
//! `RAW_TRACEPOINT` (an array of u64 arguments) and `SYSCALL` (a plain
//! buffer; sleepable only, as in the kernel). Everything else, fentry/fexit
//! (`TRACING`) and the networking types included, fails to load with
//! `EINVAL`, as on a kernel without that type, so feature probes pick the
//! kprobe / tracepoint variants of a tool. There is no verifier: a load
//! validates the instructions, resolves map references and helpers, and
//! JIT-compiles. The log has the kernel's closing statistics line (every
//! instruction counted once) on success, the reason on failure.
//!
//! `bpf_prog_test_run_opts` runs the program in this process: raw
//! tracepoint and syscall programs exactly as the kernel's runners do
//! (same attribute checks, the syscall context written back to `ctx_in`);
//! kprobe, tracepoint and perf-event programs, which the kernel cannot
//! test-run (`ENOTSUPP`), like its generic runners (`ctx_in` copied into a
//! zeroed context of the type's size, `repeat`, the average `duration`,
//! `ctx_out` with `ENOSPC` when too small).
//!
//! # Ids
//!
//! Ids are namespace-wide (`userbpf_runtime::ids`). Lookups by id
//! (`*_get_next_id`, `*_get_fd_by_id`) go through a list of
//! [`ObjectDirectory`]s: this process (every map file it has an fd of, so
//! also every map it has mapped, and the programs it loaded), then the
//! other loaders of the namespace through the registry
//! (`userbpf_runtime::registry`), then whatever [`add_object_directory`]
//! adds. A program of another process found this way is loaded into this
//! one under its own id and program file. The registry lists what loaders
//! publish: `bpf_prog_load` publishes the program (the backend does) and
//! the maps it uses, `bpf_obj_pin` the pinned map; a map that only its
//! creator's fd knows is not published (the registry needs an fd the loader
//! keeps open, which would keep the map alive after the caller closed it),
//! so other processes cannot find it by id until a program uses it or it
//! is pinned.
//!
//! # Pins
//!
//! A memfd cannot be linked into a filesystem, and copying a map into a
//! file under `/dev/shm` would make a second map, so a pin keeps the object
//! alive instead: `bpf_obj_pin` dups the fd into a process-wide table (the
//! object lives as long as the pinning process, even if the caller closes
//! its fd) and writes a small record, the object's kind, id, the pinning
//! pid, the held fd number and the file's (dev, ino), to a file of a
//! virtual bpffs under the namespace directory:
//! `<namespace>/bpffs/<absolute path>`. `bpf_obj_get` reads the record and
//! opens `/proc/<pid>/fd/<fd>` (checking the file identity), so another
//! process of the same user gets the same map, or loads the same program
//! (same id and program file) into itself.
//!
//! Limits, compared with bpffs:
//! - a pin lives as long as the process that made it; afterwards it is
//!   stale, and `bpf_obj_get` removes it and fails with `ENOENT`;
//! - only paths under `/sys/fs/bpf` or another mounted bpffs are pin paths
//!   (elsewhere: `EPERM`, as the kernel says), but the pin files are ours:
//!   `unlink()`, `stat()` or `ls` on the real path do not see them, and
//!   missing parent directories are created instead of failing `ENOENT`;
//! - reaching another process's fds needs the same user and a dumpable
//!   pinning process (`/proc/<pid>/fd` rules).

use std::collections::{BTreeSet, HashMap};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use userbpf_libbpf_compat::backend::userspace::{self, UserspaceProgram};
use userbpf_runtime::ids::{next_id, IdKind};
use userbpf_runtime::image::{ImageError, ProgramImage};
use userbpf_runtime::isa::{
    Insn, BPF_PSEUDO_BTF_ID, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE, BPF_PSEUDO_MAP_VALUE, LDDW,
};
use userbpf_runtime::maps::{
    flags as mflags, map_type as mt, InnerSpec, Map, MapError, MapHeader, MapSpec, MAP_MAGIC,
};
use userbpf_runtime::registry;
use userbpf_runtime::shm::{FileId, PAGE_SIZE};
use userbpf_runtime::vm::VmError;

use crate::abi::FfiReturn;
use crate::error::AbiError;
use crate::ffi_fn;
use crate::opts::{read_opts, OptsStruct};
use crate::print;
use crate::sha256::sha256;

mod kernel;

use userbpf_libbpf_compat::backend::kernel::sys::cmd as kcmd;

// ---------------------------------------------------------------------------
// Constants of linux/bpf.h and the kernel
// ---------------------------------------------------------------------------

/// The kernel's internal `ENOTSUPP`, which `bpf(2)` does return to user
/// space for operations a map or program type lacks.
pub const ENOTSUPP: i32 = 524;

const BPF_OBJ_NAME_LEN: usize = 16;
const BPF_TAG_SIZE: usize = 8;

/// `enum bpf_prog_type` values this module refers to.
pub mod prog_type {
    pub const UNSPEC: u32 = 0;
    pub const SOCKET_FILTER: u32 = 1;
    pub const KPROBE: u32 = 2;
    pub const TRACEPOINT: u32 = 5;
    pub const PERF_EVENT: u32 = 7;
    pub const RAW_TRACEPOINT: u32 = 17;
    pub const TRACING: u32 = 26;
    pub const STRUCT_OPS: u32 = 27;
    pub const EXT: u32 = 28;
    pub const LSM: u32 = 29;
    pub const SYSCALL: u32 = 31;
    pub const NETFILTER: u32 = 32;
}

/// Program types the userspace backend loads (see the module docs).
pub const USERSPACE_PROG_TYPES: [u32; 5] = [
    prog_type::KPROBE,
    prog_type::TRACEPOINT,
    prog_type::PERF_EVENT,
    prog_type::RAW_TRACEPOINT,
    prog_type::SYSCALL,
];

/// Map types the userspace backend serves.
pub const USERSPACE_MAP_TYPES: [u32; 18] = [
    mt::HASH,
    mt::ARRAY,
    mt::PROG_ARRAY,
    mt::PERF_EVENT_ARRAY,
    mt::PERCPU_HASH,
    mt::PERCPU_ARRAY,
    mt::STACK_TRACE,
    mt::CGROUP_ARRAY,
    mt::LRU_HASH,
    mt::LRU_PERCPU_HASH,
    mt::LPM_TRIE,
    mt::ARRAY_OF_MAPS,
    mt::HASH_OF_MAPS,
    mt::QUEUE,
    mt::STACK,
    mt::RINGBUF,
    mt::BLOOM_FILTER,
    mt::USER_RINGBUF,
];

/// Map flags the syscall layer looks at (`linux/bpf.h`).
mod f {
    pub use super::mflags::*;
    pub const BPF_F_STACK_BUILD_ID: u32 = 1 << 5;
    pub const BPF_F_PRESERVE_ELEMS: u32 = 1 << 11;
    pub const BPF_F_TOKEN_FD: u32 = 1 << 16;
    pub const BPF_F_ACCESS_MASK: u32 =
        BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;
    /// `BPF_OBJ_PIN` / `BPF_OBJ_GET` file flag: `path_fd` is set.
    pub const BPF_F_PATH_FD: u32 = 1 << 14;
    /// `bpf_prog_load` flags.
    pub const BPF_F_SLEEPABLE: u32 = 1 << 4;
    pub const PROG_FLAGS_MASK: u32 = 1 | 2 | 4 | 8 | 16 | 32 | 64 | 128 | (1 << 16);
    /// `BPF_PROG_TEST_RUN` flags.
    pub const BPF_F_TEST_RUN_ON_CPU: u32 = 1;
}

/// `KMALLOC_MAX_SIZE` on x86-64 (order-10 pages).
const KMALLOC_MAX_SIZE: u64 = 1 << 22;
/// `PCPU_MIN_UNIT_SIZE`: the largest per-CPU value.
const PCPU_MIN_UNIT_SIZE: u64 = 32 << 10;
/// `sizeof(struct htab_elem)` on x86-64.
const HTAB_ELEM_SIZE: u64 = 48;
/// `BPF_COMPLEXITY_LIMIT_INSNS`.
const MAX_INSNS: usize = 1_000_000;
/// `MAX_USED_MAPS`.
const MAX_USED_MAPS: usize = 64;
/// `MAX_BPF_FUNC_ARGS * sizeof(u64)`: the largest raw tracepoint context.
const RAW_TP_CTX_MAX: usize = 12 * 8;
/// `sizeof(struct pt_regs)` on x86-64.
const PT_REGS_SIZE: usize = 168;
/// `sizeof(struct bpf_perf_event_data)`: regs, sample_period, addr.
const PERF_EVENT_CTX_SIZE: usize = PT_REGS_SIZE + 16;
/// Slack behind every test-run context, so that a JIT-compiled program
/// reading past a short context (which the kernel's verifier would have
/// refused) reads zeros we own.
const CTX_SLACK: usize = 4096;

// ---------------------------------------------------------------------------
// C structs (libbpf 1.7's bpf.h and linux/bpf.h, x86-64 / aarch64 layout)
// ---------------------------------------------------------------------------

/// `struct bpf_map_create_opts`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfMapCreateOpts {
    pub sz: usize,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub inner_map_fd: u32,
    pub map_flags: u32,
    pub map_extra: u64,
    pub numa_node: u32,
    pub map_ifindex: u32,
    pub value_type_btf_obj_fd: i32,
    pub token_fd: u32,
    pub excl_prog_hash: *const c_void,
    pub excl_prog_hash_size: u32,
}

/// `struct bpf_prog_load_opts`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfProgLoadOpts {
    pub sz: usize,
    pub attempts: c_int,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub prog_flags: u32,
    pub prog_ifindex: u32,
    pub kern_version: u32,
    pub attach_btf_id: u32,
    pub attach_prog_fd: u32,
    pub attach_btf_obj_fd: u32,
    pub fd_array: *const c_int,
    pub func_info: *const c_void,
    pub func_info_cnt: u32,
    pub func_info_rec_size: u32,
    pub line_info: *const c_void,
    pub line_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: *mut c_char,
    pub log_true_size: u32,
    pub token_fd: u32,
    pub fd_array_cnt: u32,
}

/// `struct bpf_map_batch_opts`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfMapBatchOpts {
    pub sz: usize,
    pub elem_flags: u64,
    pub flags: u64,
}

/// `struct bpf_obj_pin_opts` (and `bpf_obj_get_opts`, same layout).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfObjPinOpts {
    pub sz: usize,
    pub file_flags: u32,
    pub path_fd: c_int,
}

/// `struct bpf_obj_get_opts`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfObjGetOpts {
    pub sz: usize,
    pub file_flags: u32,
    pub path_fd: c_int,
}

/// `struct bpf_get_fd_by_id_opts`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfGetFdByIdOpts {
    pub sz: usize,
    pub open_flags: u32,
    pub token_fd: u32,
}

/// `struct bpf_test_run_opts`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BpfTestRunOpts {
    pub sz: usize,
    pub data_in: *const c_void,
    pub data_out: *mut c_void,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub ctx_in: *const c_void,
    pub ctx_out: *mut c_void,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub retval: u32,
    pub repeat: c_int,
    pub duration: u32,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
}

macro_rules! opts_struct {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        // SAFETY: repr(C), starts with `size_t sz`, only integers and raw
        // pointers.
        unsafe impl OptsStruct for $t {
            const NAME: &'static str = $name;
        }
    )*};
}

opts_struct! {
    BpfMapCreateOpts => "bpf_map_create_opts",
    BpfProgLoadOpts => "bpf_prog_load_opts",
    BpfMapBatchOpts => "bpf_map_batch_opts",
    BpfObjPinOpts => "bpf_obj_pin_opts",
    BpfObjGetOpts => "bpf_obj_get_opts",
    BpfGetFdByIdOpts => "bpf_get_fd_by_id_opts",
    BpfTestRunOpts => "bpf_test_run_opts",
}

const _: () = {
    assert!(size_of::<BpfMapCreateOpts>() == 72);
    assert!(size_of::<BpfProgLoadOpts>() == 120);
    assert!(offset_of!(BpfProgLoadOpts, log_true_size) == 104);
    assert!(size_of::<BpfMapBatchOpts>() == 24);
    assert!(size_of::<BpfObjPinOpts>() == 16);
    assert!(size_of::<BpfGetFdByIdOpts>() == 16);
    assert!(size_of::<BpfTestRunOpts>() == 80);
    assert!(size_of::<BpfMapInfo>() == 104);
    assert!(size_of::<BpfProgInfo>() == 232);
    assert!(offset_of!(BpfProgInfo, verified_insns) == 216);
};

/// `struct bpf_map_info` (Linux 6.18).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default)]
pub struct BpfMapInfo {
    pub type_: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; BPF_OBJ_NAME_LEN],
    pub ifindex: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_id: u32,
    pub map_extra: u64,
    pub hash: u64,
    pub hash_size: u32,
}

/// `struct bpf_prog_info` (Linux 6.18). `gpl_compatible` is bit 0 of the
/// word after `ifindex`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default)]
pub struct BpfProgInfo {
    pub type_: u32,
    pub id: u32,
    pub tag: [u8; BPF_TAG_SIZE],
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    pub jited_prog_insns: u64,
    pub xlated_prog_insns: u64,
    pub load_time: u64,
    pub created_by_uid: u32,
    pub nr_map_ids: u32,
    pub map_ids: u64,
    pub name: [u8; BPF_OBJ_NAME_LEN],
    pub ifindex: u32,
    pub gpl_compatible: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub nr_jited_ksyms: u32,
    pub nr_jited_func_lens: u32,
    pub jited_ksyms: u64,
    pub jited_func_lens: u64,
    pub btf_id: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub nr_func_info: u32,
    pub nr_line_info: u32,
    pub line_info: u64,
    pub jited_line_info: u64,
    pub nr_jited_line_info: u32,
    pub line_info_rec_size: u32,
    pub jited_line_info_rec_size: u32,
    pub nr_prog_tags: u32,
    pub prog_tags: u64,
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
    pub verified_insns: u32,
    pub attach_btf_obj_id: u32,
    pub attach_btf_id: u32,
}

// ---------------------------------------------------------------------------
// Errors and small helpers
// ---------------------------------------------------------------------------

type Res<T> = Result<T, AbiError>;

fn err<T>(e: i32) -> Res<T> {
    Err(AbiError::Errno(e))
}

fn map_err(e: MapError) -> AbiError {
    AbiError::Errno(e.errno())
}

/// The errno of a failed map operation as `bpf(2)` reports it: a type
/// without the operation answers the kernel's `ENOTSUPP` (524; the bloom
/// filter's own `EOPNOTSUPP` for next-key and delete excepted).
fn op_err(map: &Map) -> impl Fn(MapError) -> AbiError + '_ {
    move |e| match e {
        MapError::NotSupported if map.map_type() != mt::BLOOM_FILTER => AbiError::Errno(ENOTSUPP),
        other => map_err(other),
    }
}

/// The C return value of a wrapper: the value, or `-errno` with errno set.
fn ret(r: Res<c_int>) -> c_int {
    r.unwrap_or_else(|e| c_int::from_error(&e))
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The file status flags of `fd` (`fcntl(F_GETFL)`), `EBADF` if closed.
fn fd_flags(fd: RawFd) -> Res<c_int> {
    if fd < 0 {
        return err(libc::EBADF);
    }
    // SAFETY: fcntl(F_GETFL) only inspects the descriptor table.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return err(libc::EBADF);
    }
    Ok(fl)
}

/// Runs `f` with `fd` borrowed: the caller's fd, open for the whole call
/// (checked with [`fd_flags`] first).
fn with_fd<T>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
    // SAFETY: the fd is open (callers check it) and stays open while `f`
    // runs: nothing in this library closes a caller's fd.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(borrowed)
}

/// libbpf's `ensure_good_fd`: never hand out 0, 1 or 2.
fn into_good_fd(fd: OwnedFd) -> Res<c_int> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd.into_raw_fd());
    }
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own; the new fd is ours.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if raw < 0 {
        return err(io_errno(&std::io::Error::last_os_error()));
    }
    drop(fd);
    Ok(raw)
}

/// A new fd for the file `fd` names, opened with access `mode`
/// (`O_RDONLY`, `O_WRONLY` or `O_RDWR`), through `/proc/<pid>/fd`.
fn reopen(pid: u32, fd: RawFd, mode: c_int) -> std::io::Result<OwnedFd> {
    let path = if pid == std::process::id() {
        format!("/proc/self/fd/{fd}")
    } else {
        format!("/proc/{pid}/fd/{fd}")
    };
    let c = std::ffi::CString::new(path).expect("no NUL in a /proc path");
    // SAFETY: a valid C string; the result is a fresh fd we own.
    let raw = unsafe { libc::open(c.as_ptr(), mode | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// An fd for the file `fd` names with access `mode`: a dup for `O_RDWR`
/// (same open file), a new open file description otherwise.
fn fd_with_mode(fd: BorrowedFd<'_>, mode: c_int) -> Res<OwnedFd> {
    let r = if mode == libc::O_RDWR {
        fd.try_clone_to_owned()
    } else {
        reopen(std::process::id(), fd.as_raw_fd(), mode)
    };
    r.map_err(|e| AbiError::Errno(io_errno(&e)))
}

/// `bpf_get_file_flag`: `BPF_F_RDONLY` / `BPF_F_WRONLY` as an access mode.
fn file_mode(flags: u32) -> Res<c_int> {
    let (rd, wr) = (flags & f::BPF_F_RDONLY != 0, flags & f::BPF_F_WRONLY != 0);
    match (rd, wr) {
        (true, true) => err(libc::EINVAL),
        (true, false) => Ok(libc::O_RDONLY),
        (false, true) => Ok(libc::O_WRONLY),
        (false, false) => Ok(libc::O_RDWR),
    }
}

/// `bpf_obj_name_cpy`: up to 15 of `[A-Za-z0-9_.]`, else `EINVAL`.
fn object_name(name: *const c_char) -> Res<String> {
    if name.is_null() {
        return Ok(String::new());
    }
    // SAFETY: libbpf's contract: a NUL-terminated string. libbpf copies at
    // most 15 bytes of it (libbpf_strlcpy into the 16-byte attr field).
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    let bytes = &bytes[..bytes.len().min(BPF_OBJ_NAME_LEN - 1)];
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return err(libc::EINVAL);
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn name_bytes(name: &str) -> [u8; BPF_OBJ_NAME_LEN] {
    let mut out = [0u8; BPF_OBJ_NAME_LEN];
    let n = name.len().min(BPF_OBJ_NAME_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// `struct bpf_insn` bytes at `ptr`, `n` of them.
///
/// # Safety
/// `ptr` must be valid for `8 * n` bytes of reads.
unsafe fn read_insns(ptr: *const c_void, n: usize) -> Vec<Insn> {
    // SAFETY: caller contract.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), n * 8) };
    bytes
        .chunks_exact(8)
        .map(|c| Insn::from_bytes(c.try_into().expect("8-byte chunk")))
        .collect()
}

/// `OPTS_SET`: writes a `u32` output field at `offset` of the caller's opts
/// struct if the caller's `sz` covers it.
///
/// # Safety
/// `opts` must be NULL or a valid opts struct of `sz` writable bytes.
unsafe fn opts_set_u32(opts: *mut c_void, offset: usize, value: u32) {
    if opts.is_null() {
        return;
    }
    // SAFETY: a non-NULL opts starts with its size_t sz (caller contract).
    let sz = unsafe { opts.cast::<usize>().read_unaligned() };
    if sz >= offset + 4 {
        // SAFETY: the field lies within the caller's sz bytes.
        unsafe {
            opts.cast::<u8>()
                .add(offset)
                .cast::<u32>()
                .write_unaligned(value)
        };
    }
}

/// The kernel's `bpf_check_uarg_tail_zero`: a caller struct larger than
/// ours must be zero beyond it.
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes of reads.
unsafe fn check_tail_zero(ptr: *const u8, known: usize, len: usize) -> Res<()> {
    if len > PAGE_SIZE {
        return err(libc::E2BIG);
    }
    if len <= known {
        return Ok(());
    }
    if ptr.is_null() {
        return err(libc::EFAULT);
    }
    // SAFETY: caller contract.
    let tail = unsafe { std::slice::from_raw_parts(ptr.add(known), len - known) };
    if tail.iter().any(|&b| b != 0) {
        return err(libc::E2BIG);
    }
    Ok(())
}

fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A CPU list such as `0-3,8` (`/sys/devices/system/...`) as a set.
fn parse_cpu_set(text: &str) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
            set.extend(lo..=hi.min(lo.saturating_add(65536)));
        }
    }
    set
}

fn online(list: &str, n: u32) -> bool {
    std::fs::read_to_string(list)
        .map(|t| parse_cpu_set(&t).contains(&n))
        .unwrap_or(n == 0)
}

// ---------------------------------------------------------------------------
// Map and program fds
// ---------------------------------------------------------------------------

/// A map fd: the map and what the fd may do with it (the kernel's
/// `map_get_sys_perms`: the fd's access mode, no writes once frozen).
struct MapFd {
    map: Arc<Map>,
    can_read: bool,
    can_write: bool,
}

/// Maps this process has looked up through fds, kept mapped between calls
/// (mapping a map again costs an `mmap`, the type's `open` and a `munmap`:
/// 15 to 25 us per call instead of about 1). A map is dropped from the
/// cache by [`sweep_map_cache`] once no fd of this process names its file
/// any more and nothing else holds it, as the kernel frees a map when its
/// last fd is closed.
struct MapCache {
    maps: HashMap<FileId, Arc<Map>>,
    last_sweep: Instant,
}

fn map_cache() -> &'static Mutex<MapCache> {
    static CACHE: OnceLock<Mutex<MapCache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(MapCache {
            maps: HashMap::new(),
            last_sweep: Instant::now(),
        })
    })
}

/// How often (at most) lookups sweep the cache, and its size that forces a
/// sweep.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
const SWEEP_SIZE: usize = 64;

/// Drops the cached maps that only the cache keeps alive: no other `Arc`
/// (programs, pins, the object loader) and no fd of this process but the
/// map's own.
fn sweep_map_cache(cache: &mut MapCache) {
    cache.last_sweep = Instant::now();
    if cache.maps.is_empty() {
        return;
    }
    let mut fds_per_file: HashMap<FileId, usize> = HashMap::new();
    for fd in own_fds(MAP_FILE_PREFIX) {
        if fd_flags(fd).is_err() {
            continue;
        }
        if let Ok((id, _)) = with_fd(fd, FileId::of) {
            *fds_per_file.entry(id).or_default() += 1;
        }
    }
    cache.maps.retain(|id, map| {
        Arc::strong_count(map) > 1 || fds_per_file.get(id).copied().unwrap_or(0) > 1
    });
}

/// Sweeps now (before ids are listed, so that closed maps are not).
fn sweep_now() {
    let mut cache = map_cache().lock().unwrap_or_else(|e| e.into_inner());
    sweep_map_cache(&mut cache);
}

/// Which backend an fd's object lives on, from one `fstat`: userbpf's maps
/// and programs are memfds (regular files); kernel BPF objects are anon
/// inodes, which are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FdBackend {
    /// A regular file: its identity (the map cache's key).
    User(FileId),
    /// Anything else, sent to the kernel (which says `EINVAL` for what is
    /// not a BPF object, as the userspace backend does).
    Kernel,
}

/// The backend of `fd`; `EBADF` for a closed (or negative) fd.
fn classify(fd: RawFd) -> Res<FdBackend> {
    if fd < 0 {
        return err(libc::EBADF);
    }
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer; fstat only inspects the descriptor.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return err(libc::EBADF);
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
        Ok(FdBackend::User(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }))
    } else {
        Ok(FdBackend::Kernel)
    }
}

/// Whether `fd` is a kernel BPF object (map, program, link or BTF): one
/// `fstat` for userbpf's own fds, a `/proc/self/fd` read for the others.
pub fn is_kernel_fd(fd: RawFd) -> bool {
    matches!(classify(fd), Ok(FdBackend::Kernel))
        && userbpf_libbpf_compat::backend::kernel::sys::kernel_fd_kind(fd).is_some()
}

/// The map `fd` names: `EBADF` for a closed fd, `EINVAL` for anything
/// that is not a userbpf map file.
fn map_fd(fd: RawFd) -> Res<MapFd> {
    map_fd_of(fd, classify(fd)?)
}

/// [`map_fd`] after [`classify`].
fn map_fd_of(fd: RawFd, backend: FdBackend) -> Res<MapFd> {
    install_resolver();
    let FdBackend::User(file) = backend else {
        return err(libc::EINVAL);
    };
    let mode = fd_flags(fd)? & libc::O_ACCMODE;
    let cached = map_cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .maps
        .get(&file)
        .cloned();
    let map = match cached {
        Some(map) => map,
        None => {
            let map = open_map_fd(fd, mode)?;
            let mut cache = map_cache().lock().unwrap_or_else(|e| e.into_inner());
            let map = cache.maps.entry(map.file_id()).or_insert(map).clone();
            if cache.maps.len() > SWEEP_SIZE || cache.last_sweep.elapsed() > SWEEP_INTERVAL {
                sweep_map_cache(&mut cache);
            }
            map
        }
    };
    let frozen = map.is_frozen();
    Ok(MapFd {
        can_read: mode != libc::O_WRONLY,
        can_write: mode != libc::O_RDONLY && !frozen,
        map,
    })
}

/// Maps the map file `fd` names.
fn open_map_fd(fd: RawFd, mode: c_int) -> Res<Arc<Map>> {
    with_fd(fd, |b| match Map::open(b) {
        Ok(m) => Ok(m),
        // An O_RDONLY / O_WRONLY fd cannot be mapped read-write: map the
        // file through a read-write fd of our own.
        Err(MapError::NotAMap) if mode != libc::O_RDWR => {
            reopen(std::process::id(), fd, libc::O_RDWR)
                .map_err(|_| AbiError::Errno(libc::EINVAL))
                .and_then(|own| Map::open(own.as_fd()).map_err(not_a_map))
        }
        Err(e) => Err(not_a_map(e)),
    })
}

/// Why an fd is not a map, as the kernel says it.
fn not_a_map(e: MapError) -> AbiError {
    match e {
        MapError::NotAMap | MapError::Io(_) | MapError::Invalid(_) => AbiError::Errno(libc::EINVAL),
        other => map_err(other),
    }
}

/// The program `fd` names: `EBADF` for a closed fd, `EINVAL` for anything
/// that is not a program this process knows.
fn prog_fd(fd: RawFd) -> Res<Arc<UserspaceProgram>> {
    fd_flags(fd)?;
    with_fd(fd, userspace::program_by_fd).ok_or(AbiError::Errno(libc::EINVAL))
}

// ---------------------------------------------------------------------------
// Ids: object directories
// ---------------------------------------------------------------------------

/// Kinds of objects with namespace-wide ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjKind {
    Map,
    Prog,
    Btf,
    Link,
}

/// A place objects are found by id: this process, the other loaders of the
/// namespace (through the registry), or whatever [`add_object_directory`]
/// adds.
///
/// Implementations must not call `Map::by_id` (it may come back here).
pub trait ObjectDirectory: Send + Sync {
    /// Ids of live objects of `kind` this directory can open, any order.
    fn ids(&self, kind: ObjKind) -> Vec<u32>;
    /// An fd of the object's file: for a map its memfd (opened with access
    /// `mode`), for a program its program file. `None` if not here.
    fn open(&self, kind: ObjKind, id: u32, mode: c_int) -> Option<OwnedFd>;
}

fn extra_directories() -> &'static RwLock<Vec<&'static dyn ObjectDirectory>> {
    static DIRS: OnceLock<RwLock<Vec<&'static dyn ObjectDirectory>>> = OnceLock::new();
    DIRS.get_or_init(Default::default)
}

/// Adds a directory searched after this process and the registry (for
/// objects the registry does not list, such as BTF objects, once they
/// exist).
pub fn add_object_directory(dir: &'static dyn ObjectDirectory) {
    extra_directories()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir);
}

/// This process first, then the registered directories.
fn directories() -> Vec<&'static dyn ObjectDirectory> {
    static LOCAL: LocalDirectory = LocalDirectory;
    static REGISTRY: RegistryDirectory = RegistryDirectory;
    let mut dirs: Vec<&'static dyn ObjectDirectory> = vec![&LOCAL, &REGISTRY];
    dirs.extend(
        extra_directories()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied(),
    );
    dirs
}

/// The objects of this process: every map file it has an fd of (which
/// includes every map it has mapped: a mapped [`Map`] holds its memfd) and
/// every program it loaded.
struct LocalDirectory;

/// `(fd, link target)` of this process's fds whose target starts with
/// `prefix`.
fn own_fds(prefix: &str) -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd: RawFd = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        target.to_str()?.starts_with(prefix).then_some(fd)
    })
    .collect()
}

/// memfd names of map files (`ShmFile::create` names them `userbpf:<name>`).
const MAP_FILE_PREFIX: &str = "/memfd:userbpf:";

/// The id in the header of the map file `fd` names, read without mapping
/// it; `None` if it is not a map file of this layout.
fn map_file_id(fd: BorrowedFd<'_>) -> Option<u32> {
    let (_, size) = FileId::of(fd).ok()?;
    let size = usize::try_from(size).ok()?;
    if size < PAGE_SIZE || !size.is_multiple_of(PAGE_SIZE) {
        return None;
    }
    let mut page = vec![0u8; size_of::<MapHeader>()];
    // SAFETY: pread into a buffer of exactly that many bytes.
    let n = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            page.as_mut_ptr().cast(),
            page.len(),
            (size - PAGE_SIZE) as libc::off_t,
        )
    };
    if n != page.len() as isize {
        return None;
    }
    let word = |off: usize, len: usize| -> u64 {
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&page[off..off + len]);
        u64::from_le_bytes(b)
    };
    if word(offset_of!(MapHeader, magic), 8) != MAP_MAGIC {
        return None;
    }
    Some(word(offset_of!(MapHeader, id), 4) as u32)
}

impl ObjectDirectory for LocalDirectory {
    fn ids(&self, kind: ObjKind) -> Vec<u32> {
        match kind {
            ObjKind::Map => {
                sweep_now();
                let mut ids: Vec<u32> = own_fds(MAP_FILE_PREFIX)
                    .into_iter()
                    .filter_map(|fd| with_fd(fd, map_file_id))
                    .collect();
                // Maps only a loaded program keeps alive (it holds them).
                for p in userspace::loaded_programs() {
                    ids.extend(p.image.map_ids.iter().copied().filter(|&id| id != 0));
                }
                ids
            }
            ObjKind::Prog => userspace::loaded_programs().iter().map(|p| p.id).collect(),
            ObjKind::Btf | ObjKind::Link => Vec::new(),
        }
    }

    fn open(&self, kind: ObjKind, id: u32, mode: c_int) -> Option<OwnedFd> {
        match kind {
            ObjKind::Map => {
                sweep_now();
                let fd = own_fds(MAP_FILE_PREFIX)
                    .into_iter()
                    .find(|&fd| with_fd(fd, map_file_id) == Some(id));
                if let Some(fd) = fd {
                    return with_fd(fd, |b| fd_with_mode(b, mode)).ok();
                }
                // A map only a program holds: the program's Map is mapped,
                // so its memfd is among our fds; nothing else to try.
                None
            }
            ObjKind::Prog => userspace::program_by_id(id).and_then(|p| p.fd.try_clone().ok()),
            ObjKind::Btf | ObjKind::Link => None,
        }
    }
}

/// Makes `Map::by_id` look in the registry too (the backend's resolver;
/// the first call in the process installs it).
fn install_resolver() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(userspace::install_resolvers);
}

/// A map by id: mapped here or in the registry, else among this process's
/// fds.
fn map_by_id(id: u32) -> Option<Arc<Map>> {
    install_resolver();
    Map::by_id(id).or_else(|| {
        let fd = LocalDirectory.open(ObjKind::Map, id, libc::O_RDWR)?;
        Map::open(fd.as_fd()).ok()
    })
}

/// Other loader processes of the namespace, through the registry
/// (`userbpf_runtime::registry`): their published maps, programs and links.
struct RegistryDirectory;

impl RegistryDirectory {
    fn kind(kind: ObjKind) -> Option<u32> {
        match kind {
            ObjKind::Map => Some(registry::kind::MAP),
            ObjKind::Prog => Some(registry::kind::PROG),
            ObjKind::Link => Some(registry::kind::LINK),
            ObjKind::Btf => None,
        }
    }

    /// `(pid, record)` of the live records of `kind`; this process's own
    /// maps and programs are the local directory's.
    fn records(kind: ObjKind) -> Vec<(u32, registry::RecordData)> {
        let Some(k) = Self::kind(kind) else {
            return Vec::new();
        };
        let me = std::process::id();
        let dir = userbpf_runtime::namespace::namespace_dir();
        registry::scan(&dir, false)
            .into_iter()
            .filter(|l| l.alive && (l.pid != me || kind == ObjKind::Link))
            .flat_map(|l| {
                let pid = l.pid;
                l.file.records().into_iter().map(move |r| (pid, r))
            })
            .filter(|(_, r)| r.kind == k)
            .collect()
    }
}

impl ObjectDirectory for RegistryDirectory {
    fn ids(&self, kind: ObjKind) -> Vec<u32> {
        Self::records(kind).into_iter().map(|(_, r)| r.id).collect()
    }

    fn open(&self, kind: ObjKind, id: u32, mode: c_int) -> Option<OwnedFd> {
        let mode = if kind == ObjKind::Prog {
            libc::O_RDONLY
        } else {
            mode
        };
        Self::records(kind)
            .into_iter()
            .filter(|(_, r)| r.id == id && r.fd >= 0)
            .find_map(|(pid, r)| {
                let fd = reopen(pid, r.fd, mode).ok()?;
                // The loader may have closed and reused the fd since.
                let same = match kind {
                    ObjKind::Map => map_file_id(fd.as_fd()) == Some(id),
                    _ => true,
                };
                same.then_some(fd)
            })
    }
}

/// Registry records of maps this module made reachable by id (maps of
/// programs loaded with `bpf_prog_load`, pinned maps), by map id. Each
/// holds its map, whose memfd is the fd the record names.
type PublishedMaps = Mutex<HashMap<u32, (Arc<Map>, Option<registry::Registration>)>>;

fn published_maps() -> &'static PublishedMaps {
    static PUBLISHED: OnceLock<PublishedMaps> = OnceLock::new();
    PUBLISHED.get_or_init(Default::default)
}

/// Publishes `map` in this process's registry (once), so other processes
/// (the agents running a program that uses it) find it by id. The map is
/// kept mapped from then on, as the registry needs its fd open.
fn publish_map(map: &Arc<Map>) {
    let mut published = published_maps().lock().unwrap_or_else(|e| e.into_inner());
    published
        .entry(map.id())
        .or_insert_with(|| (map.clone(), registry::publish_map(map).ok()));
}

fn next_id_of(kind: ObjKind, start: u32, next: *mut u32) -> Res<c_int> {
    if kernel::kernel_mode() {
        let command = match kind {
            ObjKind::Map => kcmd::MAP_GET_NEXT_ID,
            ObjKind::Prog => kcmd::PROG_GET_NEXT_ID,
            ObjKind::Btf => kcmd::BTF_GET_NEXT_ID,
            ObjKind::Link => kcmd::LINK_GET_NEXT_ID,
        };
        // SAFETY: `next` NULL or valid (the callers' contract).
        return unsafe { kernel::next_id(command, start, next) };
    }
    if next.is_null() {
        return err(libc::EINVAL);
    }
    if start >= i32::MAX as u32 {
        return err(libc::EINVAL);
    }
    let found = directories()
        .into_iter()
        .flat_map(|d| d.ids(kind))
        .filter(|&id| id > start)
        .min();
    match found {
        Some(id) => {
            // SAFETY: non-NULL (checked), a u32 out-pointer by contract.
            unsafe { next.write_unaligned(id) };
            Ok(0)
        }
        None => err(libc::ENOENT),
    }
}

fn fd_by_id(kind: ObjKind, id: u32, mode: c_int) -> Res<c_int> {
    install_resolver();
    for d in directories() {
        let Some(fd) = d.open(kind, id, mode) else {
            continue;
        };
        if kind == ObjKind::Prog {
            adopt_program(fd.as_fd(), id, None)?;
        }
        return into_good_fd(fd);
    }
    err(libc::ENOENT)
}

/// Makes the program whose file `fd` names (loaded by another process, id
/// `id`) runnable here, unless this process has it already. Its maps are
/// found by id, through the pinning process `hint_pid` if given.
fn adopt_program(fd: BorrowedFd<'_>, id: u32, hint_pid: Option<u32>) -> Res<Arc<UserspaceProgram>> {
    if let Some(p) = userspace::program_by_fd(fd) {
        return Ok(p);
    }
    let own = fd
        .try_clone_to_owned()
        .map_err(|e| AbiError::Errno(io_errno(&e)))?;
    let mut file = std::fs::File::from(own);
    let image =
        userbpf_runtime::image::file::read(&mut file).map_err(|_| AbiError::Errno(libc::EINVAL))?;
    let mut maps = Vec::with_capacity(image.map_ids.len());
    for &mid in &image.map_ids {
        if mid == 0 {
            maps.push(None);
            continue;
        }
        let map = map_by_id(mid)
            .or_else(|| hint_pid.and_then(|pid| foreign_map(pid, mid)))
            .ok_or(AbiError::Errno(libc::ENOENT))?;
        maps.push(Some(map));
    }
    userspace::adopt_program(OwnedFd::from(file), id, image, maps).map_err(|e| {
        print::warn(&format!(
            "failed to load program {id} of another process: {e}\n"
        ));
        AbiError::Errno(e.errno())
    })
}

/// Map `id` among the fds of process `pid`.
fn foreign_map(pid: u32, id: u32) -> Option<Arc<Map>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !target
            .to_str()
            .is_some_and(|t| t.starts_with(MAP_FILE_PREFIX))
        {
            continue;
        }
        let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<RawFd>().ok()) else {
            continue;
        };
        let Ok(fd) = reopen(pid, n, libc::O_RDWR) else {
            continue;
        };
        if map_file_id(fd.as_fd()) == Some(id) {
            return Map::open(fd.as_fd()).ok();
        }
    }
    None
}

// ---------------------------------------------------------------------------
// BPF_MAP_CREATE
// ---------------------------------------------------------------------------

/// Map types the kernel knows (`enum bpf_map_type`, Linux 6.18): anything
/// else is `EINVAL`; known but not served in user space is `EOPNOTSUPP`.
const MAX_KERNEL_MAP_TYPE: u32 = 33;

/// `bpf_map_flags_access_ok`.
fn access_ok(flags: u32) -> bool {
    let sys = f::BPF_F_RDONLY | f::BPF_F_WRONLY;
    let prog = f::BPF_F_RDONLY_PROG | f::BPF_F_WRONLY_PROG;
    flags & sys != sys && flags & prog != prog
}

fn perf_event_max_stack() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_max_stack")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(127)
}

/// The attributes of `BPF_MAP_CREATE` the type checks look at.
#[derive(Clone, Copy, Debug)]
pub struct CreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub map_extra: u64,
}

/// The kernel's per-type `map_alloc_check` (and the checks at the top of
/// `map_alloc`) for the types served in user space.
pub fn check_map_attr(a: &CreateAttr) -> Result<(), i32> {
    use mt::*;
    let (t, k, v, m, fl) = (
        a.map_type,
        a.key_size,
        a.value_size,
        a.max_entries,
        a.map_flags,
    );
    let numa = fl & f::BPF_F_NUMA_NODE != 0;
    let einval = Err(libc::EINVAL);
    match t {
        ARRAY | PERCPU_ARRAY | PROG_ARRAY | PERF_EVENT_ARRAY | CGROUP_ARRAY | ARRAY_OF_MAPS => {
            if matches!(
                t,
                PROG_ARRAY | PERF_EVENT_ARRAY | CGROUP_ARRAY | ARRAY_OF_MAPS
            ) {
                // fd_array_map_alloc_check
                if v != 4 || fl & (f::BPF_F_RDONLY_PROG | f::BPF_F_WRONLY_PROG) != 0 {
                    return einval;
                }
            }
            let percpu = t == PERCPU_ARRAY;
            let mask = f::BPF_F_NUMA_NODE
                | f::BPF_F_MMAPABLE
                | f::BPF_F_ACCESS_MASK
                | f::BPF_F_PRESERVE_ELEMS
                | f::BPF_F_INNER_MAP;
            if m == 0 || k != 4 || v == 0 || fl & !mask != 0 || !access_ok(fl) || (percpu && numa) {
                return einval;
            }
            if t != ARRAY && fl & (f::BPF_F_MMAPABLE | f::BPF_F_INNER_MAP) != 0 {
                return einval;
            }
            if t != PERF_EVENT_ARRAY && fl & f::BPF_F_PRESERVE_ELEMS != 0 {
                return einval;
            }
            if v > i32::MAX as u32
                || (percpu && (v as u64).next_multiple_of(8) > PCPU_MIN_UNIT_SIZE)
            {
                return Err(libc::E2BIG);
            }
        }
        HASH | PERCPU_HASH | LRU_HASH | LRU_PERCPU_HASH | HASH_OF_MAPS => {
            if t == HASH_OF_MAPS && v != 4 {
                return einval;
            }
            let percpu = matches!(t, PERCPU_HASH | LRU_PERCPU_HASH);
            let lru = matches!(t, LRU_HASH | LRU_PERCPU_HASH);
            let prealloc = fl & f::BPF_F_NO_PREALLOC == 0;
            let percpu_lru = fl & f::BPF_F_NO_COMMON_LRU != 0;
            let mask = f::BPF_F_NO_PREALLOC
                | f::BPF_F_NO_COMMON_LRU
                | f::BPF_F_NUMA_NODE
                | f::BPF_F_ACCESS_MASK
                | f::BPF_F_ZERO_SEED;
            if fl & !mask != 0 || !access_ok(fl) {
                return einval;
            }
            if !lru && percpu_lru {
                return einval;
            }
            if lru && !prealloc {
                return Err(ENOTSUPP);
            }
            if numa && (percpu || percpu_lru) {
                return einval;
            }
            if m == 0 || k == 0 || v == 0 {
                return einval;
            }
            if k as u64 + v as u64 >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE
                || (percpu && (v as u64).next_multiple_of(8) > PCPU_MIN_UNIT_SIZE)
            {
                return Err(libc::E2BIG);
            }
        }
        STACK_TRACE => {
            let mask =
                f::BPF_F_NUMA_NODE | f::BPF_F_RDONLY | f::BPF_F_WRONLY | f::BPF_F_STACK_BUILD_ID;
            if fl & !mask != 0 {
                return einval;
            }
            if m == 0 || k != 4 || v < 8 || !v.is_multiple_of(8) {
                return einval;
            }
            let max_stack = perf_event_max_stack();
            if fl & f::BPF_F_STACK_BUILD_ID != 0 {
                // sizeof(struct bpf_stack_build_id)
                if !v.is_multiple_of(32) || v / 32 > max_stack {
                    return einval;
                }
            } else if v / 8 > max_stack {
                return einval;
            }
            if m > 1 << 31 {
                return Err(libc::E2BIG);
            }
        }
        LPM_TRIE => {
            // sizeof(struct bpf_lpm_trie_key_u8) + 1 ..= + 256; values up to
            // KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - sizeof(struct lpm_trie_node).
            let val_max = KMALLOC_MAX_SIZE - 256 - 32;
            let mask = f::BPF_F_NO_PREALLOC | f::BPF_F_NUMA_NODE | f::BPF_F_ACCESS_MASK;
            if m == 0
                || fl & f::BPF_F_NO_PREALLOC == 0
                || fl & !mask != 0
                || !access_ok(fl)
                || !(5..=260).contains(&k)
                || v == 0
                || v as u64 > val_max
            {
                return einval;
            }
        }
        QUEUE | STACK => {
            let mask = f::BPF_F_NUMA_NODE | f::BPF_F_ACCESS_MASK;
            if m == 0 || k != 0 || v == 0 || fl & !mask != 0 || !access_ok(fl) {
                return einval;
            }
            if v as u64 > KMALLOC_MAX_SIZE {
                return Err(libc::E2BIG);
            }
        }
        // The kernel makes both ring types with the same rules.
        RINGBUF | USER_RINGBUF => {
            if fl & !f::BPF_F_NUMA_NODE != 0 {
                return einval;
            }
            if k != 0 || v != 0 || !m.is_power_of_two() || !(m as usize).is_multiple_of(PAGE_SIZE) {
                return einval;
            }
        }
        BLOOM_FILTER => {
            let mask = f::BPF_F_NUMA_NODE | f::BPF_F_ZERO_SEED | f::BPF_F_ACCESS_MASK;
            if k != 0
                || v == 0
                || m == 0
                || fl & !mask != 0
                || !access_ok(fl)
                || a.map_extra & !0xf != 0
            {
                return einval;
            }
            if v as u64 > KMALLOC_MAX_SIZE {
                return Err(libc::E2BIG);
            }
        }
        0 => return einval,
        t if t > MAX_KERNEL_MAP_TYPE => return einval,
        _ => return Err(libc::EOPNOTSUPP),
    }
    Ok(())
}

/// The template of a map-in-map from its inner map (`bpf_map_meta_alloc`).
fn inner_template(inner_fd: RawFd) -> Res<InnerSpec> {
    let inner = map_fd(inner_fd)?.map;
    let s = inner.spec();
    if matches!(s.map_type, mt::ARRAY_OF_MAPS | mt::HASH_OF_MAPS) {
        return err(libc::EINVAL);
    }
    if s.map_type == mt::PROG_ARRAY {
        return err(ENOTSUPP);
    }
    Ok(InnerSpec {
        map_type: s.map_type,
        key_size: s.key_size,
        value_size: s.value_size,
        max_entries: s.max_entries,
        map_flags: s.map_flags,
    })
}

/// Number of the highest possible NUMA node + 1, and whether `node` is online.
fn numa_node_ok(node: u32) -> bool {
    online("/sys/devices/system/node/online", node)
}

/// Whether a map-in-map's inner map template is a kernel map (then the
/// outer map can only be a kernel map: `auto` mode creates it there).
fn uses_kernel_inner(o: Option<&BpfMapCreateOpts>) -> bool {
    o.is_some_and(|o| {
        let fd = o.inner_map_fd as RawFd;
        fd > 0 && classify(fd) == Ok(FdBackend::Kernel) && kernel::is_kernel_map(fd)
    })
}

/// `BPF_MAP_CREATE` on the userspace backend.
///
/// # Safety
/// `name` NULL or NUL-terminated; `opts` NULL or a valid opts struct.
unsafe fn map_create(
    map_type: u32,
    name: *const c_char,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    opts: *const BpfMapCreateOpts,
) -> Res<c_int> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts) }?;
    if kernel::kernel_mode() || (!kernel::user_mode() && uses_kernel_inner(o.as_ref())) {
        // SAFETY: caller contract.
        return unsafe {
            kernel::map_create(
                map_type,
                name,
                key_size,
                value_size,
                max_entries,
                o.as_ref(),
            )
        };
    }
    install_resolver();
    let o = o.unwrap_or(BpfMapCreateOpts {
        sz: 0,
        btf_fd: 0,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        btf_vmlinux_value_type_id: 0,
        inner_map_fd: 0,
        map_flags: 0,
        map_extra: 0,
        numa_node: 0,
        map_ifindex: 0,
        value_type_btf_obj_fd: 0,
        token_fd: 0,
        excl_prog_hash: std::ptr::null(),
        excl_prog_hash_size: 0,
    });
    let mut map_flags = o.map_flags;
    // A BPF token authorizes nothing here (no privileges are needed): the
    // flag is consumed as the kernel consumes it, the token is not checked.
    map_flags &= !f::BPF_F_TOKEN_FD;
    if o.btf_vmlinux_value_type_id != 0 {
        return err(libc::EINVAL);
    }
    if o.map_extra != 0 && map_type != mt::BLOOM_FILTER {
        return err(libc::EINVAL);
    }
    let mode = file_mode(map_flags)?;
    if map_flags & f::BPF_F_NUMA_NODE != 0 && !numa_node_ok(o.numa_node) {
        return err(libc::EINVAL);
    }
    if !o.excl_prog_hash.is_null() || o.excl_prog_hash_size != 0 {
        print::warn(
            "bpf_map_create: exclusive maps (excl_prog_hash) are not supported by userbpf\n",
        );
        return err(libc::EOPNOTSUPP);
    }
    let attr = CreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        map_extra: o.map_extra,
    };
    check_map_attr(&attr).map_err(AbiError::Errno)?;
    if o.map_ifindex != 0 {
        print::warn("bpf_map_create: device offload (map_ifindex) is not supported by userbpf\n");
        return err(libc::EOPNOTSUPP);
    }
    let inner = if matches!(map_type, mt::ARRAY_OF_MAPS | mt::HASH_OF_MAPS) {
        Some(inner_template(o.inner_map_fd as c_int)?)
    } else {
        None
    };
    let name = object_name(name)?;
    // BTF: the ids are recorded (bpf_map_info reports them); there are no
    // BTF objects in user space yet, so btf_fd is not checked, and a value
    // cannot declare a bpf_spin_lock through this call.
    if o.btf_key_type_id != 0 && o.btf_value_type_id == 0 {
        return err(libc::EINVAL);
    }
    let spec = MapSpec {
        map_type,
        key_size,
        value_size,
        max_entries,
        // BPF_F_RDONLY / BPF_F_WRONLY describe the fd, not the map
        // (bpf_map_flags_retain_permanent).
        map_flags: map_flags & !(f::BPF_F_RDONLY | f::BPF_F_WRONLY),
        map_extra: o.map_extra,
        name,
        btf_key_type_id: o.btf_key_type_id,
        btf_value_type_id: o.btf_value_type_id,
        inner,
        ..MapSpec::default()
    };
    let map = Map::create(&spec, next_id(IdKind::Map)).map_err(|e| match e {
        // A type whose implementation is missing in this build.
        MapError::NotSupported => AbiError::Errno(libc::EOPNOTSUPP),
        other => map_err(other),
    })?;
    let fd = fd_with_mode(map.fd(), mode)?;
    // The fd keeps the map (its memfd) alive; the mapping goes with `map`.
    drop(map);
    into_good_fd(fd)
}

ffi_fn! {
    /// `int bpf_map_create(enum bpf_map_type map_type, const char *map_name, __u32 key_size, __u32 value_size, __u32 max_entries, const struct bpf_map_create_opts *opts)`
    ///
    /// # Safety
    /// `map_name` NULL or NUL-terminated; `opts` NULL or valid.
    pub unsafe fn bpf_map_create(
        map_type: c_uint,
        map_name: *const c_char,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        opts: *const BpfMapCreateOpts,
    ) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_create(map_type, map_name, key_size, value_size, max_entries, opts) })
    }
}

// ---------------------------------------------------------------------------
// Element operations
// ---------------------------------------------------------------------------

/// `__bpf_copy_key`: `key_size` bytes, or nothing for maps without keys
/// (where a key pointer is `EINVAL`); NULL is `EFAULT`.
///
/// # Safety
/// `ptr` NULL or valid for `key_size` bytes.
unsafe fn copy_key(ptr: *const c_void, key_size: u32) -> Res<Vec<u8>> {
    if key_size == 0 {
        return if ptr.is_null() {
            Ok(Vec::new())
        } else {
            err(libc::EINVAL)
        };
    }
    if ptr.is_null() {
        return err(libc::EFAULT);
    }
    // SAFETY: caller contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), key_size as usize) }.to_vec())
}

/// Copies `bytes` out to a caller buffer; NULL is `EFAULT`.
///
/// # Safety
/// `ptr` NULL or valid for `bytes.len()` bytes of writes.
unsafe fn copy_out(ptr: *mut c_void, bytes: &[u8]) -> Res<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    if ptr.is_null() {
        return err(libc::EFAULT);
    }
    // SAFETY: caller contract; `bytes` is our own buffer.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.cast::<u8>(), bytes.len()) };
    Ok(())
}

/// Copies `len` bytes in from a caller buffer; NULL is `EFAULT`.
///
/// # Safety
/// `ptr` NULL or valid for `len` bytes of reads.
unsafe fn copy_in(ptr: *const c_void, len: usize) -> Res<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return err(libc::EFAULT);
    }
    // SAFETY: caller contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec())
}

/// `BPF_F_LOCK` needs a `bpf_spin_lock` in the value.
fn check_lock_flag(map: &Map, flags: u64) -> Res<()> {
    if flags & f::BPF_F_LOCK != 0 && map.spec().spin_lock_off.is_none() {
        return err(libc::EINVAL);
    }
    Ok(())
}

/// `BPF_MAP_LOOKUP_ELEM`.
///
/// # Safety
/// Pointers NULL or valid for the map's key / value size.
pub unsafe fn map_lookup(
    fd: RawFd,
    key: *const c_void,
    value: *mut c_void,
    flags: u64,
) -> Res<c_int> {
    let backend = classify(fd);
    if backend == Ok(FdBackend::Kernel) {
        // SAFETY: caller contract.
        return unsafe { kernel::map_elem(kcmd::MAP_LOOKUP_ELEM, fd, key, value, flags) };
    }
    if flags & !f::BPF_F_LOCK != 0 {
        return err(libc::EINVAL);
    }
    let m = map_fd_of(fd, backend?)?;
    if !m.can_read {
        return err(libc::EPERM);
    }
    check_lock_flag(&m.map, flags)?;
    // SAFETY: caller contract.
    let k = unsafe { copy_key(key, m.map.spec().key_size) }?;
    let size = m.map.syscall_value_size();
    let mut v = if m.map.map_type() == mt::BLOOM_FILTER {
        // A bloom filter looks up the value the caller passes.
        // SAFETY: caller contract.
        unsafe { copy_in(value, size) }?
    } else {
        vec![0u8; size]
    };
    m.map.lookup(&k, &mut v, flags).map_err(op_err(&m.map))?;
    if m.map.map_type() != mt::BLOOM_FILTER {
        // SAFETY: caller contract.
        unsafe { copy_out(value, &v) }?;
    }
    Ok(0)
}

/// `BPF_MAP_UPDATE_ELEM`.
///
/// # Safety
/// Pointers NULL or valid for the map's key / value size.
pub unsafe fn map_update(
    fd: RawFd,
    key: *const c_void,
    value: *const c_void,
    flags: u64,
) -> Res<c_int> {
    let backend = classify(fd);
    if backend == Ok(FdBackend::Kernel) {
        // SAFETY: caller contract (the kernel only reads the value).
        return unsafe {
            kernel::map_elem(kcmd::MAP_UPDATE_ELEM, fd, key, value.cast_mut(), flags)
        };
    }
    let m = map_fd_of(fd, backend?)?;
    if !m.can_write {
        return err(libc::EPERM);
    }
    check_lock_flag(&m.map, flags)?;
    // SAFETY: caller contract.
    let k = unsafe { copy_key(key, m.map.spec().key_size) }?;
    // SAFETY: caller contract.
    let v = unsafe { copy_in(value, m.map.syscall_value_size()) }?;
    m.map.update(&k, &v, flags).map_err(op_err(&m.map))?;
    Ok(0)
}

/// `BPF_MAP_DELETE_ELEM`.
///
/// # Safety
/// `key` NULL or valid for the map's key size.
pub unsafe fn map_delete(fd: RawFd, key: *const c_void, flags: u64) -> Res<c_int> {
    let backend = classify(fd);
    if backend == Ok(FdBackend::Kernel) {
        // SAFETY: caller contract.
        return unsafe {
            kernel::map_elem(kcmd::MAP_DELETE_ELEM, fd, key, std::ptr::null_mut(), flags)
        };
    }
    if flags != 0 {
        return err(libc::EINVAL);
    }
    let m = map_fd_of(fd, backend?)?;
    if !m.can_write {
        return err(libc::EPERM);
    }
    // SAFETY: caller contract.
    let k = unsafe { copy_key(key, m.map.spec().key_size) }?;
    m.map.delete(&k).map_err(op_err(&m.map))?;
    Ok(0)
}

/// `BPF_MAP_GET_NEXT_KEY`.
///
/// # Safety
/// `key` NULL or valid, `next` NULL or valid, for the map's key size.
pub unsafe fn map_next_key(fd: RawFd, key: *const c_void, next: *mut c_void) -> Res<c_int> {
    let backend = classify(fd);
    if backend == Ok(FdBackend::Kernel) {
        // SAFETY: caller contract.
        return unsafe { kernel::map_elem(kcmd::MAP_GET_NEXT_KEY, fd, key, next, 0) };
    }
    let m = map_fd_of(fd, backend?)?;
    if !m.can_read {
        return err(libc::EPERM);
    }
    let key_size = m.map.spec().key_size;
    let k = if key.is_null() {
        None
    } else {
        // SAFETY: caller contract.
        Some(unsafe { copy_key(key, key_size) }?)
    };
    let mut n = vec![0u8; key_size as usize];
    m.map
        .next_key(k.as_deref(), &mut n)
        .map_err(op_err(&m.map))?;
    // SAFETY: caller contract.
    unsafe { copy_out(next, &n) }?;
    Ok(0)
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
///
/// # Safety
/// Pointers NULL or valid for the map's key / value size.
pub unsafe fn map_lookup_and_delete(
    fd: RawFd,
    key: *const c_void,
    value: *mut c_void,
    flags: u64,
) -> Res<c_int> {
    let backend = classify(fd);
    if backend == Ok(FdBackend::Kernel) {
        // SAFETY: caller contract.
        return unsafe {
            kernel::map_elem(kcmd::MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value, flags)
        };
    }
    if flags & !f::BPF_F_LOCK != 0 {
        return err(libc::EINVAL);
    }
    let m = map_fd_of(fd, backend?)?;
    if !m.can_read || !m.can_write {
        return err(libc::EPERM);
    }
    let t = m.map.map_type();
    if flags != 0 && matches!(t, mt::QUEUE | mt::STACK) {
        return err(libc::EINVAL);
    }
    check_lock_flag(&m.map, flags)?;
    // SAFETY: caller contract.
    let k = unsafe { copy_key(key, m.map.spec().key_size) }?;
    let supported = matches!(
        t,
        mt::QUEUE
            | mt::STACK
            | mt::HASH
            | mt::PERCPU_HASH
            | mt::LRU_HASH
            | mt::LRU_PERCPU_HASH
            | mt::STACK_TRACE
    );
    if !supported {
        return err(ENOTSUPP);
    }
    let mut v = vec![0u8; m.map.syscall_value_size()];
    m.map
        .lookup_and_delete(&k, &mut v, flags)
        .map_err(op_err(&m.map))?;
    // SAFETY: caller contract.
    unsafe { copy_out(value, &v) }?;
    Ok(0)
}

/// `BPF_MAP_FREEZE`.
pub fn map_freeze(fd: RawFd) -> Res<c_int> {
    let backend = classify(fd)?;
    if backend == FdBackend::Kernel {
        return kernel::map_freeze(fd);
    }
    let m = map_fd_of(fd, backend)?;
    // Maps with special fields in their values cannot be frozen.
    if m.map.spec().spin_lock_off.is_some() {
        return err(ENOTSUPP);
    }
    if !m.can_write {
        return err(libc::EPERM);
    }
    m.map.freeze().map_err(map_err)?;
    Ok(0)
}

ffi_fn! {
    /// `int bpf_map_lookup_elem(int fd, const void *key, void *value)`
    ///
    /// # Safety
    /// `key` / `value` NULL or valid for the map's sizes.
    pub unsafe fn bpf_map_lookup_elem(fd: c_int, key: *const c_void, value: *mut c_void) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_lookup(fd, key, value, 0) })
    }
}

ffi_fn! {
    /// `int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, __u64 flags)`
    ///
    /// # Safety
    /// As [`bpf_map_lookup_elem`].
    pub unsafe fn bpf_map_lookup_elem_flags(fd: c_int, key: *const c_void, value: *mut c_void, flags: u64) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_lookup(fd, key, value, flags) })
    }
}

ffi_fn! {
    /// `int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)`
    ///
    /// # Safety
    /// `key` / `value` NULL or valid for the map's sizes.
    pub unsafe fn bpf_map_update_elem(fd: c_int, key: *const c_void, value: *const c_void, flags: u64) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_update(fd, key, value, flags) })
    }
}

ffi_fn! {
    /// `int bpf_map_delete_elem(int fd, const void *key)`
    ///
    /// # Safety
    /// `key` NULL or valid for the map's key size.
    pub unsafe fn bpf_map_delete_elem(fd: c_int, key: *const c_void) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_delete(fd, key, 0) })
    }
}

ffi_fn! {
    /// `int bpf_map_delete_elem_flags(int fd, const void *key, __u64 flags)`
    ///
    /// # Safety
    /// As [`bpf_map_delete_elem`].
    pub unsafe fn bpf_map_delete_elem_flags(fd: c_int, key: *const c_void, flags: u64) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_delete(fd, key, flags) })
    }
}

ffi_fn! {
    /// `int bpf_map_get_next_key(int fd, const void *key, void *next_key)`
    ///
    /// # Safety
    /// `key` / `next_key` NULL or valid for the map's key size.
    pub unsafe fn bpf_map_get_next_key(fd: c_int, key: *const c_void, next_key: *mut c_void) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_next_key(fd, key, next_key) })
    }
}

ffi_fn! {
    /// `int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value)`
    ///
    /// # Safety
    /// `key` / `value` NULL or valid for the map's sizes.
    pub unsafe fn bpf_map_lookup_and_delete_elem(fd: c_int, key: *const c_void, value: *mut c_void) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_lookup_and_delete(fd, key, value, 0) })
    }
}

ffi_fn! {
    /// `int bpf_map_lookup_and_delete_elem_flags(int fd, const void *key, void *value, __u64 flags)`
    ///
    /// # Safety
    /// As [`bpf_map_lookup_and_delete_elem`].
    pub unsafe fn bpf_map_lookup_and_delete_elem_flags(
        fd: c_int,
        key: *const c_void,
        value: *mut c_void,
        flags: u64,
    ) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_lookup_and_delete(fd, key, value, flags) })
    }
}

ffi_fn! {
    /// `int bpf_map_freeze(int fd)`
    pub fn bpf_map_freeze(fd: c_int) -> c_int {
        ret(map_freeze(fd))
    }
}

// ---------------------------------------------------------------------------
// Batch operations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchCmd {
    Lookup,
    LookupAndDelete,
    Update,
    Delete,
}

/// Which map types have which batch operation (Linux 6.18), and whether
/// lookups use the hash tables' bucket-token form.
fn batch_support(t: u32, cmd: BatchCmd) -> bool {
    use mt::*;
    let hash = matches!(
        t,
        HASH | PERCPU_HASH | LRU_HASH | LRU_PERCPU_HASH | HASH_OF_MAPS
    );
    match cmd {
        BatchCmd::Lookup => hash || matches!(t, ARRAY | PERCPU_ARRAY | LPM_TRIE | ARRAY_OF_MAPS),
        BatchCmd::LookupAndDelete => hash,
        BatchCmd::Update => hash || matches!(t, ARRAY | PERCPU_ARRAY | LPM_TRIE | ARRAY_OF_MAPS),
        BatchCmd::Delete => hash || t == LPM_TRIE,
    }
}

fn is_hash(t: u32) -> bool {
    matches!(
        t,
        mt::HASH | mt::PERCPU_HASH | mt::LRU_HASH | mt::LRU_PERCPU_HASH | mt::HASH_OF_MAPS
    )
}

/// The caller's batch buffers.
struct Batch {
    in_batch: *const c_void,
    out_batch: *mut c_void,
    keys: *mut c_void,
    values: *mut c_void,
    count: *mut u32,
    elem_flags: u64,
    flags: u64,
}

impl Batch {
    fn new(
        in_batch: *const c_void,
        out_batch: *mut c_void,
        keys: *mut c_void,
        values: *mut c_void,
        count: *mut u32,
    ) -> Batch {
        Batch {
            in_batch,
            out_batch,
            keys,
            values,
            count,
            elem_flags: 0,
            flags: 0,
        }
    }

    fn set_count(&self, n: u32) {
        // SAFETY: `count` is non-NULL (checked in `map_batch`) and valid
        // (libbpf contract).
        unsafe { self.count.write_unaligned(n) };
    }
}

/// `bpf_map_batch_common` and the kernel's `bpf_map_do_batch`.
///
/// # Safety
/// Buffers NULL or valid for `*count` elements, `opts` NULL or valid.
unsafe fn map_batch(
    cmd: BatchCmd,
    fd: RawFd,
    mut b: Batch,
    opts: *const BpfMapBatchOpts,
) -> Res<c_int> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts) }?;
    if b.count.is_null() {
        return err(libc::EINVAL);
    }
    b.elem_flags = o.map_or(0, |o| o.elem_flags);
    b.flags = o.map_or(0, |o| o.flags);
    let backend = classify(fd);
    if backend == Ok(FdBackend::Kernel) {
        let command = match cmd {
            BatchCmd::Lookup => kcmd::MAP_LOOKUP_BATCH,
            BatchCmd::LookupAndDelete => kcmd::MAP_LOOKUP_AND_DELETE_BATCH,
            BatchCmd::Update => kcmd::MAP_UPDATE_BATCH,
            BatchCmd::Delete => kcmd::MAP_DELETE_BATCH,
        };
        // SAFETY: caller contract; count is non-NULL (checked).
        return unsafe {
            kernel::map_batch(
                command,
                fd,
                b.in_batch,
                b.out_batch,
                b.keys,
                b.values,
                b.count,
                b.elem_flags,
                b.flags,
            )
        };
    }
    let m = map_fd_of(fd, backend?)?;
    let reads = matches!(cmd, BatchCmd::Lookup | BatchCmd::LookupAndDelete);
    let writes = cmd != BatchCmd::Lookup;
    if (reads && !m.can_read) || (writes && !m.can_write) {
        return err(libc::EPERM);
    }
    let t = m.map.map_type();
    if !batch_support(t, cmd) {
        return err(ENOTSUPP);
    }
    // SAFETY: the buffers are valid for `*count` elements (caller contract).
    unsafe {
        match cmd {
            BatchCmd::Lookup if is_hash(t) => hash_lookup_batch(&m.map, &b, false),
            BatchCmd::LookupAndDelete => hash_lookup_batch(&m.map, &b, true),
            BatchCmd::Lookup => generic_lookup_batch(&m.map, &b),
            BatchCmd::Update => generic_update_batch(&m.map, &b),
            BatchCmd::Delete => generic_delete_batch(&m.map, &b),
        }
    }
}

/// `generic_map_lookup_batch`: the batch token is a key.
///
/// # Safety
/// As [`map_batch`].
unsafe fn generic_lookup_batch(map: &Map, b: &Batch) -> Res<c_int> {
    if b.elem_flags & !f::BPF_F_LOCK != 0 {
        return err(libc::EINVAL);
    }
    check_lock_flag(map, b.elem_flags)?;
    let key_size = map.spec().key_size as usize;
    let value_size = map.syscall_value_size();
    // SAFETY: count is valid (caller contract).
    let max_count = unsafe { b.count.read_unaligned() };
    if max_count == 0 {
        return Ok(0);
    }
    b.set_count(0);
    let mut prev: Option<Vec<u8>> = if b.in_batch.is_null() {
        None
    } else {
        // SAFETY: in_batch holds a key (caller contract).
        Some(unsafe { copy_in(b.in_batch, key_size) }?)
    };
    let mut key = vec![0u8; key_size];
    let mut value = vec![0u8; value_size];
    let mut cp: u32 = 0;
    let mut last: Result<(), MapError> = Ok(());
    while cp < max_count {
        last = map.next_key(prev.as_deref(), &mut key);
        if last.is_err() {
            break;
        }
        match map.lookup(&key, &mut value, b.elem_flags) {
            Ok(()) => {
                let off = cp as usize;
                // SAFETY: keys / values hold max_count elements (caller contract).
                unsafe {
                    copy_out(
                        b.keys.cast::<u8>().wrapping_add(off * key_size).cast(),
                        &key,
                    )?;
                    copy_out(
                        b.values.cast::<u8>().wrapping_add(off * value_size).cast(),
                        &value,
                    )?;
                }
                cp += 1;
            }
            Err(MapError::NotFound) => {}
            Err(e) => return Err(op_err(map)(e)),
        }
        prev = Some(key.clone());
    }
    b.set_count(cp);
    if cp > 0 {
        if let Some(p) = &prev {
            // SAFETY: out_batch holds a key (caller contract).
            unsafe { copy_out(b.out_batch, p) }?;
        }
    }
    last.map_err(op_err(map))?;
    Ok(0)
}

/// The hash tables' batch lookup (`__htab_map_lookup_and_delete_batch`).
/// The kernel's token is a bucket index; ours, also a `u32`, is the
/// position in the iteration order (entries before it are skipped), so a
/// call returns up to `count` entries, never `ENOSPC`, and says `ENOENT`
/// in the call that reaches the end.
///
/// # Safety
/// As [`map_batch`].
unsafe fn hash_lookup_batch(map: &Map, b: &Batch, delete: bool) -> Res<c_int> {
    if b.elem_flags & !f::BPF_F_LOCK != 0 {
        return err(libc::EINVAL);
    }
    check_lock_flag(map, b.elem_flags)?;
    if b.flags != 0 {
        return err(libc::EINVAL);
    }
    // SAFETY: count is valid (caller contract).
    let max_count = unsafe { b.count.read_unaligned() };
    if max_count == 0 {
        return Ok(0);
    }
    b.set_count(0);
    let pos = if b.in_batch.is_null() {
        0
    } else {
        // SAFETY: in_batch holds a u32 token (caller contract).
        let bytes = unsafe { copy_in(b.in_batch, 4) }?;
        u32::from_ne_bytes(bytes.try_into().expect("4 bytes"))
    };
    let key_size = map.spec().key_size as usize;
    let value_size = map.syscall_value_size();
    let mut cur: Option<Vec<u8>> = None;
    let mut key = vec![0u8; key_size];
    for _ in 0..pos {
        match map.next_key(cur.as_deref(), &mut key) {
            Ok(()) => cur = Some(key.clone()),
            Err(MapError::NotFound) => return err(libc::ENOENT),
            Err(e) => return Err(op_err(map)(e)),
        }
    }
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut ended = false;
    let mut value = vec![0u8; value_size];
    while entries.len() < max_count as usize {
        match map.next_key(cur.as_deref(), &mut key) {
            Ok(()) => cur = Some(key.clone()),
            Err(MapError::NotFound) => {
                ended = true;
                break;
            }
            Err(e) => return Err(op_err(map)(e)),
        }
        match map.lookup(&key, &mut value, b.elem_flags) {
            Ok(()) => entries.push((key.clone(), value.clone())),
            Err(MapError::NotFound) => {}
            Err(e) => return Err(op_err(map)(e)),
        }
    }
    if !ended
        && matches!(
            map.next_key(cur.as_deref(), &mut key),
            Err(MapError::NotFound)
        )
    {
        ended = true;
    }
    if delete {
        for (k, _) in &entries {
            match map.delete(k) {
                Ok(()) | Err(MapError::NotFound) => {}
                Err(e) => return Err(op_err(map)(e)),
            }
        }
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        // SAFETY: keys / values hold max_count elements (caller contract).
        unsafe {
            copy_out(b.keys.cast::<u8>().wrapping_add(i * key_size).cast(), k)?;
            copy_out(b.values.cast::<u8>().wrapping_add(i * value_size).cast(), v)?;
        }
    }
    // Deleted entries no longer count before the position.
    let next = if delete {
        pos
    } else {
        pos + entries.len() as u32
    };
    // SAFETY: out_batch holds a u32 token (caller contract).
    unsafe { copy_out(b.out_batch, &next.to_ne_bytes()) }?;
    b.set_count(entries.len() as u32);
    if ended {
        return err(libc::ENOENT);
    }
    Ok(0)
}

/// `generic_map_update_batch`.
///
/// # Safety
/// As [`map_batch`].
unsafe fn generic_update_batch(map: &Map, b: &Batch) -> Res<c_int> {
    if b.elem_flags & !f::BPF_F_LOCK != 0 {
        return err(libc::EINVAL);
    }
    check_lock_flag(map, b.elem_flags)?;
    // SAFETY: count is valid (caller contract).
    let max_count = unsafe { b.count.read_unaligned() };
    if max_count == 0 {
        return Ok(0);
    }
    b.set_count(0);
    let key_size = map.spec().key_size as usize;
    let value_size = map.syscall_value_size();
    let mut cp = 0u32;
    let mut result = Ok(0);
    while cp < max_count {
        let off = cp as usize;
        // SAFETY: keys / values hold max_count elements (caller contract).
        let kv = unsafe {
            copy_in(
                b.keys.cast::<u8>().wrapping_add(off * key_size).cast(),
                key_size,
            )
            .and_then(|k| {
                copy_in(
                    b.values.cast::<u8>().wrapping_add(off * value_size).cast(),
                    value_size,
                )
                .map(|v| (k, v))
            })
        };
        let (k, v) = match kv {
            Ok(kv) => kv,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if let Err(e) = map.update(&k, &v, b.elem_flags) {
            result = Err(op_err(map)(e));
            break;
        }
        cp += 1;
    }
    b.set_count(cp);
    result
}

/// `generic_map_delete_batch`.
///
/// # Safety
/// As [`map_batch`].
unsafe fn generic_delete_batch(map: &Map, b: &Batch) -> Res<c_int> {
    if b.elem_flags & !f::BPF_F_LOCK != 0 {
        return err(libc::EINVAL);
    }
    // SAFETY: count is valid (caller contract).
    let max_count = unsafe { b.count.read_unaligned() };
    if max_count == 0 {
        return Ok(0);
    }
    b.set_count(0);
    let key_size = map.spec().key_size as usize;
    let mut cp = 0u32;
    let mut result = Ok(0);
    while cp < max_count {
        // SAFETY: keys hold max_count elements (caller contract).
        let k = match unsafe {
            copy_in(
                b.keys
                    .cast::<u8>()
                    .wrapping_add(cp as usize * key_size)
                    .cast(),
                key_size,
            )
        } {
            Ok(k) => k,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if let Err(e) = map.delete(&k) {
            result = Err(op_err(map)(e));
            break;
        }
        cp += 1;
    }
    b.set_count(cp);
    result
}

ffi_fn! {
    /// `int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, __u32 *count, const struct bpf_map_batch_opts *opts)`
    ///
    /// # Safety
    /// Buffers NULL or valid for `*count` elements; `opts` NULL or valid.
    pub unsafe fn bpf_map_lookup_batch(
        fd: c_int,
        in_batch: *mut c_void,
        out_batch: *mut c_void,
        keys: *mut c_void,
        values: *mut c_void,
        count: *mut u32,
        opts: *const BpfMapBatchOpts,
    ) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_batch(BatchCmd::Lookup, fd, Batch::new(in_batch, out_batch, keys, values, count), opts) })
    }
}

ffi_fn! {
    /// `int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, __u32 *count, const struct bpf_map_batch_opts *opts)`
    ///
    /// # Safety
    /// As [`bpf_map_lookup_batch`].
    pub unsafe fn bpf_map_lookup_and_delete_batch(
        fd: c_int,
        in_batch: *mut c_void,
        out_batch: *mut c_void,
        keys: *mut c_void,
        values: *mut c_void,
        count: *mut u32,
        opts: *const BpfMapBatchOpts,
    ) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { map_batch(BatchCmd::LookupAndDelete, fd, Batch::new(in_batch, out_batch, keys, values, count), opts) })
    }
}

ffi_fn! {
    /// `int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count, const struct bpf_map_batch_opts *opts)`
    ///
    /// # Safety
    /// As [`bpf_map_lookup_batch`].
    pub unsafe fn bpf_map_update_batch(
        fd: c_int,
        keys: *const c_void,
        values: *const c_void,
        count: *mut u32,
        opts: *const BpfMapBatchOpts,
    ) -> c_int {
        // SAFETY: caller contract (the buffers are only read).
        ret(unsafe {
            map_batch(BatchCmd::Update, fd, Batch::new(std::ptr::null(), std::ptr::null_mut(), keys.cast_mut(), values.cast_mut(), count), opts)
        })
    }
}

ffi_fn! {
    /// `int bpf_map_delete_batch(int fd, const void *keys, __u32 *count, const struct bpf_map_batch_opts *opts)`
    ///
    /// # Safety
    /// As [`bpf_map_lookup_batch`].
    pub unsafe fn bpf_map_delete_batch(
        fd: c_int,
        keys: *const c_void,
        count: *mut u32,
        opts: *const BpfMapBatchOpts,
    ) -> c_int {
        // SAFETY: caller contract (the keys are only read).
        ret(unsafe {
            map_batch(BatchCmd::Delete, fd, Batch::new(std::ptr::null(), std::ptr::null_mut(), keys.cast_mut(), std::ptr::null_mut(), count), opts)
        })
    }
}

// ---------------------------------------------------------------------------
// BPF_OBJ_GET_INFO_BY_FD
// ---------------------------------------------------------------------------

/// The caller's info struct, read as the kernel reads it: `min(len,
/// sizeof)` bytes over zeros, after `bpf_check_uarg_tail_zero`.
///
/// # Safety
/// `info` NULL or valid for `len` bytes.
unsafe fn read_info<T: Copy + Default>(info: *const c_void, len: u32) -> Res<(T, usize)> {
    let len = len as usize;
    // SAFETY: caller contract.
    unsafe { check_tail_zero(info.cast(), size_of::<T>(), len) }?;
    let n = len.min(size_of::<T>());
    let mut out = T::default();
    if n > 0 {
        if info.is_null() {
            return err(libc::EFAULT);
        }
        // SAFETY: n <= len readable bytes at info; `out` is a plain
        // repr(C) struct of integers, valid for any bytes.
        unsafe { std::ptr::copy_nonoverlapping(info.cast::<u8>(), (&raw mut out).cast::<u8>(), n) };
    }
    Ok((out, n))
}

/// Writes back the first `n` bytes of `value` and the new length.
///
/// # Safety
/// `info` valid for `n` bytes of writes, `info_len` valid.
unsafe fn write_info<T: Copy>(
    info: *mut c_void,
    value: &T,
    n: usize,
    info_len: *mut u32,
) -> Res<c_int> {
    if n > 0 {
        // SAFETY: caller contract; `value` is n <= size_of::<T>() bytes.
        unsafe {
            std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), info.cast::<u8>(), n)
        };
    }
    // SAFETY: caller contract.
    unsafe { info_len.write_unaligned(n as u32) };
    Ok(0)
}

/// `bpf_map_get_info_by_fd` (the kernel's).
///
/// # Safety
/// As [`obj_get_info`].
unsafe fn map_info(map: &Map, info: *mut c_void, info_len: *mut u32) -> Res<c_int> {
    // SAFETY: caller contract.
    let (mut i, n) = unsafe { read_info::<BpfMapInfo>(info, info_len.read_unaligned()) }?;
    let s = map.spec();
    i.type_ = s.map_type;
    i.id = map.id();
    i.key_size = s.key_size;
    i.value_size = s.value_size;
    i.max_entries = s.max_entries;
    i.map_flags = s.map_flags & !(f::BPF_F_RDONLY | f::BPF_F_WRONLY);
    i.map_extra = s.map_extra;
    i.name = name_bytes(&s.name);
    i.btf_key_type_id = s.btf_key_type_id;
    i.btf_value_type_id = s.btf_value_type_id;
    if i.hash != 0 {
        // SAFETY: the caller's hash buffer (hash_size bytes, checked).
        unsafe { map_hash(map, i.hash as *mut u8, i.hash_size) }?;
    }
    // SAFETY: caller contract.
    unsafe { write_info(info, &i, n, info_len) }
}

/// `map_get_hash`: SHA-256 of an array's values, as the kernel lays them
/// out (`round_up(value_size, 8)` per element).
///
/// # Safety
/// `out` valid for `size` bytes of writes.
unsafe fn map_hash(map: &Map, out: *mut u8, size: u32) -> Res<()> {
    let s = map.spec();
    if s.map_type != mt::ARRAY || size != 32 {
        return err(libc::EINVAL);
    }
    let elem = (s.value_size as usize).next_multiple_of(8);
    let mut bytes = vec![0u8; elem * s.max_entries as usize];
    let mut v = vec![0u8; s.value_size as usize];
    for i in 0..s.max_entries {
        map.lookup(&i.to_ne_bytes(), &mut v, 0).map_err(map_err)?;
        let at = i as usize * elem;
        bytes[at..at + v.len()].copy_from_slice(&v);
    }
    let digest = sha256(&bytes);
    // SAFETY: caller contract: 32 writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(digest.as_ptr(), out, 32) };
    Ok(())
}

/// The instructions as the kernel reports them (`bpf_insn_prepare_dump`):
/// map references in fd form with the map id in `imm`.
fn dump_insns(image: &ProgramImage) -> Vec<Insn> {
    let mut insns = image.insns.clone();
    let mut i = 0;
    while i < insns.len() {
        let insn = insns[i];
        if insn.code == LDDW && i + 1 < insns.len() {
            let src = insn.src;
            if src == BPF_PSEUDO_MAP_IDX || src == BPF_PSEUDO_MAP_IDX_VALUE {
                let id = image
                    .map_ids
                    .get(insn.imm as u32 as usize)
                    .copied()
                    .unwrap_or(0);
                insns[i].src = if src == BPF_PSEUDO_MAP_IDX {
                    BPF_PSEUDO_MAP_FD
                } else {
                    BPF_PSEUDO_MAP_VALUE
                };
                insns[i].imm = id as i32;
                if src == BPF_PSEUDO_MAP_IDX {
                    insns[i + 1].imm = 0;
                }
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    insns
}

/// The program tag: the first 8 bytes of the SHA-256 of the instructions
/// as loaded, map references in fd form with their `imm`s zeroed
/// (`bpf_prog_calc_tag`).
pub fn prog_tag(image: &ProgramImage) -> [u8; BPF_TAG_SIZE] {
    let mut insns = dump_insns(image);
    let mut i = 0;
    while i < insns.len() {
        let s = insns[i].src;
        if insns[i].code == LDDW
            && (s == BPF_PSEUDO_MAP_FD || s == BPF_PSEUDO_MAP_VALUE)
            && i + 1 < insns.len()
        {
            insns[i].imm = 0;
            insns[i + 1].imm = 0;
            i += 2;
            continue;
        }
        i += 1;
    }
    let bytes = Insn::encode_all(&insns);
    let digest = sha256(&bytes);
    let mut tag = [0u8; BPF_TAG_SIZE];
    tag.copy_from_slice(&digest[..BPF_TAG_SIZE]);
    tag
}

/// What the kernel knows about a program that its image does not say.
#[derive(Clone, Copy, Debug)]
struct ProgMeta {
    load_time: u64,
    gpl_compatible: bool,
}

fn prog_meta() -> &'static Mutex<HashMap<FileId, ProgMeta>> {
    static META: OnceLock<Mutex<HashMap<FileId, ProgMeta>>> = OnceLock::new();
    META.get_or_init(Default::default)
}

/// `bpf_prog_get_info_by_fd` (the kernel's).
///
/// # Safety
/// As [`obj_get_info`].
unsafe fn prog_info(prog: &UserspaceProgram, info: *mut c_void, info_len: *mut u32) -> Res<c_int> {
    // SAFETY: caller contract.
    let (mut i, n) = unsafe { read_info::<BpfProgInfo>(info, info_len.read_unaligned()) }?;
    let image = &prog.image;
    let meta = prog_meta()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&prog.file_id)
        .copied();
    i.type_ = image.prog_type;
    i.id = prog.id;
    i.load_time = meta.map_or(0, |m| m.load_time);
    // SAFETY: getuid cannot fail.
    i.created_by_uid = unsafe { libc::getuid() };
    i.gpl_compatible = meta.is_some_and(|m| m.gpl_compatible) as u32;
    i.tag = prog_tag(image);
    i.name = name_bytes(&image.name);

    let used: Vec<u32> = image
        .map_ids
        .iter()
        .copied()
        .filter(|&id| id != 0)
        .collect();
    let ulen = i.nr_map_ids;
    i.nr_map_ids = used.len() as u32;
    let ulen = ulen.min(i.nr_map_ids) as usize;
    if ulen > 0 {
        let bytes: Vec<u8> = used[..ulen]
            .iter()
            .flat_map(|id| id.to_ne_bytes())
            .collect();
        // SAFETY: the caller's map_ids array of nr_map_ids u32s.
        unsafe { copy_out(i.map_ids as *mut c_void, &bytes) }?;
    }

    // set_info_rec_size
    if (i.nr_func_info != 0 || i.func_info_rec_size != 0) && i.func_info_rec_size != 8 {
        return err(libc::EINVAL);
    }
    if (i.nr_line_info != 0 || i.line_info_rec_size != 0) && i.line_info_rec_size != 16 {
        return err(libc::EINVAL);
    }
    if (i.nr_jited_line_info != 0 || i.jited_line_info_rec_size != 0)
        && i.jited_line_info_rec_size != 8
    {
        return err(libc::EINVAL);
    }
    i.func_info_rec_size = 8;
    i.line_info_rec_size = 16;
    i.jited_line_info_rec_size = 8;

    i.run_time_ns = 0;
    i.run_cnt = 0;
    i.recursion_misses = 0;
    // No verifier: every instruction counts as verified once.
    i.verified_insns = image.insns.len() as u32;
    i.btf_id = 0;

    let ulen = i.xlated_prog_len as usize;
    let xlated = Insn::encode_all(&dump_insns(image));
    i.xlated_prog_len = xlated.len() as u32;
    if ulen > 0 {
        let n = ulen.min(xlated.len());
        // SAFETY: the caller's buffer of xlated_prog_len bytes.
        unsafe { copy_out(i.xlated_prog_insns as *mut c_void, &xlated[..n]) }?;
    }
    // The native code of the JIT is not reported.
    i.jited_prog_len = 0;

    let subprogs = prog.loaded.vm().program().subprograms().len() as u32;
    let funcs = if subprogs > 1 { subprogs } else { 1 };
    let ulen = i.nr_jited_ksyms.min(funcs) as usize;
    i.nr_jited_ksyms = funcs;
    if ulen > 0 {
        // Addresses are not disclosed (as for a caller without raw dump
        // rights): zeros.
        // SAFETY: the caller's array of nr_jited_ksyms u64s.
        unsafe { copy_out(i.jited_ksyms as *mut c_void, &vec![0u8; ulen * 8]) }?;
    }
    let ulen = i.nr_jited_func_lens.min(funcs) as usize;
    i.nr_jited_func_lens = funcs;
    if ulen > 0 {
        // SAFETY: the caller's array of nr_jited_func_lens u32s.
        unsafe { copy_out(i.jited_func_lens as *mut c_void, &vec![0u8; ulen * 4]) }?;
    }
    i.attach_btf_id = 0;
    i.attach_btf_obj_id = 0;
    i.nr_func_info = 0;
    i.nr_line_info = 0;
    i.nr_jited_line_info = 0;
    let ulen = i.nr_prog_tags.min(funcs) as usize;
    i.nr_prog_tags = funcs;
    if ulen > 0 {
        let mut tags = vec![0u8; ulen * BPF_TAG_SIZE];
        tags[..BPF_TAG_SIZE].copy_from_slice(&i.tag);
        // SAFETY: the caller's array of nr_prog_tags tags.
        unsafe { copy_out(i.prog_tags as *mut c_void, &tags) }?;
    }
    // SAFETY: caller contract.
    unsafe { write_info(info, &i, n, info_len) }
}

/// `BPF_OBJ_GET_INFO_BY_FD`.
///
/// # Safety
/// `info` NULL or valid for `*info_len` bytes; `info_len` NULL or valid.
pub unsafe fn obj_get_info(fd: RawFd, info: *mut c_void, info_len: *mut u32) -> Res<c_int> {
    if info_len.is_null() {
        return err(libc::EINVAL);
    }
    let backend = match classify(fd) {
        Ok(b) => b,
        Err(_) => return err(libc::EBADFD),
    };
    if backend == FdBackend::Kernel {
        // SAFETY: caller contract; info_len is non-NULL (checked).
        return unsafe { kernel::obj_get_info(fd, info, info_len) };
    }
    if let Some(prog) = with_fd(fd, userspace::program_by_fd) {
        // SAFETY: caller contract.
        return unsafe { prog_info(&prog, info, info_len) };
    }
    let m = map_fd_of(fd, backend)?;
    // SAFETY: caller contract.
    unsafe { map_info(&m.map, info, info_len) }
}

ffi_fn! {
    /// `int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len)`
    ///
    /// # Safety
    /// `info` NULL or valid for `*info_len` bytes; `info_len` NULL or valid.
    pub unsafe fn bpf_obj_get_info_by_fd(bpf_fd: c_int, info: *mut c_void, info_len: *mut u32) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_get_info(bpf_fd, info, info_len) })
    }
}

ffi_fn! {
    /// `int bpf_prog_get_info_by_fd(int prog_fd, struct bpf_prog_info *info, __u32 *info_len)`:
    /// the same call as [`bpf_obj_get_info_by_fd`].
    ///
    /// # Safety
    /// As [`bpf_obj_get_info_by_fd`].
    pub unsafe fn bpf_prog_get_info_by_fd(prog_fd: c_int, info: *mut c_void, info_len: *mut u32) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_get_info(prog_fd, info, info_len) })
    }
}

ffi_fn! {
    /// `int bpf_map_get_info_by_fd(int map_fd, struct bpf_map_info *info, __u32 *info_len)`
    ///
    /// # Safety
    /// As [`bpf_obj_get_info_by_fd`].
    pub unsafe fn bpf_map_get_info_by_fd(map_fd: c_int, info: *mut c_void, info_len: *mut u32) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_get_info(map_fd, info, info_len) })
    }
}

ffi_fn! {
    /// `int bpf_btf_get_info_by_fd(int btf_fd, struct bpf_btf_info *info, __u32 *info_len)`:
    /// there are no BTF objects in user space, so only map and program fds
    /// give an answer (as with the kernel, the typed variants are one call).
    ///
    /// # Safety
    /// As [`bpf_obj_get_info_by_fd`].
    pub unsafe fn bpf_btf_get_info_by_fd(btf_fd: c_int, info: *mut c_void, info_len: *mut u32) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_get_info(btf_fd, info, info_len) })
    }
}

ffi_fn! {
    /// `int bpf_link_get_info_by_fd(int link_fd, struct bpf_link_info *info, __u32 *info_len)`:
    /// link fds are not BPF objects here yet (`EINVAL`).
    ///
    /// # Safety
    /// As [`bpf_obj_get_info_by_fd`].
    pub unsafe fn bpf_link_get_info_by_fd(link_fd: c_int, info: *mut c_void, info_len: *mut u32) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_get_info(link_fd, info, info_len) })
    }
}

// ---------------------------------------------------------------------------
// BPF_PROG_LOAD
// ---------------------------------------------------------------------------

/// `license_is_gpl_compatible`.
fn gpl_compatible(license: &[u8]) -> bool {
    matches!(
        license,
        b"GPL"
            | b"GPL v2"
            | b"GPL and additional rights"
            | b"Dual BSD/GPL"
            | b"Dual MIT/GPL"
            | b"Dual MPL/GPL"
    )
}

/// The verifier log of one load (`struct bpf_verifier_log`).
struct VerifierLog {
    level: u32,
    buf: *mut c_char,
    size: u32,
    text: String,
}

impl VerifierLog {
    /// Logs a line (kept whatever the level: libbpf's retry of a failed
    /// load at level 1 gets it).
    fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }

    /// `bpf_vlog_finalize`: copies the log out (rotating: the end of it;
    /// `BPF_LOG_FIXED`: the start), NUL-terminated; `ENOSPC` if it did not
    /// fit. Returns the true size (with the NUL).
    fn finish(&self) -> (u32, Result<(), i32>) {
        if self.level == 0 || self.buf.is_null() || self.size == 0 {
            return (0, Ok(()));
        }
        let bytes = self.text.as_bytes();
        let true_size = bytes.len() as u32 + 1;
        let cap = self.size as usize - 1;
        let fixed = self.level & 8 != 0;
        let shown = if bytes.len() <= cap {
            bytes
        } else if fixed {
            &bytes[..cap]
        } else {
            &bytes[bytes.len() - cap..]
        };
        // SAFETY: the caller's log_buf has log_size >= shown.len() + 1 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(shown.as_ptr(), self.buf.cast::<u8>(), shown.len());
            *self.buf.add(shown.len()) = 0;
        }
        let r = if bytes.len() > cap {
            Err(libc::ENOSPC)
        } else {
            Ok(())
        };
        (true_size, r)
    }
}

/// The fd-based map references of `insns` in the image's index form:
/// `(instructions, maps in order of first use)`.
///
/// # Safety
/// `fd_array` NULL or valid for every index the instructions use.
unsafe fn resolve_map_refs(
    insns: &[Insn],
    fd_array: *const c_int,
    fd_array_cnt: u32,
    log: &mut VerifierLog,
) -> Res<(Vec<Insn>, Vec<Arc<Map>>)> {
    let mut out = insns.to_vec();
    let mut maps: Vec<Arc<Map>> = Vec::new();
    let mut i = 0;
    while i < out.len() {
        let insn = out[i];
        if insn.code != LDDW {
            i += 1;
            continue;
        }
        let second = out.get(i + 1).copied();
        let Some(second) = second.filter(|s| s.code == 0 && s.dst == 0 && s.src == 0 && s.off == 0)
        else {
            log.line("invalid bpf_ld_imm64 insn");
            return err(libc::EINVAL);
        };
        let src = insn.src;
        let by_fd = [BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE].contains(&src);
        let by_idx = [BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE].contains(&src);
        if src == 0 || src == BPF_PSEUDO_FUNC {
            i += 2;
            continue;
        }
        if src == BPF_PSEUDO_BTF_ID {
            log.line("kernel BTF symbols (ksyms) are not available in user space");
            return err(libc::EINVAL);
        }
        if !by_fd && !by_idx {
            log.line("unrecognized bpf_ld_imm64 insn");
            return err(libc::EINVAL);
        }
        let value = src == BPF_PSEUDO_MAP_VALUE || src == BPF_PSEUDO_MAP_IDX_VALUE;
        if !value && second.imm != 0 {
            log.line("unrecognized bpf_ld_imm64 insn");
            return err(libc::EINVAL);
        }
        let fd = if by_idx {
            if fd_array.is_null() {
                log.line("fd_idx without fd_array is invalid");
                return err(libc::EPROTO);
            }
            let idx = insn.imm as u32;
            if fd_array_cnt != 0 && idx >= fd_array_cnt {
                log.line(&format!("fd_idx {idx} is out of range of fd_array"));
                return err(libc::EINVAL);
            }
            // SAFETY: fd_array holds the indices the program uses (caller
            // contract).
            unsafe { fd_array.add(idx as usize).read_unaligned() }
        } else {
            insn.imm
        };
        let map = match map_fd(fd) {
            Ok(m) => m.map,
            Err(e) => {
                log.line(&format!("fd {fd} is not pointing to valid bpf_map"));
                return Err(e);
            }
        };
        if value {
            let off = second.imm as u32;
            let s = map.spec();
            if s.map_type != mt::ARRAY {
                log.line("no direct value access support for this map type");
                return err(libc::EINVAL);
            }
            if s.max_entries != 1 || off >= s.value_size {
                log.line(&format!(
                    "invalid access to map value pointer, value_size={} off={off}",
                    s.value_size
                ));
                return err(if s.max_entries != 1 {
                    ENOTSUPP
                } else {
                    libc::EINVAL
                });
            }
        }
        let index = match maps
            .iter()
            .position(|m| Arc::ptr_eq(m, &map) || m.id() == map.id())
        {
            Some(k) => k,
            None => {
                if maps.len() >= MAX_USED_MAPS {
                    log.line(&format!("too many maps, max is {MAX_USED_MAPS}"));
                    return err(libc::E2BIG);
                }
                maps.push(map);
                maps.len() - 1
            }
        };
        out[i].src = if value {
            BPF_PSEUDO_MAP_IDX_VALUE
        } else {
            BPF_PSEUDO_MAP_IDX
        };
        out[i].imm = index as i32;
        i += 2;
    }
    Ok((out, maps))
}

/// A load error as the verifier would log it.
fn describe_load_error(e: &userspace::BackendError) -> String {
    use userspace::BackendError;
    match e {
        BackendError::Program {
            source: ImageError::Vm(VmError::UnknownHelper { pc, id }),
            ..
        } => format!("{pc}: (85) call unknown#{id}\ninvalid func unknown#{id}"),
        BackendError::Program { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Whether a program refers to a kernel map (an `lddw` of a map fd, or a
/// map in `fd_array`): such a program can only load into the kernel, where
/// `auto` mode sends it.
///
/// # Safety
/// `insns` NULL or valid for `insn_cnt` instructions; `fd_array` (in `o`)
/// NULL or valid for the entries the instructions name.
unsafe fn uses_kernel_maps(
    insns: *const c_void,
    insn_cnt: usize,
    o: Option<&BpfProgLoadOpts>,
) -> bool {
    let kernel_map =
        |fd: RawFd| fd > 0 && classify(fd) == Ok(FdBackend::Kernel) && kernel::is_kernel_map(fd);
    let fd_array = o.map_or(std::ptr::null(), |o| o.fd_array);
    let fd_array_cnt = o.map_or(0, |o| o.fd_array_cnt) as usize;
    if !fd_array.is_null() && fd_array_cnt > 0 {
        // SAFETY: fd_array_cnt ints (caller contract).
        let fds = unsafe { std::slice::from_raw_parts(fd_array, fd_array_cnt) };
        if fds.iter().any(|&fd| kernel_map(fd)) {
            return true;
        }
    }
    if insns.is_null() || insn_cnt == 0 || insn_cnt > MAX_INSNS {
        return false;
    }
    // SAFETY: caller contract.
    let bytes = unsafe { std::slice::from_raw_parts(insns.cast::<u8>(), insn_cnt * 8) };
    bytes.chunks_exact(8).any(|c| {
        let insn = Insn::from_bytes(c.try_into().expect("8-byte chunk"));
        if insn.code != LDDW {
            return false;
        }
        match insn.src {
            BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_VALUE => kernel_map(insn.imm),
            BPF_PSEUDO_MAP_IDX | BPF_PSEUDO_MAP_IDX_VALUE if !fd_array.is_null() => {
                let i = insn.imm as u32 as usize;
                if fd_array_cnt > 0 && i >= fd_array_cnt {
                    return false;
                }
                // SAFETY: the entry the instruction names (caller contract).
                kernel_map(unsafe { fd_array.add(i).read_unaligned() })
            }
            _ => false,
        }
    })
}

/// `BPF_PROG_LOAD` on the userspace backend.
///
/// # Safety
/// Pointers NULL or valid (C strings NUL-terminated, `insns` for
/// `insn_cnt` instructions); `opts` NULL or a valid opts struct.
unsafe fn prog_load(
    prog_type: u32,
    name: *const c_char,
    license: *const c_char,
    insns: *const c_void,
    insn_cnt: usize,
    opts: *mut BpfProgLoadOpts,
) -> Res<c_int> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts.cast_const()) }?;
    // SAFETY: caller contract.
    if kernel::kernel_mode()
        || (!kernel::user_mode() && unsafe { uses_kernel_maps(insns, insn_cnt, o.as_ref()) })
    {
        // SAFETY: caller contract.
        return unsafe {
            kernel::prog_load(prog_type, name, license, insns, insn_cnt, opts, o.as_ref())
        };
    }
    install_resolver();
    let attempts = o.map_or(0, |o| o.attempts);
    if attempts < 0 {
        return err(libc::EINVAL);
    }
    if insn_cnt > u32::MAX as usize {
        return err(libc::E2BIG);
    }
    let g = |field: fn(&BpfProgLoadOpts) -> u32| o.as_ref().map_or(0, field);
    if g(|o| o.attach_prog_fd) != 0 && g(|o| o.attach_btf_obj_fd) != 0 {
        return err(libc::EINVAL);
    }
    let log_buf = o.map_or(std::ptr::null_mut(), |o| o.log_buf);
    let log_size = g(|o| o.log_size);
    let log_level = g(|o| o.log_level);
    if log_buf.is_null() != (log_size == 0) {
        return err(libc::EINVAL);
    }
    // libbpf passes the log to the kernel only with a level; with level 0
    // and a buffer it retries a failed load with level 1.
    let mut log = VerifierLog {
        level: log_level,
        buf: log_buf,
        size: log_size,
        text: String::new(),
    };
    let mut attempt = || -> Res<c_int> {
        // --- the kernel's checks ---
        if log.level != 0 && (log.level & !15 != 0 || log.size > u32::MAX >> 2) {
            return err(libc::EINVAL);
        }
        let prog_flags = g(|o| o.prog_flags);
        if prog_flags & !f::PROG_FLAGS_MASK != 0 {
            return err(libc::EINVAL);
        }
        if insn_cnt == 0 || insn_cnt > MAX_INSNS {
            return err(libc::E2BIG);
        }
        if !USERSPACE_PROG_TYPES.contains(&prog_type) {
            log.line(&format!(
                "program type {prog_type} is not supported by userbpf's userspace backend"
            ));
            return err(libc::EINVAL);
        }
        if insns.is_null() || license.is_null() {
            return err(libc::EFAULT);
        }
        // SAFETY: NUL-terminated (caller contract); the kernel reads up to
        // 127 bytes.
        let lic = unsafe { CStr::from_ptr(license) }.to_bytes();
        let gpl = gpl_compatible(&lic[..lic.len().min(127)]);
        let name = object_name(name)?;
        if prog_type == prog_type::SYSCALL && prog_flags & f::BPF_F_SLEEPABLE == 0 {
            log.line("Syscall programs can only be sleepable");
            return err(libc::EINVAL);
        }
        // SAFETY: insns holds insn_cnt instructions (caller contract).
        let raw = unsafe { read_insns(insns, insn_cnt) };
        let fd_array = o.map_or(std::ptr::null(), |o| o.fd_array);
        // SAFETY: caller contract.
        let (converted, maps) =
            unsafe { resolve_map_refs(&raw, fd_array, g(|o| o.fd_array_cnt), &mut log) }?;
        let image = ProgramImage {
            name,
            prog_type,
            expected_attach_type: g(|o| o.expected_attach_type),
            insns: converted,
            map_ids: maps.iter().map(|m| m.id()).collect(),
        };
        let load_time = boottime_ns();
        let used = maps.clone();
        let prog =
            userspace::load_program(image, maps.into_iter().map(Some).collect()).map_err(|e| {
                log.line(&describe_load_error(&e));
                AbiError::Errno(e.errno())
            })?;
        // Agents running the program elsewhere find its maps by id.
        for m in &used {
            publish_map(m);
        }
        prog_meta()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                prog.file_id,
                ProgMeta {
                    load_time,
                    gpl_compatible: gpl,
                },
            );
        log.line(&format!(
            "processed {insn_cnt} insns (limit {MAX_INSNS}) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0"
        ));
        let fd = prog
            .fd
            .try_clone()
            .map_err(|e| AbiError::Errno(io_errno(&e)))?;
        into_good_fd(fd)
    };
    let result = attempt();
    // libbpf passes no log to the kernel at level 0; with a buffer it
    // retries a failed load at level 1 to get one (the same failure).
    if result.is_err() && log.level == 0 && !log.buf.is_null() {
        log.level = 1;
    }
    let (true_size, fin) = log.finish();
    // SAFETY: caller contract.
    unsafe {
        opts_set_u32(
            opts.cast(),
            offset_of!(BpfProgLoadOpts, log_true_size),
            true_size,
        )
    };
    if let Err(e) = fin {
        if let Ok(fd) = result {
            // SAFETY: the fd was just created for this call.
            unsafe { libc::close(fd) };
        }
        return err(e);
    }
    result
}

ffi_fn! {
    /// `int bpf_prog_load(enum bpf_prog_type prog_type, const char *prog_name, const char *license, const struct bpf_insn *insns, size_t insn_cnt, struct bpf_prog_load_opts *opts)`
    ///
    /// # Safety
    /// Pointers NULL or valid; `insns` holds `insn_cnt` instructions.
    pub unsafe fn bpf_prog_load(
        prog_type: c_uint,
        prog_name: *const c_char,
        license: *const c_char,
        insns: *const c_void,
        insn_cnt: usize,
        opts: *mut BpfProgLoadOpts,
    ) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { prog_load(prog_type, prog_name, license, insns, insn_cnt, opts) })
    }
}

// ---------------------------------------------------------------------------
// BPF_PROG_TEST_RUN
// ---------------------------------------------------------------------------

/// Runs `f` on CPU `cpu` (the thread is pinned for the call and its
/// affinity restored), `ENXIO` for a CPU that is not online.
fn on_cpu<T>(cpu: u32, f: impl FnOnce() -> T) -> Res<T> {
    // SAFETY: sched_getcpu has no preconditions.
    let current = unsafe { libc::sched_getcpu() };
    if current >= 0 && current as u32 == cpu {
        return Ok(f());
    }
    if cpu >= userbpf_runtime::cpu::possible_cpus()
        || !online("/sys/devices/system/cpu/online", cpu)
    {
        return err(libc::ENXIO);
    }
    // SAFETY: cpu_set_t is plain data; zeroed is an empty set.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer of the right size for this thread (0).
    let have_old =
        unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old) } == 0;
    // SAFETY: as above.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < possible CPUs <= CPU_SETSIZE bits of `one`.
    unsafe { libc::CPU_SET(cpu as usize, &mut one) };
    // SAFETY: a valid cpu set for this thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) } != 0 {
        return err(libc::ENXIO);
    }
    let r = f();
    if have_old {
        // SAFETY: restores the set read above.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &old) };
    }
    Ok(r)
}

/// The outcome of the runs: r0 of the last one and the average duration.
struct RunResult {
    retval: u32,
    duration: u32,
}

/// Runs `prog` `repeat` times on a context of `ctx_len` bytes (inside a
/// zeroed buffer `ctx`, which has [`CTX_SLACK`] spare bytes).
fn run_prog(
    prog: &UserspaceProgram,
    ctx: &mut [u8],
    ctx_len: usize,
    repeat: u32,
) -> Res<RunResult> {
    let repeat = repeat.max(1);
    let base = ctx.as_mut_ptr();
    let start = Instant::now();
    let mut r0 = 0u64;
    for _ in 0..repeat {
        // SAFETY: `ctx` is borrowed mutably for the whole call and
        // `ctx_len <= ctx.len()`.
        match unsafe { prog.loaded.run(base, ctx_len, std::ptr::null_mut()) } {
            Ok(v) => r0 = v,
            Err(e) => {
                print::warn(&format!("test run of program {}: {e}\n", prog.id));
                // Reading past a short context is what the kernel's verifier
                // (max_ctx_offset) refuses with EINVAL at test-run time.
                let in_ctx = matches!(e, VmError::MemoryViolation { addr, .. }
                    if addr >= base as u64 && addr < base as u64 + ctx.len() as u64);
                return err(if in_ctx { libc::EINVAL } else { libc::EFAULT });
            }
        }
    }
    let per_run = start.elapsed().as_nanos() / u128::from(repeat);
    Ok(RunResult {
        retval: r0 as u32,
        duration: per_run.min(u128::from(u32::MAX)) as u32,
    })
}

/// `BPF_PROG_TEST_RUN`.
///
/// # Safety
/// `opts` NULL or a valid `bpf_test_run_opts` whose buffers are valid for
/// their sizes.
pub unsafe fn prog_test_run(fd: RawFd, opts: *mut BpfTestRunOpts) -> Res<c_int> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts.cast_const()) }?.unwrap_or(BpfTestRunOpts {
        sz: 0,
        data_in: std::ptr::null(),
        data_out: std::ptr::null_mut(),
        data_size_in: 0,
        data_size_out: 0,
        ctx_in: std::ptr::null(),
        ctx_out: std::ptr::null_mut(),
        ctx_size_in: 0,
        ctx_size_out: 0,
        retval: 0,
        repeat: 0,
        duration: 0,
        flags: 0,
        cpu: 0,
        batch_size: 0,
    });
    if classify(fd) == Ok(FdBackend::Kernel) {
        // SAFETY: caller contract.
        return unsafe { kernel::prog_test_run(fd, opts, &o) };
    }
    // A context size without a buffer, or a buffer without a size.
    if (o.ctx_size_in != 0) == o.ctx_in.is_null() || (o.ctx_size_out != 0) == o.ctx_out.is_null() {
        return err(libc::EINVAL);
    }
    let prog = prog_fd(fd)?;
    let on_cpu_flag = o.flags & f::BPF_F_TEST_RUN_ON_CPU != 0;
    let outputs = |r: &RunResult, ctx_size_out: Option<u32>| {
        // SAFETY: caller contract (OPTS_SET within the caller's sz).
        unsafe {
            opts_set_u32(opts.cast(), offset_of!(BpfTestRunOpts, retval), r.retval);
            opts_set_u32(
                opts.cast(),
                offset_of!(BpfTestRunOpts, duration),
                r.duration,
            );
            if let Some(n) = ctx_size_out {
                opts_set_u32(opts.cast(), offset_of!(BpfTestRunOpts, ctx_size_out), n);
            }
        }
    };
    match prog.image.prog_type {
        prog_type::RAW_TRACEPOINT => {
            // bpf_prog_test_run_raw_tp
            if !o.data_in.is_null()
                || !o.data_out.is_null()
                || !o.ctx_out.is_null()
                || o.duration != 0
                || o.repeat != 0
                || o.batch_size != 0
            {
                return err(libc::EINVAL);
            }
            let size = o.ctx_size_in as usize;
            // The verifier's max_ctx_offset: the context must cover every read.
            let needed = userbpf_runtime::ctx_access::max_ctx_offset(&prog.image.insns) as usize;
            if size < needed || size > RAW_TP_CTX_MAX {
                return err(libc::EINVAL);
            }
            if !on_cpu_flag && o.cpu != 0 {
                return err(libc::EINVAL);
            }
            let mut ctx = vec![0u8; RAW_TP_CTX_MAX + CTX_SLACK];
            // SAFETY: ctx_in holds ctx_size_in bytes (caller contract).
            let input = unsafe { copy_in(o.ctx_in, size) }?;
            ctx[..size].copy_from_slice(&input);
            let r = if on_cpu_flag {
                on_cpu(o.cpu, || run_prog(&prog, &mut ctx, size, 1))??
            } else {
                run_prog(&prog, &mut ctx, size, 1)?
            };
            // SAFETY: caller contract.
            unsafe { opts_set_u32(opts.cast(), offset_of!(BpfTestRunOpts, retval), r.retval) };
            Ok(0)
        }
        prog_type::SYSCALL => {
            // bpf_prog_test_run_syscall: the context is written back to ctx_in.
            if !o.data_in.is_null()
                || !o.data_out.is_null()
                || !o.ctx_out.is_null()
                || o.duration != 0
                || o.repeat != 0
                || o.flags != 0
                || o.batch_size != 0
            {
                return err(libc::EINVAL);
            }
            let size = o.ctx_size_in as usize;
            if size > u16::MAX as usize {
                return err(libc::EINVAL);
            }
            let mut ctx = vec![0u8; size + CTX_SLACK];
            // SAFETY: ctx_in holds ctx_size_in bytes (caller contract).
            let input = unsafe { copy_in(o.ctx_in, size) }?;
            ctx[..size].copy_from_slice(&input);
            let r = run_prog(&prog, &mut ctx, size, 1)?;
            // SAFETY: caller contract.
            unsafe { opts_set_u32(opts.cast(), offset_of!(BpfTestRunOpts, retval), r.retval) };
            if size > 0 {
                // SAFETY: ctx_in is the caller's buffer of ctx_size_in bytes,
                // which the kernel writes back as well.
                unsafe { copy_out(o.ctx_in.cast_mut(), &ctx[..size]) }?;
            }
            Ok(0)
        }
        prog_type::KPROBE | prog_type::TRACEPOINT | prog_type::PERF_EVENT => {
            // Not test-runnable in the kernel (ENOTSUPP); in user space these
            // run like the kernel's generic runners (bpf_ctx_init /
            // bpf_ctx_finish): a zeroed context of the type's size, ctx_in
            // copied in, repeat, duration, ctx_out copied back.
            if !o.data_in.is_null()
                || !o.data_out.is_null()
                || o.data_size_in != 0
                || o.batch_size != 0
            {
                return err(libc::EINVAL);
            }
            if o.flags & !f::BPF_F_TEST_RUN_ON_CPU != 0 || (!on_cpu_flag && o.cpu != 0) {
                return err(libc::EINVAL);
            }
            let size = match prog.image.prog_type {
                prog_type::KPROBE => PT_REGS_SIZE,
                prog_type::PERF_EVENT => PERF_EVENT_CTX_SIZE,
                // A tracepoint record is as long as the caller's.
                _ => (o.ctx_size_in as usize).min(u16::MAX as usize),
            };
            // SAFETY: ctx_in holds ctx_size_in bytes (caller contract).
            unsafe { check_tail_zero(o.ctx_in.cast(), size, o.ctx_size_in as usize) }?;
            let mut ctx = vec![0u8; size + CTX_SLACK];
            let n = (o.ctx_size_in as usize).min(size);
            // SAFETY: as above.
            let input = unsafe { copy_in(o.ctx_in, n) }?;
            ctx[..n].copy_from_slice(&input);
            let repeat = o.repeat.max(0) as u32;
            let r = if on_cpu_flag {
                on_cpu(o.cpu, || run_prog(&prog, &mut ctx, size, repeat))??
            } else {
                run_prog(&prog, &mut ctx, size, repeat)?
            };
            // bpf_ctx_finish
            let mut result = Ok(0);
            let mut size_out = None;
            if !o.ctx_out.is_null() {
                let mut copy = size;
                if copy > o.ctx_size_out as usize {
                    copy = o.ctx_size_out as usize;
                    result = err(libc::ENOSPC);
                }
                // SAFETY: ctx_out holds ctx_size_out >= copy bytes.
                unsafe { copy_out(o.ctx_out, &ctx[..copy]) }?;
                size_out = Some(size as u32);
            }
            outputs(&r, size_out);
            result
        }
        _ => err(ENOTSUPP),
    }
}

ffi_fn! {
    /// `int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts)`:
    /// runs the program in this process.
    ///
    /// # Safety
    /// `opts` NULL or valid, its buffers valid for their sizes.
    pub unsafe fn bpf_prog_test_run_opts(prog_fd: c_int, opts: *mut BpfTestRunOpts) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { prog_test_run(prog_fd, opts) })
    }
}

// ---------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------

ffi_fn! {
    /// `int bpf_map_get_next_id(__u32 start_id, __u32 *next_id)`
    ///
    /// # Safety
    /// `next_id` NULL or valid.
    pub unsafe fn bpf_map_get_next_id(start_id: u32, next_id: *mut u32) -> c_int {
        ret(next_id_of(ObjKind::Map, start_id, next_id))
    }
}

ffi_fn! {
    /// `int bpf_prog_get_next_id(__u32 start_id, __u32 *next_id)`
    ///
    /// # Safety
    /// `next_id` NULL or valid.
    pub unsafe fn bpf_prog_get_next_id(start_id: u32, next_id: *mut u32) -> c_int {
        ret(next_id_of(ObjKind::Prog, start_id, next_id))
    }
}

ffi_fn! {
    /// `int bpf_btf_get_next_id(__u32 start_id, __u32 *next_id)`: no BTF
    /// objects in user space unless a directory has some (`ENOENT`).
    ///
    /// # Safety
    /// `next_id` NULL or valid.
    pub unsafe fn bpf_btf_get_next_id(start_id: u32, next_id: *mut u32) -> c_int {
        ret(next_id_of(ObjKind::Btf, start_id, next_id))
    }
}

ffi_fn! {
    /// `int bpf_link_get_next_id(__u32 start_id, __u32 *next_id)`: links
    /// have no ids unless a directory has some (`ENOENT`).
    ///
    /// # Safety
    /// `next_id` NULL or valid.
    pub unsafe fn bpf_link_get_next_id(start_id: u32, next_id: *mut u32) -> c_int {
        ret(next_id_of(ObjKind::Link, start_id, next_id))
    }
}

/// `BPF_*_GET_FD_BY_ID` of one kind.
fn fd_by_id_cmd(kind: ObjKind) -> u32 {
    match kind {
        ObjKind::Map => kcmd::MAP_GET_FD_BY_ID,
        ObjKind::Prog => kcmd::PROG_GET_FD_BY_ID,
        ObjKind::Btf => kcmd::BTF_GET_FD_BY_ID,
        ObjKind::Link => kcmd::LINK_GET_FD_BY_ID,
    }
}

/// `bpf_*_get_fd_by_id_opts`: the kernel's object in kernel mode (libbpf
/// passes `token_fd` for BTF only), else this namespace's.
///
/// # Safety
/// `opts` NULL or valid.
unsafe fn fd_by_id_opts(kind: ObjKind, id: u32, opts: *const BpfGetFdByIdOpts) -> Res<c_int> {
    if kernel::kernel_mode() {
        // SAFETY: caller contract.
        let o = unsafe { read_opts(opts) }?;
        let open_flags = o.map_or(0, |o| o.open_flags);
        let token_fd = match kind {
            ObjKind::Btf => o.map_or(0, |o| o.token_fd),
            _ => 0,
        };
        return kernel::fd_by_id(fd_by_id_cmd(kind), id, open_flags, token_fd);
    }
    // SAFETY: caller contract.
    unsafe { by_id_mode(kind, opts) }.and_then(|mode| fd_by_id(kind, id, mode))
}

/// `bpf_get_fd_by_id_opts` of one kind: the access mode it asks for.
///
/// # Safety
/// `opts` NULL or valid.
unsafe fn by_id_mode(kind: ObjKind, opts: *const BpfGetFdByIdOpts) -> Res<c_int> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts) }?;
    let open_flags = o.map_or(0, |o| o.open_flags);
    match kind {
        ObjKind::Map | ObjKind::Link => {
            if open_flags & !(f::BPF_F_RDONLY | f::BPF_F_WRONLY) != 0 {
                return err(libc::EINVAL);
            }
            file_mode(open_flags)
        }
        // Programs and BTF take no open flags.
        ObjKind::Prog | ObjKind::Btf => {
            if open_flags != 0 {
                return err(libc::EINVAL);
            }
            Ok(libc::O_RDWR)
        }
    }
}

macro_rules! fd_by_id_fns {
    ($($plain:ident, $with_opts:ident, $kind:expr;)*) => {$(
        ffi_fn! {
            #[doc = concat!("`int ", stringify!($with_opts), "(__u32 id, const struct bpf_get_fd_by_id_opts *opts)`")]
            ///
            /// # Safety
            /// `opts` NULL or valid.
            pub unsafe fn $with_opts(id: u32, opts: *const BpfGetFdByIdOpts) -> c_int {
                // SAFETY: caller contract.
                ret(unsafe { fd_by_id_opts($kind, id, opts) })
            }
        }

        ffi_fn! {
            #[doc = concat!("`int ", stringify!($plain), "(__u32 id)`")]
            pub fn $plain(id: u32) -> c_int {
                // SAFETY: no opts.
                ret(unsafe { fd_by_id_opts($kind, id, std::ptr::null()) })
            }
        }
    )*};
}

fd_by_id_fns! {
    bpf_map_get_fd_by_id, bpf_map_get_fd_by_id_opts, ObjKind::Map;
    bpf_prog_get_fd_by_id, bpf_prog_get_fd_by_id_opts, ObjKind::Prog;
    bpf_btf_get_fd_by_id, bpf_btf_get_fd_by_id_opts, ObjKind::Btf;
    bpf_link_get_fd_by_id, bpf_link_get_fd_by_id_opts, ObjKind::Link;
}

// ---------------------------------------------------------------------------
// Feature probes and type names
// ---------------------------------------------------------------------------

/// libbpf's `libbpf_err`: a negative value also sets `errno`.
fn libbpf_err(r: c_int) -> c_int {
    if r < 0 {
        crate::abi::set_errno(-r);
    }
    r
}

/// Map types libbpf 1.7's `probe_map_create` knows (others: `EOPNOTSUPP`).
const LIBBPF_MAX_MAP_TYPE: u32 = 34;

ffi_fn! {
    /// `int libbpf_probe_bpf_map_type(enum bpf_map_type map_type, const void *opts)`:
    /// 1 for the types the userspace backend serves, 0 for other types
    /// libbpf knows, `-EOPNOTSUPP` for the rest.
    pub fn libbpf_probe_bpf_map_type(map_type: c_uint, opts: *const c_void) -> c_int {
        if !opts.is_null() {
            return ret(err(libc::EINVAL));
        }
        if kernel::kernel_mode() {
            return libbpf_err(kernel::probe_map_type(map_type));
        }
        if map_type == 0 || map_type > LIBBPF_MAX_MAP_TYPE {
            return ret(err(libc::EOPNOTSUPP));
        }
        USERSPACE_MAP_TYPES.contains(&map_type) as c_int
    }
}

ffi_fn! {
    /// `int libbpf_probe_bpf_prog_type(enum bpf_prog_type prog_type, const void *opts)`:
    /// 1 for the types that load in user space (see the module docs), 0 for
    /// other types libbpf knows, `-EOPNOTSUPP` for the rest.
    pub fn libbpf_probe_bpf_prog_type(prog_type: c_uint, opts: *const c_void) -> c_int {
        if !opts.is_null() {
            return ret(err(libc::EINVAL));
        }
        if kernel::kernel_mode() {
            return libbpf_err(kernel::probe_prog_type(prog_type));
        }
        if prog_type > prog_type::NETFILTER {
            return ret(err(libc::EOPNOTSUPP));
        }
        USERSPACE_PROG_TYPES.contains(&prog_type) as c_int
    }
}

ffi_fn! {
    /// `int libbpf_probe_bpf_helper(enum bpf_prog_type prog_type, enum bpf_func_id helper_id, const void *opts)`:
    /// 1 if programs of that type load in user space and the backend has
    /// the helper, else 0. Like libbpf, `-EOPNOTSUPP` (errno untouched) for
    /// the types libbpf cannot probe this way.
    pub fn libbpf_probe_bpf_helper(prog_type: c_uint, helper_id: c_uint, opts: *const c_void) -> c_int {
        if !opts.is_null() {
            return ret(err(libc::EINVAL));
        }
        match prog_type {
            prog_type::TRACING | prog_type::EXT | prog_type::LSM | prog_type::STRUCT_OPS => {
                return -libc::EOPNOTSUPP;
            }
            t if t > prog_type::NETFILTER && !kernel::kernel_mode() => {
                return ret(err(libc::EOPNOTSUPP))
            }
            _ => {}
        }
        if kernel::kernel_mode() {
            return libbpf_err(kernel::probe_helper(prog_type, helper_id));
        }
        (USERSPACE_PROG_TYPES.contains(&prog_type) && userspace::helpers().contains(helper_id)) as c_int
    }
}

fn type_name(table: &'static [Option<&'static CStr>], t: c_uint) -> *const c_char {
    table
        .get(t as usize)
        .copied()
        .flatten()
        .map_or(std::ptr::null(), CStr::as_ptr)
}

ffi_fn! {
    /// `const char *libbpf_bpf_attach_type_str(enum bpf_attach_type t)`: NULL if unknown (errno untouched).
    pub fn libbpf_bpf_attach_type_str(t: c_uint) -> *const c_char {
        type_name(&ATTACH_TYPE_NAMES, t)
    }
}

ffi_fn! {
    /// `const char *libbpf_bpf_link_type_str(enum bpf_link_type t)`
    pub fn libbpf_bpf_link_type_str(t: c_uint) -> *const c_char {
        type_name(&LINK_TYPE_NAMES, t)
    }
}

ffi_fn! {
    /// `const char *libbpf_bpf_map_type_str(enum bpf_map_type t)`
    pub fn libbpf_bpf_map_type_str(t: c_uint) -> *const c_char {
        type_name(&MAP_TYPE_NAMES, t)
    }
}

ffi_fn! {
    /// `const char *libbpf_bpf_prog_type_str(enum bpf_prog_type t)`
    pub fn libbpf_bpf_prog_type_str(t: c_uint) -> *const c_char {
        type_name(&PROG_TYPE_NAMES, t)
    }
}

/// libbpf 1.7's `attach_type_name` by value (`None`: a hole, NULL in C).
const ATTACH_TYPE_NAMES: [Option<&CStr>; 59] = [
    Some(c"cgroup_inet_ingress"),
    Some(c"cgroup_inet_egress"),
    Some(c"cgroup_inet_sock_create"),
    Some(c"cgroup_sock_ops"),
    Some(c"sk_skb_stream_parser"),
    Some(c"sk_skb_stream_verdict"),
    Some(c"cgroup_device"),
    Some(c"sk_msg_verdict"),
    Some(c"cgroup_inet4_bind"),
    Some(c"cgroup_inet6_bind"),
    Some(c"cgroup_inet4_connect"),
    Some(c"cgroup_inet6_connect"),
    Some(c"cgroup_inet4_post_bind"),
    Some(c"cgroup_inet6_post_bind"),
    Some(c"cgroup_udp4_sendmsg"),
    Some(c"cgroup_udp6_sendmsg"),
    Some(c"lirc_mode2"),
    Some(c"flow_dissector"),
    Some(c"cgroup_sysctl"),
    Some(c"cgroup_udp4_recvmsg"),
    Some(c"cgroup_udp6_recvmsg"),
    Some(c"cgroup_getsockopt"),
    Some(c"cgroup_setsockopt"),
    Some(c"trace_raw_tp"),
    Some(c"trace_fentry"),
    Some(c"trace_fexit"),
    Some(c"modify_return"),
    Some(c"lsm_mac"),
    Some(c"trace_iter"),
    Some(c"cgroup_inet4_getpeername"),
    Some(c"cgroup_inet6_getpeername"),
    Some(c"cgroup_inet4_getsockname"),
    Some(c"cgroup_inet6_getsockname"),
    Some(c"xdp_devmap"),
    Some(c"cgroup_inet_sock_release"),
    Some(c"xdp_cpumap"),
    Some(c"sk_lookup"),
    Some(c"xdp"),
    Some(c"sk_skb_verdict"),
    Some(c"sk_reuseport_select"),
    Some(c"sk_reuseport_select_or_migrate"),
    Some(c"perf_event"),
    Some(c"trace_kprobe_multi"),
    Some(c"lsm_cgroup"),
    Some(c"struct_ops"),
    Some(c"netfilter"),
    Some(c"tcx_ingress"),
    Some(c"tcx_egress"),
    Some(c"trace_uprobe_multi"),
    Some(c"cgroup_unix_connect"),
    Some(c"cgroup_unix_sendmsg"),
    Some(c"cgroup_unix_recvmsg"),
    Some(c"cgroup_unix_getpeername"),
    Some(c"cgroup_unix_getsockname"),
    Some(c"netkit_primary"),
    Some(c"netkit_peer"),
    Some(c"trace_kprobe_session"),
    Some(c"trace_uprobe_session"),
    Some(c"trace_fsession"),
];

/// libbpf 1.7's `link_type_name` by value (`None`: a hole, NULL in C).
const LINK_TYPE_NAMES: [Option<&CStr>; 15] = [
    Some(c"unspec"),
    Some(c"raw_tracepoint"),
    Some(c"tracing"),
    Some(c"cgroup"),
    Some(c"iter"),
    Some(c"netns"),
    Some(c"xdp"),
    Some(c"perf_event"),
    Some(c"kprobe_multi"),
    Some(c"struct_ops"),
    Some(c"netfilter"),
    Some(c"tcx"),
    Some(c"uprobe_multi"),
    Some(c"netkit"),
    Some(c"sockmap"),
];

/// libbpf 1.7's `map_type_name` by value (`None`: a hole, NULL in C).
const MAP_TYPE_NAMES: [Option<&CStr>; 35] = [
    Some(c"unspec"),
    Some(c"hash"),
    Some(c"array"),
    Some(c"prog_array"),
    Some(c"perf_event_array"),
    Some(c"percpu_hash"),
    Some(c"percpu_array"),
    Some(c"stack_trace"),
    Some(c"cgroup_array"),
    Some(c"lru_hash"),
    Some(c"lru_percpu_hash"),
    Some(c"lpm_trie"),
    Some(c"array_of_maps"),
    Some(c"hash_of_maps"),
    Some(c"devmap"),
    Some(c"sockmap"),
    Some(c"cpumap"),
    Some(c"xskmap"),
    Some(c"sockhash"),
    Some(c"cgroup_storage"),
    Some(c"reuseport_sockarray"),
    Some(c"percpu_cgroup_storage"),
    Some(c"queue"),
    Some(c"stack"),
    Some(c"sk_storage"),
    Some(c"devmap_hash"),
    Some(c"struct_ops"),
    Some(c"ringbuf"),
    Some(c"inode_storage"),
    Some(c"task_storage"),
    Some(c"bloom_filter"),
    Some(c"user_ringbuf"),
    Some(c"cgrp_storage"),
    Some(c"arena"),
    Some(c"insn_array"),
];

/// libbpf 1.7's `prog_type_name` by value (`None`: a hole, NULL in C).
const PROG_TYPE_NAMES: [Option<&CStr>; 33] = [
    Some(c"unspec"),
    Some(c"socket_filter"),
    Some(c"kprobe"),
    Some(c"sched_cls"),
    Some(c"sched_act"),
    Some(c"tracepoint"),
    Some(c"xdp"),
    Some(c"perf_event"),
    Some(c"cgroup_skb"),
    Some(c"cgroup_sock"),
    Some(c"lwt_in"),
    Some(c"lwt_out"),
    Some(c"lwt_xmit"),
    Some(c"sock_ops"),
    Some(c"sk_skb"),
    Some(c"cgroup_device"),
    Some(c"sk_msg"),
    Some(c"raw_tracepoint"),
    Some(c"cgroup_sock_addr"),
    Some(c"lwt_seg6local"),
    Some(c"lirc_mode2"),
    Some(c"sk_reuseport"),
    Some(c"flow_dissector"),
    Some(c"cgroup_sysctl"),
    Some(c"raw_tracepoint_writable"),
    Some(c"cgroup_sockopt"),
    Some(c"tracing"),
    Some(c"struct_ops"),
    Some(c"ext"),
    Some(c"lsm"),
    Some(c"sk_lookup"),
    Some(c"syscall"),
    Some(c"netfilter"),
];

// ---------------------------------------------------------------------------
// Streams, struct_ops association, tokens: kernel objects only
// ---------------------------------------------------------------------------

// SAFETY (all three): bindgen's repr(C) mirrors of the C structs, starting
// with `size_t sz`, holding only integers.
unsafe impl OptsStruct for crate::cabi::bpf_prog_stream_read_opts {
    const NAME: &'static str = "bpf_prog_stream_read_opts";
}
// SAFETY: see above.
unsafe impl OptsStruct for crate::cabi::bpf_prog_assoc_struct_ops_opts {
    const NAME: &'static str = "bpf_prog_assoc_struct_ops_opts";
}
// SAFETY: see above.
unsafe impl OptsStruct for crate::cabi::bpf_token_create_opts {
    const NAME: &'static str = "bpf_token_create_opts";
}

/// `BPF_STREAM_STDOUT`, `BPF_STREAM_STDERR`.
const BPF_STREAM_STDOUT: u32 = 1;
const BPF_STREAM_STDERR: u32 = 2;

ffi_fn! {
    /// `int bpf_prog_stream_read(int prog_fd, __u32 stream_id, void *buf, __u32 buf_len, struct bpf_prog_stream_read_opts *opts)`:
    /// the kernel's `BPF_PROG_STREAM_READ_BY_FD` for a kernel program. A
    /// userbpf program cannot call the kfuncs that write streams, so its
    /// streams are empty: 0 bytes (`EINVAL` for an unknown stream).
    ///
    /// # Safety
    /// `buf` valid for `buf_len` bytes; `opts` NULL or valid.
    pub unsafe fn bpf_prog_stream_read(
        prog_fd: c_int,
        stream_id: u32,
        buf: *mut c_void,
        buf_len: u32,
        opts: *mut crate::cabi::bpf_prog_stream_read_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        if let Err(e) = unsafe { read_opts(opts.cast_const()) } {
            return ret(Err(e));
        }
        match classify(prog_fd) {
            // SAFETY: caller contract.
            Ok(FdBackend::Kernel) => ret(unsafe { kernel::prog_stream_read(prog_fd, stream_id, buf, buf_len) }),
            Ok(FdBackend::User(_)) => {
                if with_fd(prog_fd, userspace::program_by_fd).is_none() {
                    return ret(err(libc::EINVAL));
                }
                if stream_id != BPF_STREAM_STDOUT && stream_id != BPF_STREAM_STDERR {
                    return ret(err(libc::EINVAL));
                }
                0
            }
            Err(e) => ret(Err(e)),
        }
    }
}

ffi_fn! {
    /// `int bpf_prog_assoc_struct_ops(int prog_fd, int map_fd, struct bpf_prog_assoc_struct_ops_opts *opts)`:
    /// the kernel's `BPF_PROG_ASSOC_STRUCT_OPS` for a kernel program;
    /// struct_ops maps exist only in the kernel (`EOPNOTSUPP` otherwise).
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_prog_assoc_struct_ops(
        prog_fd: c_int,
        map_fd: c_int,
        opts: *mut crate::cabi::bpf_prog_assoc_struct_ops_opts,
    ) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts.cast_const()) } {
            Ok(o) => o,
            Err(e) => return ret(Err(e)),
        };
        match classify(prog_fd) {
            Ok(FdBackend::Kernel) => ret(kernel::prog_assoc_struct_ops(prog_fd, map_fd, o.map_or(0, |o| o.flags))),
            Ok(FdBackend::User(_)) => {
                print::warn("bpf_prog_assoc_struct_ops: struct_ops maps need the kernel; this is a userbpf program\n");
                ret(err(libc::EOPNOTSUPP))
            }
            Err(e) => ret(Err(e)),
        }
    }
}

ffi_fn! {
    /// `int bpf_token_create(int bpffs_fd, struct bpf_token_create_opts *opts)`:
    /// the kernel's `BPF_TOKEN_CREATE` (a token delegates kernel BPF
    /// rights; userbpf's own objects need none). `EOPNOTSUPP` with
    /// `USERBPF_BACKEND=user`.
    ///
    /// # Safety
    /// `opts` NULL or valid.
    pub unsafe fn bpf_token_create(bpffs_fd: c_int, opts: *mut crate::cabi::bpf_token_create_opts) -> c_int {
        // SAFETY: caller contract.
        let o = match unsafe { read_opts(opts.cast_const()) } {
            Ok(o) => o,
            Err(e) => return ret(Err(e)),
        };
        if kernel::user_mode() {
            print::warn("bpf_token_create: BPF tokens are a kernel concept; USERBPF_BACKEND=user keeps everything in user space\n");
            return ret(err(libc::EOPNOTSUPP));
        }
        ret(kernel::token_create(bpffs_fd, o.map_or(0, |o| o.flags)))
    }
}

// ---------------------------------------------------------------------------
// Pins (see the module docs)
// ---------------------------------------------------------------------------

const PIN_MAGIC: &str = "userbpf-pin 1";

/// What a pin file says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PinRecord {
    kind: ObjKind,
    id: u32,
    pid: u32,
    fd: RawFd,
    file: FileId,
}

impl PinRecord {
    fn to_text(&self) -> String {
        let kind = match self.kind {
            ObjKind::Map => "map",
            ObjKind::Prog => "prog",
            ObjKind::Btf => "btf",
            ObjKind::Link => "link",
        };
        format!(
            "{PIN_MAGIC}\nkind {kind}\nid {}\npid {}\nfd {}\ndev {}\nino {}\n",
            self.id, self.pid, self.fd, self.file.dev, self.file.ino
        )
    }

    fn parse(text: &str) -> Option<PinRecord> {
        let mut lines = text.lines();
        if lines.next()? != PIN_MAGIC {
            return None;
        }
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for l in lines {
            let (k, v) = l.split_once(' ')?;
            fields.insert(k, v);
        }
        let kind = match *fields.get("kind")? {
            "map" => ObjKind::Map,
            "prog" => ObjKind::Prog,
            _ => return None,
        };
        Some(PinRecord {
            kind,
            id: fields.get("id")?.parse().ok()?,
            pid: fields.get("pid")?.parse().ok()?,
            fd: fields.get("fd")?.parse().ok()?,
            file: FileId {
                dev: fields.get("dev")?.parse().ok()?,
                ino: fields.get("ino")?.parse().ok()?,
            },
        })
    }
}

/// The fds this process keeps open for its pins.
fn pin_holds() -> &'static Mutex<Vec<OwnedFd>> {
    static HOLDS: OnceLock<Mutex<Vec<OwnedFd>>> = OnceLock::new();
    HOLDS.get_or_init(Default::default)
}

/// `path` made absolute (against `path_fd`'s directory or the working
/// directory) and normalized lexically.
fn absolute_path(path: &Path, path_fd: Option<RawFd>) -> Res<PathBuf> {
    let base = if path.is_absolute() {
        PathBuf::from("/")
    } else if let Some(dfd) = path_fd {
        fd_flags(dfd)?;
        std::fs::read_link(format!("/proc/self/fd/{dfd}"))
            .map_err(|_| AbiError::Errno(libc::EBADF))?
    } else {
        std::env::current_dir().map_err(|e| AbiError::Errno(io_errno(&e)))?
    };
    let mut out = PathBuf::from("/");
    for c in base.join(path).components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

/// bpffs mount points: `/sys/fs/bpf` and every mounted bpffs.
fn bpffs_mounts() -> Vec<PathBuf> {
    let mut mounts = vec![PathBuf::from("/sys/fs/bpf")];
    if let Ok(text) = std::fs::read_to_string("/proc/self/mounts") {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (_, Some(dir), Some("bpf")) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            // Mount points escape spaces as \040.
            let dir = PathBuf::from(dir.replace("\\040", " "));
            if !mounts.contains(&dir) {
                mounts.push(dir);
            }
        }
    }
    mounts
}

/// Where the pin of `abs` lives: `Ok(Some)` inside a bpffs, `Ok(None)`
/// outside.
fn pin_file(abs: &Path) -> Res<Option<(PathBuf, bool)>> {
    let Some(mount) = bpffs_mounts().into_iter().find(|m| abs.starts_with(m)) else {
        return Ok(None);
    };
    let root = userbpf_runtime::namespace::ensure_namespace_dir()
        .map_err(|e| AbiError::Errno(io_errno(&e)))?
        .join("bpffs");
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    Ok(Some((root.join(rel), abs == mount)))
}

/// Whether the process that made `rec` still holds the object.
fn open_pinned(rec: &PinRecord, mode: c_int) -> Option<OwnedFd> {
    let fd = if rec.pid == std::process::id() {
        let holds = pin_holds().lock().unwrap_or_else(|e| e.into_inner());
        let held = holds
            .iter()
            .find(|h| FileId::of(h.as_fd()).is_ok_and(|(id, _)| id == rec.file))?;
        fd_with_mode(held.as_fd(), mode).ok()?
    } else {
        reopen(rec.pid, rec.fd, mode).ok()?
    };
    let (id, _) = FileId::of(fd.as_fd()).ok()?;
    (id == rec.file).then_some(fd)
}

/// `BPF_OBJ_PIN`.
///
/// # Safety
/// `pathname` NULL or NUL-terminated; `opts` NULL or valid.
unsafe fn obj_pin(fd: RawFd, pathname: *const c_char, opts: *const BpfObjPinOpts) -> Res<c_int> {
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts) }?;
    let file_flags = o.map_or(0, |o| o.file_flags);
    let path_fd = o.map_or(0, |o| o.path_fd);
    if classify(fd) == Ok(FdBackend::Kernel) {
        // A real bpffs pin; the path must not name a live pin of ours.
        // SAFETY: caller contract.
        if unsafe { virtual_pin_live(pathname, file_flags, path_fd) } {
            return err(libc::EEXIST);
        }
        // SAFETY: caller contract.
        return unsafe { kernel::obj_pin(fd, pathname, file_flags, path_fd) };
    }
    if file_flags & !f::BPF_F_PATH_FD != 0 || (file_flags & f::BPF_F_PATH_FD == 0 && path_fd != 0) {
        return err(libc::EINVAL);
    }
    // bpf_fd_probe_obj: a program or a map, else EINVAL (a closed fd too).
    let (kind, id, obj_fd) = if fd_flags(fd).is_err() {
        return err(libc::EINVAL);
    } else if let Some(p) = with_fd(fd, userspace::program_by_fd) {
        (
            ObjKind::Prog,
            p.id,
            p.fd.try_clone()
                .map_err(|e| AbiError::Errno(io_errno(&e)))?,
        )
    } else {
        let m = map_fd(fd).map_err(|_| AbiError::Errno(libc::EINVAL))?;
        // A pinned map is reachable by id from every process.
        publish_map(&m.map);
        (ObjKind::Map, m.map.id(), m.map.dup_fd().map_err(map_err)?)
    };
    if pathname.is_null() {
        return err(libc::EFAULT);
    }
    // SAFETY: NUL-terminated (caller contract).
    let path = unsafe { CStr::from_ptr(pathname) }
        .to_string_lossy()
        .into_owned();
    let dir_fd = (file_flags & f::BPF_F_PATH_FD != 0).then_some(path_fd);
    let abs = absolute_path(Path::new(&path), dir_fd)?;
    let Some((file, is_root)) = pin_file(&abs)? else {
        // Not a bpffs: EPERM, or ENOENT if the directory does not exist.
        let parent_exists = abs.parent().is_some_and(Path::is_dir);
        return err(if parent_exists {
            libc::EPERM
        } else {
            libc::ENOENT
        });
    };
    if is_root || file.is_dir() || std::fs::symlink_metadata(&abs).is_ok() {
        // The path is taken, by one of ours or by a real bpffs entry.
        return err(libc::EEXIST);
    }
    if let Ok(text) = std::fs::read_to_string(&file) {
        // A pin whose object is gone is replaced; a live one is EEXIST.
        let live =
            PinRecord::parse(&text).is_some_and(|r| open_pinned(&r, libc::O_RDONLY).is_some());
        if live {
            return err(libc::EEXIST);
        }
        let _ = std::fs::remove_file(&file);
    }
    let parent = file.parent().ok_or(AbiError::Errno(libc::EINVAL))?;
    std::fs::create_dir_all(parent).map_err(|e| AbiError::Errno(io_errno(&e)))?;
    let (file_id, _) = FileId::of(obj_fd.as_fd()).map_err(|e| AbiError::Errno(io_errno(&e)))?;
    let rec = PinRecord {
        kind,
        id,
        pid: std::process::id(),
        fd: obj_fd.as_raw_fd(),
        file: file_id,
    };
    // Written aside, then linked into place: no reader sees half a record,
    // and a concurrent pin of the same path loses with EEXIST.
    let tmp = parent.join(format!(
        ".pin-{}-{}",
        std::process::id(),
        obj_fd.as_raw_fd()
    ));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| AbiError::Errno(io_errno(&e)))?;
        w.write_all(rec.to_text().as_bytes())
            .map_err(|e| AbiError::Errno(io_errno(&e)))?;
    }
    let linked = std::fs::hard_link(&tmp, &file);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|e| AbiError::Errno(io_errno(&e)))?;
    pin_holds()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(obj_fd);
    Ok(0)
}

/// `BPF_OBJ_GET`.
///
/// # Safety
/// `pathname` NULL or NUL-terminated; `opts` NULL or valid.
unsafe fn obj_get(pathname: *const c_char, opts: *const BpfObjGetOpts) -> Res<c_int> {
    install_resolver();
    // SAFETY: caller contract.
    let o = unsafe { read_opts(opts) }?;
    let file_flags = o.map_or(0, |o| o.file_flags);
    let path_fd = o.map_or(0, |o| o.path_fd);
    if file_flags & !(f::BPF_F_RDONLY | f::BPF_F_WRONLY | f::BPF_F_PATH_FD) != 0
        || (file_flags & f::BPF_F_PATH_FD == 0 && path_fd != 0)
    {
        return err(libc::EINVAL);
    }
    let mode = file_mode(file_flags)?;
    if pathname.is_null() {
        return err(libc::EFAULT);
    }
    // SAFETY: NUL-terminated (caller contract).
    let path = unsafe { CStr::from_ptr(pathname) }
        .to_string_lossy()
        .into_owned();
    let dir_fd = (file_flags & f::BPF_F_PATH_FD != 0).then_some(path_fd);
    let abs = absolute_path(Path::new(&path), dir_fd)?;
    // A real bpffs pin (of a kernel object) first; where the path exists
    // for real, the kernel's answer is the answer.
    // SAFETY: NUL-terminated (caller contract).
    match unsafe { kernel::obj_get(pathname, file_flags, path_fd) } {
        Ok(fd) => return into_good_fd(fd),
        Err(e) if e != libc::ENOENT && std::fs::symlink_metadata(&abs).is_ok() => {
            return err(e);
        }
        Err(_) => {}
    }
    let Some((file, is_root)) = pin_file(&abs)? else {
        // Outside a bpffs: whatever is there is not a BPF object.
        return err(if abs.exists() {
            libc::EACCES
        } else {
            libc::ENOENT
        });
    };
    if is_root || file.is_dir() {
        return err(libc::EACCES);
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return err(libc::ENOENT),
        Err(e) => return err(io_errno(&e)),
    };
    let rec = PinRecord::parse(&text).ok_or(AbiError::Errno(libc::EACCES))?;
    let open_mode = if rec.kind == ObjKind::Prog {
        libc::O_RDONLY
    } else {
        mode
    };
    let Some(fd) = open_pinned(&rec, open_mode) else {
        // The pinning process is gone and the object with it.
        let _ = std::fs::remove_file(&file);
        return err(libc::ENOENT);
    };
    if rec.kind == ObjKind::Prog {
        adopt_program(fd.as_fd(), rec.id, Some(rec.pid))?;
    }
    into_good_fd(fd)
}

ffi_fn! {
    /// `int bpf_obj_pin_opts(int fd, const char *pathname, const struct bpf_obj_pin_opts *opts)`
    ///
    /// # Safety
    /// `pathname` NULL or NUL-terminated; `opts` NULL or valid.
    pub unsafe fn bpf_obj_pin_opts(fd: c_int, pathname: *const c_char, opts: *const BpfObjPinOpts) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_pin(fd, pathname, opts) })
    }
}

ffi_fn! {
    /// `int bpf_obj_pin(int fd, const char *pathname)`
    ///
    /// # Safety
    /// `pathname` NULL or NUL-terminated.
    pub unsafe fn bpf_obj_pin(fd: c_int, pathname: *const c_char) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_pin(fd, pathname, std::ptr::null()) })
    }
}

ffi_fn! {
    /// `int bpf_obj_get_opts(const char *pathname, const struct bpf_obj_get_opts *opts)`
    ///
    /// # Safety
    /// `pathname` NULL or NUL-terminated; `opts` NULL or valid.
    pub unsafe fn bpf_obj_get_opts(pathname: *const c_char, opts: *const BpfObjGetOpts) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_get(pathname, opts) })
    }
}

ffi_fn! {
    /// `int bpf_obj_get(const char *pathname)`
    ///
    /// # Safety
    /// `pathname` NULL or NUL-terminated.
    pub unsafe fn bpf_obj_get(pathname: *const c_char) -> c_int {
        // SAFETY: caller contract.
        ret(unsafe { obj_get(pathname, std::ptr::null()) })
    }
}

/// `BPF_FS_MAGIC`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `dir` is on a bpffs (`statfs`, as libbpf's `check_path`):
/// `Err` with the errno if it cannot be asked.
pub(crate) fn on_bpffs(dir: &Path) -> Result<bool, i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } < 0 {
        return Err(io_errno(&std::io::Error::last_os_error()));
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Whether `pathname` (with `bpf_obj_pin_opts`' flags) names a pin of ours
/// whose object is alive.
///
/// # Safety
/// `pathname` NULL or NUL-terminated.
unsafe fn virtual_pin_live(pathname: *const c_char, file_flags: u32, path_fd: c_int) -> bool {
    if pathname.is_null() {
        return false;
    }
    // SAFETY: caller contract.
    let path = unsafe { CStr::from_ptr(pathname) }
        .to_string_lossy()
        .into_owned();
    let dir_fd = (file_flags & f::BPF_F_PATH_FD != 0).then_some(path_fd);
    let Ok(abs) = absolute_path(Path::new(&path), dir_fd) else {
        return false;
    };
    let Ok(Some((file, _))) = pin_file(&abs) else {
        return false;
    };
    std::fs::read_to_string(file).is_ok_and(|text| {
        PinRecord::parse(&text).is_some_and(|r| open_pinned(&r, libc::O_RDONLY).is_some())
    })
}

/// Removes the pin at `path` (what `unlink` of a bpffs file does): a real
/// bpffs entry (a pinned kernel object) is unlinked; otherwise our pin
/// record is removed: ENOENT when nothing is pinned there, EPERM outside a
/// bpffs.
pub(crate) fn unpin_path(path: &str) -> Res<()> {
    let abs = absolute_path(Path::new(path), None)?;
    let real = std::fs::symlink_metadata(&abs).is_ok()
        && abs.parent().is_some_and(|d| on_bpffs(d) == Ok(true));
    if real {
        return std::fs::remove_file(&abs).map_err(|e| AbiError::Errno(io_errno(&e)));
    }
    let (file, _) = pin_file(&abs)?.ok_or(AbiError::Errno(libc::EPERM))?;
    std::fs::remove_file(&file).map_err(|e| AbiError::Errno(io_errno(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_matches_the_kernel() {
        // `r0 = 0; exit`: Linux 6.18 reports tag 59f4a931744dcdc6.
        let image = ProgramImage {
            name: "ret0".into(),
            prog_type: prog_type::RAW_TRACEPOINT,
            expected_attach_type: 0,
            insns: vec![
                Insn::from_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]),
                Insn::from_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
            ],
            map_ids: vec![],
        };
        assert_eq!(
            prog_tag(&image),
            [0x59, 0xf4, 0xa9, 0x31, 0x74, 0x4d, 0xcd, 0xc6]
        );
    }

    #[test]
    fn create_checks() {
        let a = |map_type, key_size, value_size, max_entries, map_flags| CreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags,
            map_extra: 0,
        };
        assert_eq!(check_map_attr(&a(mt::HASH, 0, 8, 4, 0)), Err(libc::EINVAL));
        assert_eq!(check_map_attr(&a(mt::HASH, 4, 8, 4, 1)), Ok(()));
        assert_eq!(check_map_attr(&a(mt::LRU_HASH, 4, 8, 4, 1)), Err(ENOTSUPP));
        assert_eq!(
            check_map_attr(&a(mt::PERCPU_ARRAY, 4, 40000, 4, 0)),
            Err(libc::E2BIG)
        );
        assert_eq!(check_map_attr(&a(mt::RINGBUF, 0, 0, 4096, 0)), Ok(()));
        assert_eq!(
            check_map_attr(&a(mt::RINGBUF, 0, 0, 3 * 4096, 0)),
            Err(libc::EINVAL)
        );
        assert_eq!(check_map_attr(&a(mt::LPM_TRIE, 260, 8, 4, 1)), Ok(()));
        assert_eq!(
            check_map_attr(&a(mt::LPM_TRIE, 261, 8, 4, 1)),
            Err(libc::EINVAL)
        );
        assert_eq!(check_map_attr(&a(mt::STACK_TRACE, 4, 1016, 4, 0)), Ok(()));
        assert_eq!(check_map_attr(&a(mt::QUEUE, 4, 8, 4, 0)), Err(libc::EINVAL));
        assert_eq!(check_map_attr(&a(14, 4, 4, 4, 0)), Err(libc::EOPNOTSUPP));
        assert_eq!(check_map_attr(&a(99, 4, 4, 4, 0)), Err(libc::EINVAL));
    }

    #[test]
    fn pin_paths() {
        assert_eq!(
            absolute_path(Path::new("/sys/fs/bpf/a/../b/./c"), None).unwrap(),
            PathBuf::from("/sys/fs/bpf/b/c")
        );
        let rec = PinRecord {
            kind: ObjKind::Map,
            id: 7,
            pid: 42,
            fd: 9,
            file: FileId { dev: 1, ino: 2 },
        };
        assert_eq!(PinRecord::parse(&rec.to_text()), Some(rec));
        assert_eq!(PinRecord::parse("junk"), None);
    }

    #[test]
    fn names() {
        // SAFETY: the tables hold static C strings.
        let s = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
        assert_eq!(s(libbpf_bpf_map_type_str(mt::LPM_TRIE)), "lpm_trie");
        assert_eq!(s(libbpf_bpf_prog_type_str(prog_type::SYSCALL)), "syscall");
        assert_eq!(s(libbpf_bpf_attach_type_str(0)), "cgroup_inet_ingress");
        assert_eq!(s(libbpf_bpf_link_type_str(1)), "raw_tracepoint");
        assert!(libbpf_bpf_map_type_str(1000).is_null());
    }
}
