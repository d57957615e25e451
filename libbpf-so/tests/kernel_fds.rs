//! The `bpf.h` wrappers, the event buffers and the pins on kernel objects
//! (`USERBPF_BACKEND=kernel`): every wrapper is checked against the raw
//! syscall on a twin kernel map (same calls, same results and errnos),
//! programs loaded with `bpf_prog_load` produce ring buffer and perf buffer
//! events that `ring_buffer__poll` / `perf_buffer__poll` deliver, a ring
//! buffer manager serves a userspace and a kernel ring together, and pins
//! round-trip through the real bpffs. Needs root (skipped otherwise, with a
//! message).

use std::collections::BTreeSet;
use std::ffi::{c_int, c_void, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::{null, null_mut};
use std::sync::{Mutex, Once};

use bpf::bpf_api::{
    BpfMapBatchOpts, BpfMapCreateOpts, BpfObjGetOpts, BpfProgLoadOpts, BpfTestRunOpts,
};
use bpf::cabi;
use bpf::implemented::*;
use userbpf_libbpf_compat::backend::kernel::{probe, sys};
use userbpf_runtime::ids::{next_id, IdKind};
use userbpf_runtime::maps::ringbuf::RingBuf;
use userbpf_runtime::maps::{map_type as mt, Map, MapSpec};

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Root with a kernel that loads BPF programs, and kernel mode on (once,
/// before any test touches the library).
fn ready() -> bool {
    static MODE: Once = Once::new();
    MODE.call_once(|| std::env::set_var("USERBPF_BACKEND", "kernel"));
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (kernel BPF)");
        return false;
    }
    if !probe::kernel_permitted() {
        eprintln!("skipped: {}", probe::why_not());
        return false;
    }
    true
}

fn fd_target(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn own(fd: c_int) -> OwnedFd {
    assert!(fd >= 0, "fd {fd}, errno {}", errno());
    // SAFETY: a fresh fd the call under test returned.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// `bpf_map_create` (kernel mode).
fn create(t: u32, key: u32, value: u32, max: u32, flags: u32) -> OwnedFd {
    let opts = BpfMapCreateOpts {
        sz: std::mem::size_of::<BpfMapCreateOpts>(),
        btf_fd: 0,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        btf_vmlinux_value_type_id: 0,
        inner_map_fd: 0,
        map_flags: flags,
        map_extra: 0,
        numa_node: 0,
        map_ifindex: 0,
        value_type_btf_obj_fd: 0,
        token_fd: 0,
        excl_prog_hash: null(),
        excl_prog_hash_size: 0,
    };
    // SAFETY: a valid name and opts.
    let fd = unsafe { bpf_map_create(t, c"kfds".as_ptr(), key, value, max, &opts) };
    let fd = own(fd);
    assert_eq!(fd_target(fd.as_raw_fd()), "anon_inode:bpf-map");
    fd
}

/// The same map made with the raw syscall (the reference).
fn create_raw(t: u32, key: u32, value: u32, max: u32, flags: u32) -> OwnedFd {
    let mut attr = sys::MapCreateAttr {
        map_type: t,
        key_size: key,
        value_size: value,
        max_entries: max,
        map_flags: flags,
        ..Default::default()
    };
    sys::map_create(&mut attr).expect("raw map create")
}

fn possible_cpus() -> usize {
    libbpf_num_possible_cpus() as usize
}

// ---------------------------------------------------------------------------
// Element operations, differential
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Update(Option<Vec<u8>>, Vec<u8>, u64),
    Lookup(Option<Vec<u8>>, u64),
    Delete(Option<Vec<u8>>, u64),
    NextKey(Option<Vec<u8>>),
    LookupAndDelete(Option<Vec<u8>>, u64),
    Freeze,
}

/// `(return value, errno if failed, output bytes)`.
type Outcome = (c_int, i32, Vec<u8>);

fn ptr(k: &Option<Vec<u8>>) -> *const c_void {
    k.as_ref().map_or(null(), |k| k.as_ptr().cast())
}

/// One op through the wrappers.
fn wrapped(fd: RawFd, op: &Op, out_len: usize) -> Outcome {
    let mut out = vec![0u8; out_len];
    let o = out.as_mut_ptr().cast::<c_void>();
    // SAFETY: keys and values are sized for the map; out has out_len bytes.
    let r = unsafe {
        match op {
            Op::Update(k, v, f) => bpf_map_update_elem(fd, ptr(k), v.as_ptr().cast(), *f),
            Op::Lookup(k, 0) => bpf_map_lookup_elem(fd, ptr(k), o),
            Op::Lookup(k, f) => bpf_map_lookup_elem_flags(fd, ptr(k), o, *f),
            Op::Delete(k, 0) => bpf_map_delete_elem(fd, ptr(k)),
            Op::Delete(k, f) => bpf_map_delete_elem_flags(fd, ptr(k), *f),
            Op::NextKey(k) => bpf_map_get_next_key(fd, ptr(k), o),
            Op::LookupAndDelete(k, 0) => bpf_map_lookup_and_delete_elem(fd, ptr(k), o),
            Op::LookupAndDelete(k, f) => bpf_map_lookup_and_delete_elem_flags(fd, ptr(k), o, *f),
            Op::Freeze => bpf_map_freeze(fd),
        }
    };
    let e = if r < 0 { errno() } else { 0 };
    if r < 0 {
        assert_eq!(-r, e, "{op:?}: the return value is -errno");
    }
    (r, e, out)
}

/// One op through the raw syscall.
fn raw(fd: RawFd, op: &Op, out_len: usize) -> Outcome {
    use sys::cmd;
    let mut out = vec![0u8; out_len];
    let o = out.as_mut_ptr().cast::<c_void>();
    // SAFETY: as in `wrapped`.
    let r = unsafe {
        match op {
            Op::Update(k, v, f) => sys::map_elem(
                cmd::MAP_UPDATE_ELEM,
                fd,
                ptr(k),
                v.as_ptr() as *mut c_void,
                *f,
            ),
            Op::Lookup(k, f) => sys::map_elem(cmd::MAP_LOOKUP_ELEM, fd, ptr(k), o, *f),
            Op::Delete(k, f) => sys::map_elem(cmd::MAP_DELETE_ELEM, fd, ptr(k), null_mut(), *f),
            Op::NextKey(k) => sys::map_elem(cmd::MAP_GET_NEXT_KEY, fd, ptr(k), o, 0),
            Op::LookupAndDelete(k, f) => {
                sys::map_elem(cmd::MAP_LOOKUP_AND_DELETE_ELEM, fd, ptr(k), o, *f)
            }
            Op::Freeze => sys::map_freeze(fd),
        }
    };
    match r {
        Ok(()) => (0, 0, out),
        Err(e) => (-e, e, out),
    }
}

/// Runs `ops` on a map made by `bpf_map_create` and on a raw twin; every
/// outcome must agree (outputs compared unless `order_free`, for hash
/// iteration order, which differs between two hash maps).
fn differential(t: u32, key: u32, value: u32, max: u32, flags: u32, ops: &[Op]) {
    let a = create(t, key, value, max, flags);
    let b = create_raw(t, key, value, max, flags);
    let percpu = matches!(t, mt::PERCPU_ARRAY | mt::PERCPU_HASH | mt::LRU_PERCPU_HASH);
    let vlen = if percpu {
        (value as usize).next_multiple_of(8) * possible_cpus()
    } else {
        value as usize
    };
    let out_len = vlen.max(key as usize).max(8);
    for op in ops {
        let x = wrapped(a.as_raw_fd(), op, out_len);
        let y = raw(b.as_raw_fd(), op, out_len);
        let order_free = matches!(op, Op::NextKey(_)) && matches!(t, mt::HASH | mt::LRU_HASH);
        if order_free {
            assert_eq!((x.0, x.1), (y.0, y.1), "type {t}: {op:?}");
        } else {
            assert_eq!(x, y, "type {t}: {op:?}");
        }
    }
}

fn k32(k: u32) -> Option<Vec<u8>> {
    Some(k.to_ne_bytes().to_vec())
}

fn v64(v: u64) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;
const BPF_F_LOCK: u64 = 4;
const BPF_F_MMAPABLE: u32 = 1 << 10;
const BPF_F_RDONLY: u32 = 1 << 3;

#[test]
fn hash_ops_match_the_kernel() {
    if !ready() {
        return;
    }
    use Op::*;
    let ops = [
        Lookup(k32(1), 0),
        Update(k32(1), v64(10), BPF_ANY),
        Update(k32(1), v64(11), BPF_NOEXIST),
        Update(k32(2), v64(20), BPF_EXIST),
        Update(k32(2), v64(20), BPF_NOEXIST),
        Update(k32(3), v64(30), BPF_ANY),
        Update(k32(3), v64(30), 99),
        Lookup(k32(1), 0),
        Lookup(k32(1), BPF_F_LOCK),
        Lookup(k32(9), 0),
        Lookup(None, 0),
        NextKey(None),
        NextKey(k32(9)),
        Delete(k32(9), 0),
        Delete(k32(2), 1),
        LookupAndDelete(k32(2), 0),
        LookupAndDelete(k32(2), 0),
        Delete(k32(1), 0),
        Update(k32(4), v64(40), BPF_ANY),
        Freeze,
        Update(k32(5), v64(50), BPF_ANY),
        Lookup(k32(4), 0),
    ];
    differential(mt::HASH, 4, 8, 2, 0, &ops);
    // An LRU map evicts instead of saying E2BIG, and which element goes
    // depends on the CPU: a large one, never full.
    differential(mt::LRU_HASH, 4, 8, 128, 0, &ops[..12]);
}

#[test]
fn array_percpu_queue_ops_match_the_kernel() {
    if !ready() {
        return;
    }
    use Op::*;
    let array = [
        Lookup(k32(0), 0),
        Update(k32(1), v64(7), BPF_ANY),
        Update(k32(1), v64(7), BPF_NOEXIST),
        Update(k32(9), v64(7), BPF_ANY),
        Lookup(k32(1), 0),
        Lookup(k32(4), 0),
        Delete(k32(1), 0),
        NextKey(None),
        NextKey(k32(1)),
        NextKey(k32(3)),
        LookupAndDelete(k32(1), 0),
        Freeze,
        Update(k32(2), v64(1), BPF_ANY),
    ];
    differential(mt::ARRAY, 4, 8, 4, 0, &array);
    differential(mt::ARRAY, 4, 8, 4, BPF_F_MMAPABLE, &array);
    let n = possible_cpus();
    let pc = |v: u64| -> Vec<u8> { (0..n).flat_map(|c| (v + c as u64).to_ne_bytes()).collect() };
    differential(
        mt::PERCPU_ARRAY,
        4,
        8,
        2,
        0,
        &[
            Update(k32(1), pc(5), BPF_ANY),
            Lookup(k32(1), 0),
            Lookup(k32(0), 0),
            Update(k32(2), pc(5), BPF_ANY),
        ],
    );
    let queue = [
        Lookup(None, 0),
        LookupAndDelete(None, 0),
        Update(None, v64(1), BPF_ANY),
        Update(None, v64(2), BPF_ANY),
        Update(None, v64(3), BPF_ANY),
        Update(None, v64(4), 2),
        Lookup(None, 0),
        Lookup(k32(0), 0),
        NextKey(None),
        Delete(None, 0),
        LookupAndDelete(None, 0),
        LookupAndDelete(None, BPF_F_LOCK),
        LookupAndDelete(None, 0),
        LookupAndDelete(None, 0),
    ];
    differential(mt::QUEUE, 0, 8, 2, 0, &queue);
    differential(
        mt::RINGBUF,
        0,
        0,
        4096,
        0,
        &[
            Lookup(None, 0),
            Update(None, vec![0; 8], 0),
            NextKey(None),
            Delete(None, 0),
        ],
    );
    differential(
        mt::PERF_EVENT_ARRAY,
        4,
        4,
        2,
        0,
        &[
            Lookup(k32(0), 0),
            Update(k32(0), 0u32.to_ne_bytes().to_vec(), 0),
            Delete(k32(0), 0),
            NextKey(None),
        ],
    );
}

#[test]
fn mmapable_array_is_shared_with_lookups() {
    if !ready() {
        return;
    }
    let fd = create(mt::ARRAY, 4, 8, 512, BPF_F_MMAPABLE);
    // SAFETY: a new shared mapping of the map's values (8 * 512 bytes).
    let p = unsafe {
        libc::mmap(
            null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: element 3 of the mapping.
    unsafe { p.cast::<u64>().add(3).write_volatile(0xfeed) };
    let mut v = 0u64;
    let k = 3u32;
    // SAFETY: valid key and value.
    assert_eq!(
        unsafe { bpf_map_lookup_elem(fd.as_raw_fd(), (&raw const k).cast(), (&raw mut v).cast()) },
        0
    );
    assert_eq!(v, 0xfeed);
    let w = 0xbeefu64;
    // SAFETY: valid key and value.
    assert_eq!(
        unsafe {
            bpf_map_update_elem(
                fd.as_raw_fd(),
                (&raw const k).cast(),
                (&raw const w).cast(),
                0,
            )
        },
        0
    );
    // SAFETY: as above.
    assert_eq!(unsafe { p.cast::<u64>().add(3).read_volatile() }, 0xbeef);
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(p, 4096) };
}

fn batch_opts() -> BpfMapBatchOpts {
    BpfMapBatchOpts {
        sz: std::mem::size_of::<BpfMapBatchOpts>(),
        elem_flags: 0,
        flags: 0,
    }
}

#[test]
fn batch_ops_match_the_kernel() {
    if !ready() {
        return;
    }
    for t in [mt::HASH, mt::ARRAY] {
        let a = create(t, 4, 8, 8, 0);
        let b = create_raw(t, 4, 8, 8, 0);
        let keys: Vec<u32> = (0..6).collect();
        let vals: Vec<u64> = (0..6).map(|i| 100 + i).collect();
        let opts = batch_opts();
        for (fd, wrap) in [(a.as_raw_fd(), true), (b.as_raw_fd(), false)] {
            let mut count = 6u32;
            let r = if wrap {
                // SAFETY: 6 keys and values.
                unsafe {
                    bpf_map_update_batch(
                        fd,
                        keys.as_ptr().cast(),
                        vals.as_ptr().cast(),
                        &mut count,
                        &opts,
                    )
                }
            } else {
                let mut attr = sys::MapBatchAttr {
                    keys: keys.as_ptr() as u64,
                    values: vals.as_ptr() as u64,
                    count,
                    map_fd: fd as u32,
                    ..Default::default()
                };
                // SAFETY: as above.
                let r = unsafe { sys::bpf(sys::cmd::MAP_UPDATE_BATCH, &mut attr) };
                count = attr.count;
                r.map_or_else(|e| -e, |_| 0)
            };
            assert_eq!((r, count), (0, 6), "update batch, type {t}");
        }
        // Lookups in steps of 4: the wrapper's outcomes equal the kernel's.
        let mut got: Vec<Vec<(u32, u64)>> = Vec::new();
        let mut steps: Vec<Vec<(c_int, u32)>> = Vec::new();
        for (fd, wrap) in [(a.as_raw_fd(), true), (b.as_raw_fd(), false)] {
            let mut all = Vec::new();
            let mut token = [0u8; 8];
            let mut first = true;
            let mut results = Vec::new();
            loop {
                let mut out_token = [0u8; 8];
                let mut ks = [0u32; 4];
                let mut vs = [0u64; 4];
                let mut count = 4u32;
                let in_batch = if first {
                    null_mut()
                } else {
                    token.as_mut_ptr().cast()
                };
                let r = if wrap {
                    // SAFETY: room for 4 keys and values and a token.
                    let r = unsafe {
                        bpf_map_lookup_batch(
                            fd,
                            in_batch,
                            out_token.as_mut_ptr().cast(),
                            ks.as_mut_ptr().cast(),
                            vs.as_mut_ptr().cast(),
                            &mut count,
                            &opts,
                        )
                    };
                    if r < 0 {
                        assert_eq!(-r, errno());
                    }
                    r
                } else {
                    let mut attr = sys::MapBatchAttr {
                        in_batch: in_batch as u64,
                        out_batch: out_token.as_mut_ptr() as u64,
                        keys: ks.as_mut_ptr() as u64,
                        values: vs.as_mut_ptr() as u64,
                        count,
                        map_fd: fd as u32,
                        ..Default::default()
                    };
                    // SAFETY: as above.
                    let r = unsafe { sys::bpf(sys::cmd::MAP_LOOKUP_BATCH, &mut attr) };
                    count = attr.count;
                    r.map_or_else(|e| -e, |_| 0)
                };
                results.push((r, count));
                all.extend((0..count as usize).map(|i| (ks[i], vs[i])));
                if r < 0 {
                    break;
                }
                token = out_token;
                first = false;
            }
            all.sort();
            got.push(all);
            steps.push(results);
        }
        assert_eq!(got[0], got[1], "type {t}");
        if t == mt::ARRAY {
            // Hash maps differ in bucket order; arrays do not.
            assert_eq!(steps[0], steps[1], "array lookup batch steps");
        }
        let mut expect: Vec<(u32, u64)> = keys.iter().copied().zip(vals.iter().copied()).collect();
        if t == mt::ARRAY {
            expect.extend((6..8).map(|k| (k, 0)));
        }
        assert_eq!(got[0], expect, "type {t}");
        if t == mt::HASH {
            // lookup_and_delete_batch of everything: ENOENT at the end.
            let mut ks = [0u32; 8];
            let mut vs = [0u64; 8];
            let mut token = [0u8; 8];
            let mut count = 8u32;
            // SAFETY: room for 8 keys and values and a token.
            let r = unsafe {
                bpf_map_lookup_and_delete_batch(
                    a.as_raw_fd(),
                    null_mut(),
                    token.as_mut_ptr().cast(),
                    ks.as_mut_ptr().cast(),
                    vs.as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            assert_eq!((r, errno(), count), (-libc::ENOENT, libc::ENOENT, 6));
            let mut pairs: Vec<(u32, u64)> = (0..6).map(|i| (ks[i], vs[i])).collect();
            pairs.sort();
            assert_eq!(pairs, got[1]);
            let k = 0u32;
            let mut next = 0u32;
            // SAFETY: valid key buffers.
            let r = unsafe {
                bpf_map_get_next_key(a.as_raw_fd(), (&raw const k).cast(), (&raw mut next).cast())
            };
            assert_eq!(
                (r, errno()),
                (-libc::ENOENT, libc::ENOENT),
                "empty after the batch"
            );
            // Back in, then delete_batch.
            let mut n = 6u32;
            // SAFETY: 6 keys and values.
            assert_eq!(
                unsafe {
                    bpf_map_update_batch(
                        a.as_raw_fd(),
                        keys.as_ptr().cast(),
                        vals.as_ptr().cast(),
                        &mut n,
                        &opts,
                    )
                },
                0
            );
            let mut n = 6u32;
            // SAFETY: 6 keys.
            assert_eq!(
                unsafe { bpf_map_delete_batch(a.as_raw_fd(), keys.as_ptr().cast(), &mut n, &opts) },
                0
            );
            assert_eq!(n, 6);
            // A delete batch of a missing key stops there with ENOENT.
            let mut n = 1u32;
            // SAFETY: one key.
            let r =
                unsafe { bpf_map_delete_batch(a.as_raw_fd(), keys.as_ptr().cast(), &mut n, &opts) };
            assert_eq!((r, n), (-libc::ENOENT, 0));
        }
    }
}

// ---------------------------------------------------------------------------
// Info, access modes, bad fds
// ---------------------------------------------------------------------------

#[test]
fn info_and_access_modes() {
    if !ready() {
        return;
    }
    let fd = create(mt::HASH, 4, 8, 16, 0);
    let mut info = [0u8; 104];
    let mut len = info.len() as u32;
    // SAFETY: a buffer of len bytes.
    let r = unsafe { bpf_map_get_info_by_fd(fd.as_raw_fd(), info.as_mut_ptr().cast(), &mut len) };
    assert_eq!(r, 0);
    let info_raw: sys::MapInfo = sys::obj_info(fd.as_raw_fd()).unwrap();
    let u32_at = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().unwrap());
    assert_eq!(
        (u32_at(0), u32_at(4), u32_at(8), u32_at(12), u32_at(16)),
        (mt::HASH, info_raw.id, 4, 8, 16)
    );
    assert_eq!(&info[24..29], b"kfds\0");
    assert!(len > 0 && len <= 104);
    // Through the generic call and a short struct.
    let mut short = [0u8; 8];
    let mut slen = 8u32;
    // SAFETY: as above.
    assert_eq!(
        unsafe { bpf_obj_get_info_by_fd(fd.as_raw_fd(), short.as_mut_ptr().cast(), &mut slen) },
        0
    );
    assert_eq!(slen, 8);
    // A read-only fd of the same map, by id: writes are EPERM.
    let opts = bpf::bpf_api::BpfGetFdByIdOpts {
        sz: std::mem::size_of::<bpf::bpf_api::BpfGetFdByIdOpts>(),
        open_flags: BPF_F_RDONLY,
        token_fd: 0,
    };
    // SAFETY: valid opts.
    let ro = own(unsafe { bpf_map_get_fd_by_id_opts(info_raw.id, &opts) });
    let (k, v) = (1u32, 2u64);
    // SAFETY: valid key and value.
    let r = unsafe {
        bpf_map_update_elem(
            ro.as_raw_fd(),
            (&raw const k).cast(),
            (&raw const v).cast(),
            0,
        )
    };
    assert_eq!((r, errno()), (-libc::EPERM, libc::EPERM));
    // Non-BPF fds and closed fds: the kernel's answers.
    let ev = own(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) });
    let mut out = 0u64;
    // SAFETY: valid buffers.
    let r = unsafe {
        bpf_map_lookup_elem(ev.as_raw_fd(), (&raw const k).cast(), (&raw mut out).cast())
    };
    assert_eq!((r, errno()), (-libc::EINVAL, libc::EINVAL));
    // SAFETY: as above.
    let r = unsafe { bpf_map_lookup_elem(999_999, (&raw const k).cast(), (&raw mut out).cast()) };
    assert_eq!((r, errno()), (-libc::EBADF, libc::EBADF));
    let mut len = 8u32;
    // SAFETY: as above.
    let r = unsafe { bpf_obj_get_info_by_fd(999_999, short.as_mut_ptr().cast(), &mut len) };
    assert_eq!((r, errno()), (-libc::EBADFD, libc::EBADFD));
}

// ---------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------

/// Instruction encoders (`struct bpf_insn` as a little-endian u64).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst) << 8)
        | (u64::from(src) << 12)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}
fn mov_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}
fn mov32_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb4, dst, 0, 0, imm)
}
fn mov_reg(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0)
}
fn add_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm)
}
fn ldx_dw(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x79, dst, src, off, 0)
}
fn stx_dw(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x7b, dst, src, off, 0)
}
fn st_dw(dst: u8, off: i16, imm: i32) -> u64 {
    insn(0x7a, dst, 0, off, imm)
}
fn ld_map_fd(dst: u8, fd: RawFd) -> [u64; 2] {
    [insn(0x18, dst, 1, 0, fd), 0]
}
fn call(id: i32) -> u64 {
    insn(0x85, 0, 0, 0, id)
}
fn jeq_imm(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x15, dst, 0, off, imm)
}
fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0)
}

const RAW_TRACEPOINT: u32 = 17;
const SYSCALL: u32 = 31;
const BPF_F_SLEEPABLE: u32 = 1 << 4;
const BPF_F_TEST_RUN_ON_CPU: u32 = 1;

fn load_opts() -> BpfProgLoadOpts {
    BpfProgLoadOpts {
        sz: std::mem::size_of::<BpfProgLoadOpts>(),
        attempts: 0,
        expected_attach_type: 0,
        prog_btf_fd: 0,
        prog_flags: 0,
        prog_ifindex: 0,
        kern_version: 0,
        attach_btf_id: 0,
        attach_prog_fd: 0,
        attach_btf_obj_fd: 0,
        fd_array: null(),
        func_info: null(),
        func_info_cnt: 0,
        func_info_rec_size: 0,
        line_info: null(),
        line_info_cnt: 0,
        line_info_rec_size: 0,
        log_level: 0,
        log_size: 0,
        log_buf: null_mut(),
        log_true_size: 0,
        token_fd: 0,
        fd_array_cnt: 0,
    }
}

fn load(t: u32, name: &std::ffi::CStr, insns: &[u64], opts: &mut BpfProgLoadOpts) -> c_int {
    // SAFETY: valid strings, instructions and opts.
    unsafe {
        bpf_prog_load(
            t,
            name.as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            insns.len(),
            opts,
        )
    }
}

fn test_run_opts() -> BpfTestRunOpts {
    BpfTestRunOpts {
        sz: std::mem::size_of::<BpfTestRunOpts>(),
        data_in: null(),
        data_out: null_mut(),
        data_size_in: 0,
        data_size_out: 0,
        ctx_in: null(),
        ctx_out: null_mut(),
        ctx_size_in: 0,
        ctx_size_out: 0,
        retval: 0,
        repeat: 0,
        duration: 0,
        flags: 0,
        cpu: 0,
        batch_size: 0,
    }
}

/// Runs raw_tp program `prog` with a one-argument context `arg` (on `cpu`
/// if given).
fn run_raw_tp(prog: RawFd, arg: u64, cpu: Option<u32>) -> u32 {
    let mut o = test_run_opts();
    o.ctx_in = (&raw const arg).cast();
    o.ctx_size_in = 8;
    if let Some(c) = cpu {
        o.flags = BPF_F_TEST_RUN_ON_CPU;
        o.cpu = c;
    }
    // SAFETY: valid opts whose context outlives the call.
    let r = unsafe { bpf_prog_test_run_opts(prog, &mut o) };
    assert_eq!(r, 0, "test run: errno {}", errno());
    o.retval
}

#[test]
fn prog_load_info_and_test_run() {
    if !ready() {
        return;
    }
    let mut o = load_opts();
    o.prog_flags = BPF_F_SLEEPABLE;
    let fd = own(load(SYSCALL, c"answer", &[mov_imm(0, 42), exit()], &mut o));
    assert_eq!(fd_target(fd.as_raw_fd()), "anon_inode:bpf-prog");
    let mut t = test_run_opts();
    // SAFETY: valid opts.
    assert_eq!(unsafe { bpf_prog_test_run_opts(fd.as_raw_fd(), &mut t) }, 0);
    assert_eq!(t.retval, 42);
    // The kernel's own checks: a syscall program takes no repeat.
    let mut t = test_run_opts();
    t.repeat = 2;
    // SAFETY: valid opts.
    let r = unsafe { bpf_prog_test_run_opts(fd.as_raw_fd(), &mut t) };
    assert_eq!((r, errno()), (-libc::EINVAL, libc::EINVAL));
    let mut info = [0u8; 232];
    let mut len = info.len() as u32;
    // SAFETY: a buffer of len bytes.
    assert_eq!(
        unsafe { bpf_prog_get_info_by_fd(fd.as_raw_fd(), info.as_mut_ptr().cast(), &mut len) },
        0
    );
    assert_eq!(u32::from_ne_bytes(info[0..4].try_into().unwrap()), SYSCALL);
    let id = u32::from_ne_bytes(info[4..8].try_into().unwrap());
    assert_eq!(&info[64..71], b"answer\0");
    // Kernel ids in kernel mode.
    let mut next = 0u32;
    let mut found = false;
    let mut start = 0u32;
    // SAFETY: a valid out-pointer.
    while unsafe { bpf_prog_get_next_id(start, &mut next) } == 0 {
        found |= next == id;
        start = next;
    }
    assert_eq!(errno(), libc::ENOENT);
    assert!(found, "prog id {id} listed");
    let again = own(bpf_prog_get_fd_by_id(id));
    let info2: [u8; 8] = {
        let mut b = [0u8; 8];
        let mut l = 8u32;
        // SAFETY: as above.
        assert_eq!(
            unsafe { bpf_obj_get_info_by_fd(again.as_raw_fd(), b.as_mut_ptr().cast(), &mut l) },
            0
        );
        b
    };
    assert_eq!(u32::from_ne_bytes(info2[4..8].try_into().unwrap()), id);
    assert_eq!(
        (bpf_prog_get_fd_by_id(u32::MAX - 1), errno()),
        (-libc::ENOENT, libc::ENOENT)
    );

    // A failing load with a log buffer but level 0: retried at level 1.
    let mut log = vec![0u8; 4096];
    let mut o = load_opts();
    o.log_buf = log.as_mut_ptr().cast();
    o.log_size = log.len() as u32;
    let r = load(RAW_TRACEPOINT, c"bad", &[mov_imm(0, 0)], &mut o);
    assert_eq!((r, errno()), (-libc::EINVAL, libc::EINVAL));
    let text =
        String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap()]).into_owned();
    assert!(!text.is_empty(), "verifier log written");
    assert!(o.log_true_size > 0);
    // libbpf's own checks.
    let mut o = load_opts();
    o.attempts = -1;
    assert_eq!(
        load(RAW_TRACEPOINT, c"x", &[mov_imm(0, 0), exit()], &mut o),
        -libc::EINVAL
    );
}

/// `raw_tp`: `bpf_ringbuf_output(map, &ctx[0], 8, 0)`.
fn ringbuf_output_prog(map: RawFd) -> OwnedFd {
    let [l0, l1] = ld_map_fd(1, map);
    let insns = [
        ldx_dw(2, 1, 0),
        stx_dw(10, 2, -8),
        l0,
        l1,
        mov_reg(2, 10),
        add_imm(2, -8),
        mov_imm(3, 8),
        mov_imm(4, 0),
        call(130),
        mov_imm(0, 0),
        exit(),
    ];
    own(load(RAW_TRACEPOINT, c"rb_out", &insns, &mut load_opts()))
}

/// `raw_tp`: reserve 8 bytes, write, discard.
fn ringbuf_discard_prog(map: RawFd) -> OwnedFd {
    let [l0, l1] = ld_map_fd(1, map);
    let insns = [
        l0,
        l1,
        mov_imm(2, 8),
        mov_imm(3, 0),
        call(131),
        jeq_imm(0, 0, 4),
        st_dw(0, 0, 7),
        mov_reg(1, 0),
        mov_imm(2, 0),
        call(133),
        mov_imm(0, 0),
        exit(),
    ];
    own(load(
        RAW_TRACEPOINT,
        c"rb_discard",
        &insns,
        &mut load_opts(),
    ))
}

/// `raw_tp`: `bpf_perf_event_output(ctx, map, BPF_F_CURRENT_CPU, &ctx[0], 8)`.
fn perf_output_prog(map: RawFd) -> OwnedFd {
    let [l0, l1] = ld_map_fd(2, map);
    let insns = [
        mov_reg(6, 1),
        ldx_dw(2, 1, 0),
        stx_dw(10, 2, -8),
        mov_reg(1, 6),
        l0,
        l1,
        mov32_imm(3, -1),
        mov_reg(4, 10),
        add_imm(4, -8),
        mov_imm(5, 8),
        call(25),
        mov_imm(0, 0),
        exit(),
    ];
    own(load(RAW_TRACEPOINT, c"perf_out", &insns, &mut load_opts()))
}

type Seen = Mutex<Vec<(usize, u64)>>;

unsafe extern "C" fn ring_cb(ctx: *mut c_void, data: *mut c_void, size: usize) -> c_int {
    // SAFETY: ctx is the (tag, Seen) pair the test passed.
    let (tag, seen) = unsafe { &*ctx.cast::<(usize, Seen)>() };
    assert_eq!(size, 8);
    // SAFETY: 8 bytes of sample.
    let v = unsafe { data.cast::<u64>().read_unaligned() };
    seen.lock().unwrap().push((*tag, v));
    0
}

unsafe extern "C" fn ring_cb_stop(_ctx: *mut c_void, _data: *mut c_void, _size: usize) -> c_int {
    -77
}

fn epoll_ready(epfd: RawFd, timeout_ms: c_int) -> c_int {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: one event slot.
    unsafe { libc::epoll_wait(epfd, &mut ev, 1, timeout_ms) }
}

#[test]
fn kernel_ringbuf_delivers_program_output() {
    if !ready() {
        return;
    }
    let map = create(mt::RINGBUF, 0, 0, 4096, 0);
    let out = ringbuf_output_prog(map.as_raw_fd());
    let discard = ringbuf_discard_prog(map.as_raw_fd());
    let ctx = Box::new((7usize, Seen::default()));
    let ctx_ptr = (&*ctx as *const (usize, Seen)).cast_mut().cast::<c_void>();
    // SAFETY: a live callback and context.
    let rb = unsafe { ring_buffer__new(map.as_raw_fd(), Some(ring_cb), ctx_ptr, null()) };
    assert!(!rb.is_null(), "ring_buffer__new: errno {}", errno());
    // SAFETY: (all below) `rb` is live until ring_buffer__free.
    unsafe {
        let epfd = ring_buffer__epoll_fd(rb);
        assert!(epfd >= 0);
        assert_eq!(epoll_ready(epfd, 0), 0, "nothing yet");
        assert_eq!(ring_buffer__poll(rb, 0), 0);
        for v in [11u64, 12, 13] {
            run_raw_tp(out.as_raw_fd(), v, None);
        }
        run_raw_tp(discard.as_raw_fd(), 0, None);
        run_raw_tp(out.as_raw_fd(), 14, None);
        assert_eq!(epoll_ready(epfd, 1000), 1, "the map fd is ready");
        let r = ring_buffer__ring(rb, 0);
        assert!(!r.is_null());
        assert_eq!(ring__size(r), 4096);
        assert_eq!(ring__map_fd(r), map.as_raw_fd());
        assert_eq!(ring__avail_data_size(r), 5 * 16);
        assert_eq!(ring__consume_n(r, 2), 2);
        assert_eq!(ring__consumer_pos(r), 32);
        // The discarded record is skipped, not counted.
        assert_eq!(ring_buffer__poll(rb, 1000), 2);
        assert_eq!(ring__consumer_pos(r), ring__producer_pos(r));
        assert!(ring_buffer__ring(rb, 1).is_null());
        assert_eq!(errno(), libc::ERANGE);
        assert_eq!(ring_buffer__poll(rb, 10), 0, "timeout");
        // A callback error stops after its record, which is consumed.
        run_raw_tp(out.as_raw_fd(), 15, None);
        run_raw_tp(out.as_raw_fd(), 16, None);
        let stop = ring_buffer__new(map.as_raw_fd(), Some(ring_cb_stop), null_mut(), null());
        assert!(!stop.is_null());
        assert_eq!(ring_buffer__consume(stop), -77);
        assert_eq!(errno(), 77);
        ring_buffer__free(stop);
        assert_eq!(ring_buffer__consume(rb), 1);
        ring_buffer__free(rb);
    }
    let seen: Vec<(usize, u64)> = ctx.1.lock().unwrap().clone();
    assert_eq!(seen, vec![(7, 11), (7, 12), (7, 13), (7, 14), (7, 16)]);
    // Not a ring buffer: libbpf's EINVAL.
    let hash = create(mt::HASH, 4, 4, 1, 0);
    // SAFETY: no callback is called.
    let bad = unsafe { ring_buffer__new(hash.as_raw_fd(), Some(ring_cb), null_mut(), null()) };
    assert!(bad.is_null());
    assert_eq!(errno(), libc::EINVAL);
}

#[test]
fn mixed_ring_buffer_serves_both_rings() {
    if !ready() {
        return;
    }
    let spec = MapSpec {
        map_type: mt::RINGBUF,
        max_entries: 4096,
        name: "urb".into(),
        ..MapSpec::default()
    };
    let user = Map::create(&spec, next_id(IdKind::Map)).unwrap();
    let user_fd = user.dup_fd().unwrap();
    assert_eq!(
        fd_target(user_fd.as_raw_fd()).split(' ').next().unwrap(),
        "/memfd:userbpf:urb"
    );
    let kmap = create(mt::RINGBUF, 0, 0, 4096, 0);
    let prog = ringbuf_output_prog(kmap.as_raw_fd());
    let user_ctx = Box::new((1usize, Seen::default()));
    let kern_ctx = Box::new((2usize, Seen::default()));
    // SAFETY: live callbacks and contexts; `rb` is live until freed.
    unsafe {
        let rb = ring_buffer__new(
            user_fd.as_raw_fd(),
            Some(ring_cb),
            (&*user_ctx as *const (usize, Seen)).cast_mut().cast(),
            null(),
        );
        assert!(!rb.is_null());
        let epfd = ring_buffer__epoll_fd(rb);
        assert!(epfd >= 0);
        assert_eq!(
            ring_buffer__add(
                rb,
                kmap.as_raw_fd(),
                Some(ring_cb),
                (&*kern_ctx as *const (usize, Seen)).cast_mut().cast()
            ),
            0
        );
        assert_eq!(epoll_ready(epfd, 0), 0);
        assert_eq!(ring_buffer__poll(rb, 0), 0);
        // Kernel ring only.
        run_raw_tp(prog.as_raw_fd(), 100, None);
        assert_eq!(epoll_ready(epfd, 1000), 1);
        assert_eq!(ring_buffer__poll(rb, 1000), 1);
        // Userspace ring only.
        user.downcast::<RingBuf>()
            .unwrap()
            .output(&200u64.to_ne_bytes(), 0)
            .unwrap();
        assert_eq!(epoll_ready(epfd, 1000), 1);
        assert_eq!(ring_buffer__poll(rb, 1000), 1);
        // Both.
        run_raw_tp(prog.as_raw_fd(), 101, None);
        user.downcast::<RingBuf>()
            .unwrap()
            .output(&201u64.to_ne_bytes(), 0)
            .unwrap();
        let mut total = 0;
        for _ in 0..10 {
            let n = ring_buffer__poll(rb, 1000);
            assert!(n >= 0);
            total += n;
            if total == 2 {
                break;
            }
        }
        assert_eq!(total, 2);
        assert_eq!(ring_buffer__poll(rb, 10), 0);
        ring_buffer__free(rb);
    }
    assert_eq!(*user_ctx.1.lock().unwrap(), vec![(1, 200), (1, 201)]);
    assert_eq!(*kern_ctx.1.lock().unwrap(), vec![(2, 100), (2, 101)]);
}

type PerfSeen = Mutex<(Vec<(c_int, u64)>, u64)>;

unsafe extern "C" fn perf_sample(ctx: *mut c_void, cpu: c_int, data: *mut c_void, size: u32) {
    // SAFETY: ctx is the test's PerfSeen.
    let seen = unsafe { &*ctx.cast::<PerfSeen>() };
    // The raw sample is padded to 8 bytes after its u32 size: 8 + 4 -> 12.
    assert!(size >= 8, "{size}");
    // SAFETY: at least 8 bytes of data.
    let v = unsafe { data.cast::<u64>().read_unaligned() };
    seen.lock().unwrap().0.push((cpu, v));
}

unsafe extern "C" fn perf_lost(ctx: *mut c_void, _cpu: c_int, cnt: u64) {
    // SAFETY: ctx is the test's PerfSeen.
    let seen = unsafe { &*ctx.cast::<PerfSeen>() };
    seen.lock().unwrap().1 += cnt;
}

fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(lo.parse::<u32>().unwrap()..=hi.parse::<u32>().unwrap());
    }
    cpus
}

#[test]
fn kernel_perf_buffer_delivers_samples_and_losses() {
    if !ready() {
        return;
    }
    let ncpu = possible_cpus() as u32;
    let map = create(mt::PERF_EVENT_ARRAY, 4, 4, ncpu, 0);
    let prog = perf_output_prog(map.as_raw_fd());
    let seen = Box::new(PerfSeen::default());
    let ctx = (&*seen as *const PerfSeen).cast_mut().cast::<c_void>();
    let opts = cabi::perf_buffer_opts {
        sz: std::mem::size_of::<cabi::perf_buffer_opts>(),
        sample_period: 1,
    };
    // SAFETY: live callbacks and context.
    let pb = unsafe {
        perf_buffer__new(
            map.as_raw_fd(),
            1,
            Some(perf_sample),
            Some(perf_lost),
            ctx,
            &opts,
        )
    };
    assert!(!pb.is_null(), "perf_buffer__new: errno {}", errno());
    let cpus = online_cpus();
    // SAFETY: (all below) `pb` is live until perf_buffer__free.
    unsafe {
        assert_eq!(perf_buffer__buffer_cnt(pb), cpus.len());
        for (i, &key) in cpus.iter().enumerate() {
            let bfd = perf_buffer__buffer_fd(pb, i);
            assert_eq!(fd_target(bfd), "anon_inode:[perf_event]");
            // The map slot holds the event (key = cpu).
            let mut val = 0u32;
            let r = bpf_map_lookup_elem(
                map.as_raw_fd(),
                (&raw const key).cast(),
                (&raw mut val).cast(),
            );
            // Whatever a perf event array answers, it is the kernel's answer.
            let mut raw_val = 0u32;
            let rr = sys::map_elem(
                sys::cmd::MAP_LOOKUP_ELEM,
                map.as_raw_fd(),
                (&raw const key).cast(),
                (&raw mut raw_val).cast(),
                0,
            );
            assert_eq!(r, rr.map_or_else(|e| -e, |()| 0));
            let mut base = null_mut();
            let mut size = 0usize;
            assert_eq!(perf_buffer__buffer(pb, i as c_int, &mut base, &mut size), 0);
            assert!(!base.is_null());
            assert_eq!(size, 4096);
        }
        assert_eq!(perf_buffer__buffer_fd(pb, cpus.len()), -libc::EINVAL);
        let epfd = perf_buffer__epoll_fd(pb);
        assert!(epfd >= 0);
        assert_eq!(epoll_ready(epfd, 0), 0);
        assert_eq!(perf_buffer__poll(pb, 0), 0);
        for (i, &cpu) in cpus.iter().enumerate() {
            run_raw_tp(prog.as_raw_fd(), 1000 + i as u64, Some(cpu));
        }
        let mut ready = 0;
        for _ in 0..10 {
            ready += perf_buffer__poll(pb, 1000);
            if seen.lock().unwrap().0.len() == cpus.len() {
                break;
            }
        }
        assert!(ready >= 1);
        let mut got = seen.lock().unwrap().0.clone();
        got.sort();
        let want: Vec<(c_int, u64)> = cpus
            .iter()
            .enumerate()
            .map(|(i, &c)| (c as c_int, 1000 + i as u64))
            .collect();
        assert_eq!(got, want);
        // The epoll fd, as applications use it: wait on it, then consume
        // (a perf event fd reports its readiness once: perf_poll clears it).
        seen.lock().unwrap().0.clear();
        for (i, &cpu) in cpus.iter().enumerate() {
            run_raw_tp(prog.as_raw_fd(), 2000 + i as u64, Some(cpu));
        }
        assert_eq!(epoll_ready(epfd, 1000), 1);
        assert_eq!(perf_buffer__consume(pb), 0);
        let mut got = seen.lock().unwrap().0.clone();
        got.sort();
        let want: Vec<(c_int, u64)> = cpus
            .iter()
            .enumerate()
            .map(|(i, &c)| (c as c_int, 2000 + i as u64))
            .collect();
        assert_eq!(got, want);
        seen.lock().unwrap().0.clear();
        // Overflow one page on the first CPU, then drain: lost samples are
        // reported once there is room again.
        for v in 0..400u64 {
            run_raw_tp(prog.as_raw_fd(), v, Some(cpus[0]));
        }
        assert_eq!(perf_buffer__consume_buffer(pb, 0), 0);
        run_raw_tp(prog.as_raw_fd(), 9999, Some(cpus[0]));
        assert_eq!(perf_buffer__consume(pb), 0);
        let (samples, lost) = {
            let g = seen.lock().unwrap();
            (g.0.len(), g.1)
        };
        assert!(lost > 0, "lost samples reported");
        assert_eq!(samples as u64 + lost, 401);
        assert_eq!(
            seen.lock().unwrap().0.last(),
            Some(&(cpus[0] as c_int, 9999))
        );
        perf_buffer__free(pb);
    }
    // The slots are cleared.
    let key = cpus[0];
    // SAFETY: a valid key.
    let r = unsafe { bpf_map_delete_elem(map.as_raw_fd(), (&raw const key).cast()) };
    assert_eq!((r, errno()), (-libc::ENOENT, libc::ENOENT));
    // Page count must be a power of two.
    // SAFETY: no callback is called.
    let bad = unsafe {
        perf_buffer__new(
            map.as_raw_fd(),
            3,
            Some(perf_sample),
            None,
            null_mut(),
            null(),
        )
    };
    assert!(bad.is_null());
    assert_eq!(errno(), libc::EINVAL);
}

#[repr(C)]
struct PerfEventAttrRaw {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    rest: [u64; 12],
}

unsafe extern "C" fn raw_event(
    ctx: *mut c_void,
    cpu: c_int,
    hdr: *mut cabi::perf_event_header,
) -> cabi::bpf_perf_event_ret {
    // SAFETY: ctx is the test's counter; hdr a record.
    unsafe {
        let seen = &*ctx.cast::<Mutex<Vec<(c_int, u32)>>>();
        seen.lock()
            .unwrap()
            .push((cpu, hdr.cast::<u32>().read_unaligned()));
    }
    cabi::LIBBPF_PERF_EVENT_CONT
}

#[test]
fn kernel_perf_buffer_raw() {
    if !ready() {
        return;
    }
    let map = create(mt::PERF_EVENT_ARRAY, 4, 4, 8, 0);
    let prog = perf_output_prog(map.as_raw_fd());
    let cpus = online_cpus();
    let mut attr = PerfEventAttrRaw {
        type_: 1,
        size: std::mem::size_of::<PerfEventAttrRaw>() as u32,
        config: 10,
        sample_period: 1,
        sample_type: 1 << 10,
        rest: [0; 12],
    };
    attr.rest[2] = 1; // wakeup_events
    let seen = Box::new(Mutex::new(Vec::<(c_int, u32)>::new()));
    let mut c = vec![cpus[0] as c_int];
    let mut keys = vec![5 as c_int];
    let opts = cabi::perf_buffer_raw_opts {
        sz: std::mem::size_of::<cabi::perf_buffer_raw_opts>(),
        cpu_cnt: 1,
        cpus: c.as_mut_ptr(),
        map_keys: keys.as_mut_ptr(),
    };
    // SAFETY: valid attr, callback, context and opts.
    let pb = unsafe {
        perf_buffer__new_raw(
            map.as_raw_fd(),
            2,
            (&raw mut attr).cast(),
            Some(raw_event),
            (&*seen as *const Mutex<Vec<(c_int, u32)>>)
                .cast_mut()
                .cast(),
            &opts,
        )
    };
    assert!(!pb.is_null(), "errno {}", errno());
    // Key 5 holds the event: the program writes to the current CPU's slot,
    // which is empty, so nothing arrives (ENOENT inside the program).
    run_raw_tp(prog.as_raw_fd(), 1, Some(cpus[0]));
    // SAFETY: `pb` is live.
    unsafe {
        assert_eq!(perf_buffer__buffer_cnt(pb), 1);
        assert_eq!(perf_buffer__poll(pb, 50), 0);
        perf_buffer__free(pb);
    }
    assert!(seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Pins
// ---------------------------------------------------------------------------

fn pin_dir(name: &str) -> String {
    let dir = format!("/sys/fs/bpf/userbpf-kfds-{}-{name}", std::process::id());
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn map_id(fd: RawFd) -> u32 {
    sys::obj_info::<sys::MapInfo>(fd).unwrap().id
}

#[test]
fn kernel_pins_round_trip_next_to_user_pins() {
    if !ready() {
        return;
    }
    let dir = pin_dir("pins");
    let map = create(mt::HASH, 4, 4, 4, 0);
    let path = CString::new(format!("{dir}/m")).unwrap();
    // SAFETY: (all below) valid C strings and opts.
    unsafe {
        assert_eq!(bpf_obj_pin(map.as_raw_fd(), path.as_ptr()), 0);
        assert!(
            std::fs::symlink_metadata(format!("{dir}/m")).is_ok(),
            "a real bpffs file"
        );
        assert_eq!(bpf_obj_pin(map.as_raw_fd(), path.as_ptr()), -libc::EEXIST);
        let got = own(bpf_obj_get(path.as_ptr()));
        assert_eq!(fd_target(got.as_raw_fd()), "anon_inode:bpf-map");
        assert_eq!(map_id(got.as_raw_fd()), map_id(map.as_raw_fd()));
        // Read-only through the opts.
        let o = BpfObjGetOpts {
            sz: std::mem::size_of::<BpfObjGetOpts>(),
            file_flags: BPF_F_RDONLY,
            path_fd: 0,
        };
        let ro = own(bpf_obj_get_opts(path.as_ptr(), &o));
        let (k, v) = (1u32, 1u32);
        let r = bpf_map_update_elem(
            ro.as_raw_fd(),
            (&raw const k).cast(),
            (&raw const v).cast(),
            0,
        );
        assert_eq!(r, -libc::EPERM);
        // A parent that does not exist: the kernel's ENOENT.
        let deep = CString::new(format!("{dir}/no/such")).unwrap();
        assert_eq!(bpf_obj_pin(map.as_raw_fd(), deep.as_ptr()), -libc::ENOENT);
        // A path outside bpffs: the kernel's EPERM.
        let tmp = CString::new(format!("/tmp/userbpf-kfds-{}", std::process::id())).unwrap();
        assert_eq!(bpf_obj_pin(map.as_raw_fd(), tmp.as_ptr()), -libc::EPERM);

        // A userspace map pins on our records, next to the kernel pin.
        let spec = MapSpec {
            map_type: mt::HASH,
            key_size: 4,
            value_size: 4,
            max_entries: 4,
            name: "upin".into(),
            ..MapSpec::default()
        };
        let umap = Map::create(&spec, next_id(IdKind::Map)).unwrap();
        let ufd = umap.dup_fd().unwrap();
        assert_eq!(
            bpf_obj_pin(ufd.as_raw_fd(), path.as_ptr()),
            -libc::EEXIST,
            "taken by the kernel pin"
        );
        let upath = CString::new(format!("{dir}/u")).unwrap();
        assert_eq!(bpf_obj_pin(ufd.as_raw_fd(), upath.as_ptr()), 0);
        let ugot = own(bpf_obj_get(upath.as_ptr()));
        assert!(fd_target(ugot.as_raw_fd()).starts_with("/memfd:userbpf:upin"));
        // ... and a kernel pin cannot take its path.
        assert_eq!(bpf_obj_pin(map.as_raw_fd(), upath.as_ptr()), -libc::EEXIST);

        // Programs pin too.
        let mut o = load_opts();
        o.prog_flags = BPF_F_SLEEPABLE;
        let prog = own(load(SYSCALL, c"pinned", &[mov_imm(0, 1), exit()], &mut o));
        let ppath = CString::new(format!("{dir}/p")).unwrap();
        assert_eq!(bpf_obj_pin(prog.as_raw_fd(), ppath.as_ptr()), 0);
        let pgot = own(bpf_obj_get(ppath.as_ptr()));
        assert_eq!(fd_target(pgot.as_raw_fd()), "anon_inode:bpf-prog");

        // bpf_obj_get of a missing pin: ENOENT.
        let missing = CString::new(format!("{dir}/missing")).unwrap();
        assert_eq!(bpf_obj_get(missing.as_ptr()), -libc::ENOENT);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// BTF, probes, ids
// ---------------------------------------------------------------------------

#[test]
fn btf_loads_into_the_kernel() {
    if !ready() {
        return;
    }
    // SAFETY: (all below) handles from btf__new_empty, freed at the end.
    unsafe {
        let btf = btf__new_empty();
        assert!(!btf.is_null());
        assert!(btf__add_int(btf, c"int".as_ptr(), 4, 1) > 0);
        assert_eq!(btf__fd(btf), -1);
        assert_eq!(btf__load_into_kernel(btf), 0);
        let fd = btf__fd(btf);
        assert!(fd >= 3);
        assert_eq!(fd_target(fd), "anon_inode:btf");
        assert_eq!(btf__load_into_kernel(btf), -libc::EEXIST);
        let mut info = [0u8; 64];
        let mut len = info.len() as u32;
        assert_eq!(
            bpf_btf_get_info_by_fd(fd, info.as_mut_ptr().cast(), &mut len),
            0
        );
        // struct bpf_btf_info: btf, btf_size, id, ...
        let id = u32::from_ne_bytes(info[12..16].try_into().unwrap());
        assert!(id > 0);
        let again = own(bpf_btf_get_fd_by_id(id));
        assert_eq!(fd_target(again.as_raw_fd()), "anon_inode:btf");
        let mut size = 0u32;
        let raw = btf__raw_data(btf, &mut size);
        // bpf_btf_load of the same bytes, and of garbage with a log.
        let fd2 = own(bpf_btf_load(raw, size as usize, null_mut()));
        assert_eq!(fd_target(fd2.as_raw_fd()), "anon_inode:btf");
        let mut log = vec![0u8; 1024];
        let mut o = cabi::bpf_btf_load_opts {
            sz: std::mem::size_of::<cabi::bpf_btf_load_opts>(),
            log_buf: log.as_mut_ptr().cast(),
            log_level: 0,
            log_size: log.len() as u32,
            log_true_size: 0,
            btf_flags: 0,
            token_fd: 0,
        };
        let garbage = [0u8; 32];
        assert_eq!(
            bpf_btf_load(garbage.as_ptr().cast(), garbage.len(), &mut o),
            -libc::EINVAL
        );
        assert!(o.log_true_size > 0 || log[0] != 0, "a log on failure");
        btf__free(btf);
    }
}

#[test]
fn probes_ask_the_kernel() {
    if !ready() {
        return;
    }
    assert_eq!(libbpf_probe_bpf_prog_type(1, null()), 1, "socket filter");
    assert_eq!(libbpf_probe_bpf_prog_type(6, null()), 1, "xdp");
    assert_eq!(libbpf_probe_bpf_prog_type(31, null()), 1, "syscall");
    assert_eq!(
        libbpf_probe_bpf_prog_type(10_000, null()),
        -libc::EOPNOTSUPP
    );
    assert_eq!(libbpf_probe_bpf_map_type(mt::RINGBUF, null()), 1);
    assert_eq!(libbpf_probe_bpf_map_type(mt::HASH_OF_MAPS, null()), 1);
    assert_eq!(libbpf_probe_bpf_map_type(24, null()), 1, "sk_storage (BTF)");
    assert_eq!(libbpf_probe_bpf_map_type(0, null()), -libc::EOPNOTSUPP);
    assert_eq!(
        libbpf_probe_bpf_helper(2, 130, null()),
        1,
        "kprobe: ringbuf_output"
    );
    assert_eq!(
        libbpf_probe_bpf_helper(1, 58, null()),
        0,
        "socket filter: override_return"
    );
    assert_eq!(
        libbpf_probe_bpf_helper(1, 100_000, null()),
        0,
        "unknown helper"
    );
    assert_eq!(libbpf_probe_bpf_helper(26, 1, null()), -libc::EOPNOTSUPP);
}

#[test]
fn map_ids_are_the_kernels() {
    if !ready() {
        return;
    }
    let map = create(mt::ARRAY, 4, 4, 1, 0);
    let id = map_id(map.as_raw_fd());
    let mut ids = BTreeSet::new();
    let (mut start, mut next) = (0u32, 0u32);
    // SAFETY: a valid out-pointer.
    while unsafe { bpf_map_get_next_id(start, &mut next) } == 0 {
        ids.insert(next);
        start = next;
    }
    assert!(ids.contains(&id));
    let fd = own(bpf_map_get_fd_by_id(id));
    assert_eq!(map_id(fd.as_raw_fd()), id);
    // SAFETY: NULL out-pointer: EINVAL rather than a crash.
    assert_eq!(unsafe { bpf_map_get_next_id(0, null_mut()) }, -libc::EINVAL);
}

// ---------------------------------------------------------------------------
// Objects: bpf_map__pin, bpf_object__pin_maps / pin_programs / pin, reuse
// ---------------------------------------------------------------------------

/// `tests/kernel_fds.bpf.c`, built once.
fn object_file() -> std::path::PathBuf {
    static BUILT: Once = Once::new();
    let obj = std::env::temp_dir().join(format!("userbpf-kfds-{}.bpf.o", std::process::id()));
    BUILT.call_once(|| {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel_fds.bpf.c");
        let st = std::process::Command::new("clang-16")
            .args(["-g", "-O2", "-target", "bpf", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .expect("clang-16");
        assert!(st.success(), "clang-16 failed");
    });
    obj
}

/// Opens and loads the object (kernel mode: everything in the kernel).
fn open_and_load(pin_counts_at: Option<&str>) -> *mut ObjectHandle {
    let path = CString::new(object_file().to_str().unwrap()).unwrap();
    // SAFETY: a valid path; the handle is checked.
    unsafe {
        let obj = bpf_object__open_file(path.as_ptr(), null());
        assert!(!obj.is_null(), "open: errno {}", errno());
        if let Some(p) = pin_counts_at {
            let m = bpf_object__find_map_by_name(obj, c"counts".as_ptr());
            let c = CString::new(p).unwrap();
            assert_eq!(bpf_map__set_pin_path(m, c.as_ptr()), 0);
        }
        assert_eq!(bpf_object__load(obj), 0, "load: errno {}", errno());
        obj
    }
}

fn exists(p: &str) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[test]
fn object_pins_on_bpffs() {
    if !ready() {
        return;
    }
    let dir = pin_dir("obj");
    let obj = open_and_load(None);
    // SAFETY: (all below) live handles of `obj`, valid C strings.
    unsafe {
        let counts = bpf_object__find_map_by_name(obj, c"counts".as_ptr());
        let events = bpf_object__find_map_by_name(obj, c"events".as_ptr());
        let prog = bpf_object__find_program_by_name(obj, c"on_enter".as_ptr());
        let cfd = bpf_map__fd(counts);
        assert_eq!(
            fd_target(cfd),
            "anon_inode:bpf-map",
            "kernel mode puts the map in the kernel"
        );
        assert_eq!(fd_target(bpf_program__fd(prog)), "anon_inode:bpf-prog");

        // The program's output through a ring buffer over the object's map.
        let ctx = Box::new((3usize, Seen::default()));
        let rb = ring_buffer__new(
            bpf_map__fd(events),
            Some(ring_cb),
            (&*ctx as *const (usize, Seen)).cast_mut().cast(),
            null(),
        );
        assert!(!rb.is_null());
        run_raw_tp(bpf_program__fd(prog), 77, None);
        assert_eq!(ring_buffer__poll(rb, 1000), 1);
        ring_buffer__free(rb);
        assert_eq!(*ctx.1.lock().unwrap(), vec![(3, 77)]);

        // bpf_map__pin: the missing parent is made (one level), the pin is
        // a real bpffs entry, the same map comes back.
        let p = format!("{dir}/sub/counts");
        let c = CString::new(p.clone()).unwrap();
        assert_eq!(bpf_map__pin(counts, c.as_ptr()), 0);
        assert!(exists(&p));
        assert!(bpf_map__is_pinned(counts));
        assert_eq!(
            bpf_map__pin(counts, null()),
            0,
            "pinned already: nothing to do"
        );
        let got = own(bpf_obj_get(c.as_ptr()));
        assert_eq!(map_id(got.as_raw_fd()), map_id(cfd));
        assert_eq!(bpf_map__unpin(counts, null()), 0);
        assert!(!exists(&p));
        assert!(!bpf_map__is_pinned(counts));
        // Not on a bpffs: libbpf's check_path.
        let tmp = CString::new(format!("/tmp/userbpf-kfds-{}-x", std::process::id())).unwrap();
        assert_eq!(bpf_program__pin(prog, tmp.as_ptr()), -libc::EINVAL);
        assert_eq!(bpf_map__set_pin_path(counts, null()), 0);

        // Whole objects.
        let d = CString::new(dir.clone()).unwrap();
        assert_eq!(bpf_object__pin_maps(obj, d.as_ptr()), 0);
        assert!(exists(&format!("{dir}/counts")) && exists(&format!("{dir}/events")));
        assert_eq!(bpf_object__pin_programs(obj, d.as_ptr()), 0);
        assert!(exists(&format!("{dir}/on_enter")));
        let pg = own(bpf_obj_get(
            CString::new(format!("{dir}/on_enter")).unwrap().as_ptr(),
        ));
        assert_eq!(fd_target(pg.as_raw_fd()), "anon_inode:bpf-prog");
        // Pinning the programs again fails (EEXIST) and unpins nothing
        // that was pinned before the failing one.
        assert_eq!(bpf_object__pin_programs(obj, d.as_ptr()), -libc::EEXIST);
        assert_eq!(bpf_object__unpin_programs(obj, d.as_ptr()), 0);
        assert!(!exists(&format!("{dir}/on_enter")));
        assert_eq!(bpf_object__unpin_maps(obj, d.as_ptr()), 0);
        assert!(!exists(&format!("{dir}/counts")) && !exists(&format!("{dir}/events")));
        assert_eq!(bpf_object__pin(obj, d.as_ptr()), 0);
        assert!(exists(&format!("{dir}/counts")) && exists(&format!("{dir}/on_enter")));
        assert_eq!(bpf_object__unpin(obj, d.as_ptr()), 0);
        assert!(!exists(&format!("{dir}/counts")) && !exists(&format!("{dir}/on_enter")));
        // Not loaded / NULL.
        assert_eq!(bpf_object__pin_maps(null_mut(), d.as_ptr()), -libc::ENOENT);
        bpf_object__close(obj);
    }

    // A pinned map is reused by the next object with that pin path, and
    // bpf_map__reuse_fd takes a kernel map.
    let pin = format!("{dir}/shared");
    let first = open_and_load(Some(&pin));
    // SAFETY: live handles, valid C strings.
    unsafe {
        let m1 = bpf_object__find_map_by_name(first, c"counts".as_ptr());
        assert!(bpf_map__is_pinned(m1));
        assert!(exists(&pin));
        let id1 = map_id(bpf_map__fd(m1));
        let second = open_and_load(Some(&pin));
        let m2 = bpf_object__find_map_by_name(second, c"counts".as_ptr());
        assert_eq!(map_id(bpf_map__fd(m2)), id1, "the pinned map is reused");

        let path = CString::new(object_file().to_str().unwrap()).unwrap();
        let third = bpf_object__open_file(path.as_ptr(), null());
        let m3 = bpf_object__find_map_by_name(third, c"counts".as_ptr());
        assert_eq!(bpf_map__reuse_fd(m3, bpf_map__fd(m1)), 0);
        assert_eq!(bpf_object__load(third), 0);
        assert_eq!(map_id(bpf_map__fd(m3)), id1, "reuse_fd of a kernel map");
        assert_eq!(bpf_map__unpin(m1, null()), 0);
        assert!(!exists(&pin));
        bpf_object__close(third);
        bpf_object__close(second);
        bpf_object__close(first);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(object_file());
}

/// `tests/user_ringbuf.c` (the C driver of `tests/user_ringbuf.rs`) with
/// `USERBPF_BACKEND=kernel`: `user_ring_buffer__*` on a kernel
/// `USER_RINGBUF` map, drained by the kernel (`bpf_user_ringbuf_drain` in
/// a syscall program), `reserve_blocking` woken through the map fd.
#[test]
fn kernel_user_ringbuf_driver() {
    if !ready() {
        return;
    }
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .to_path_buf();
    assert!(profile.join("libbpf.so").is_file());
    let dir = std::env::temp_dir().join(format!("userbpf-kfds-urb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("user_ringbuf");
    let st = std::process::Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-pthread", "-I"])
        .arg(manifest.join("../include"))
        .arg("-o")
        .arg(&exe)
        .arg(manifest.join("tests/user_ringbuf.c"))
        .arg("-L")
        .arg(&profile)
        .arg("-lbpf")
        .arg(format!("-Wl,-rpath,{}", profile.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let obj = dir.join("user_ringbuf.bpf.o");
    let st = std::process::Command::new("clang-16")
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(manifest.join("tests/user_ringbuf.bpf.c"))
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap();
    assert!(st.success());
    let out = std::process::Command::new(&exe)
        .arg(&obj)
        .env("USERBPF_BACKEND", "kernel")
        .env("LD_LIBRARY_PATH", &profile)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.ends_with("done\n"),
        "{}\n{stdout}\n{stderr}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&dir);
}
