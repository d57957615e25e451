//! `bpf.h` in the default `auto` mode: `bpf_map_create` / `bpf_prog_load`
//! stay in user space, except what only the kernel can serve (a map-in-map
//! whose inner map is a kernel map, a program using a kernel map), which
//! follows its fds into the kernel; the wrappers serve fds of both kinds;
//! BTF loads into the kernel when permitted; ids and feature probes are
//! userbpf's. Kernel parts need root (skipped otherwise, with a message).

use std::ffi::{c_int, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{null, null_mut};
use std::sync::{Mutex, Once};

use bpf::bpf_api::{BpfMapCreateOpts, BpfProgLoadOpts, BpfTestRunOpts};
use bpf::implemented::*;
use userbpf_libbpf_compat::backend::kernel::{probe, sys};
use userbpf_runtime::maps::map_type as mt;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn auto_mode() {
    static MODE: Once = Once::new();
    MODE.call_once(|| std::env::remove_var("USERBPF_BACKEND"));
}

fn kernel_ready() -> bool {
    auto_mode();
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
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn create_opts(inner: RawFd) -> BpfMapCreateOpts {
    BpfMapCreateOpts {
        sz: std::mem::size_of::<BpfMapCreateOpts>(),
        btf_fd: 0,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        btf_vmlinux_value_type_id: 0,
        inner_map_fd: inner as u32,
        map_flags: 0,
        map_extra: 0,
        numa_node: 0,
        map_ifindex: 0,
        value_type_btf_obj_fd: 0,
        token_fd: 0,
        excl_prog_hash: null(),
        excl_prog_hash_size: 0,
    }
}

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

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst) << 8)
        | (u64::from(src) << 12)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}

#[test]
fn user_space_by_default() {
    auto_mode();
    // SAFETY: a valid name, no opts.
    let fd = own(unsafe { bpf_map_create(mt::HASH, c"auto".as_ptr(), 4, 4, 4, null()) });
    assert!(fd_target(fd.as_raw_fd()).starts_with("/memfd:userbpf:auto"));
    // r0 = 3; exit, as a kprobe program: user space.
    let insns = [insn(0xb7, 0, 0, 0, 3), insn(0x95, 0, 0, 0, 0)];
    // SAFETY: valid strings and instructions.
    let p = own(unsafe {
        bpf_prog_load(
            2,
            c"up".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            2,
            &mut load_opts(),
        )
    });
    assert!(!fd_target(p.as_raw_fd()).starts_with("anon_inode"));
    // Ids are userbpf's namespace ids.
    let mut info = [0u8; 104];
    let mut len = info.len() as u32;
    // SAFETY: a buffer of len bytes.
    assert_eq!(
        unsafe { bpf_map_get_info_by_fd(fd.as_raw_fd(), info.as_mut_ptr().cast(), &mut len) },
        0
    );
    let id = u32::from_ne_bytes(info[4..8].try_into().unwrap());
    let again = own(bpf_map_get_fd_by_id(id));
    assert!(fd_target(again.as_raw_fd()).starts_with("/memfd:userbpf:auto"));
    // Probes are the userspace backend's.
    assert_eq!(libbpf_probe_bpf_prog_type(6, null()), 0, "xdp");
    assert_eq!(libbpf_probe_bpf_prog_type(2, null()), 1, "kprobe");
}

#[test]
fn kernel_fds_are_followed_into_the_kernel() {
    if !kernel_ready() {
        return;
    }
    // A map-in-map over a kernel inner map is a kernel map.
    let mut a = sys::MapCreateAttr {
        map_type: mt::ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        ..Default::default()
    };
    let inner = sys::map_create(&mut a).unwrap();
    let o = create_opts(inner.as_raw_fd());
    // SAFETY: valid name and opts.
    let outer = own(unsafe { bpf_map_create(mt::ARRAY_OF_MAPS, c"outer".as_ptr(), 4, 4, 2, &o) });
    assert_eq!(fd_target(outer.as_raw_fd()), "anon_inode:bpf-map");
    let (k, v) = (0u32, inner.as_raw_fd() as u32);
    // SAFETY: valid key and value.
    assert_eq!(
        unsafe {
            bpf_map_update_elem(
                outer.as_raw_fd(),
                (&raw const k).cast(),
                (&raw const v).cast(),
                0,
            )
        },
        0
    );

    // A program using a kernel ring buffer loads into the kernel; its
    // output reaches ring_buffer__poll.
    let mut r = sys::MapCreateAttr {
        map_type: mt::RINGBUF,
        max_entries: 4096,
        ..Default::default()
    };
    let ring = sys::map_create(&mut r).unwrap();
    let insns = [
        insn(0x79, 2, 1, 0, 0),
        insn(0x7b, 10, 2, -8, 0),
        insn(0x18, 1, 1, 0, ring.as_raw_fd()),
        0,
        insn(0xbf, 2, 10, 0, 0),
        insn(0x07, 2, 0, 0, -8),
        insn(0xb7, 3, 0, 0, 8),
        insn(0xb7, 4, 0, 0, 0),
        insn(0x85, 0, 0, 0, 130),
        insn(0xb7, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    // SAFETY: valid strings and instructions.
    let prog = own(unsafe {
        bpf_prog_load(
            17,
            c"rb".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            insns.len(),
            &mut load_opts(),
        )
    });
    assert_eq!(fd_target(prog.as_raw_fd()), "anon_inode:bpf-prog");
    static SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    unsafe extern "C" fn cb(_ctx: *mut c_void, data: *mut c_void, _size: usize) -> c_int {
        // SAFETY: an 8-byte sample.
        SEEN.lock()
            .unwrap()
            .push(unsafe { data.cast::<u64>().read_unaligned() });
        0
    }
    // SAFETY: a live callback.
    let rb = unsafe { ring_buffer__new(ring.as_raw_fd(), Some(cb), null_mut(), null()) };
    assert!(!rb.is_null());
    let arg = 5u64;
    let mut t = BpfTestRunOpts {
        sz: std::mem::size_of::<BpfTestRunOpts>(),
        data_in: null(),
        data_out: null_mut(),
        data_size_in: 0,
        data_size_out: 0,
        ctx_in: (&raw const arg).cast(),
        ctx_out: null_mut(),
        ctx_size_in: 8,
        ctx_size_out: 0,
        retval: 0,
        repeat: 0,
        duration: 0,
        flags: 0,
        cpu: 0,
        batch_size: 0,
    };
    // SAFETY: valid opts; `rb` is live until freed.
    unsafe {
        assert_eq!(bpf_prog_test_run_opts(prog.as_raw_fd(), &mut t), 0);
        assert_eq!(ring_buffer__poll(rb, 1000), 1);
        ring_buffer__free(rb);
    }
    assert_eq!(*SEEN.lock().unwrap(), vec![5]);
}

#[test]
fn btf_goes_to_the_kernel_when_permitted() {
    if !kernel_ready() {
        return;
    }
    // SAFETY: a handle from btf__new_empty, freed at the end.
    unsafe {
        let btf = btf__new_empty();
        assert!(btf__add_int(btf, c"int".as_ptr(), 4, 1) > 0);
        assert_eq!(btf__load_into_kernel(btf), 0);
        assert_eq!(fd_target(btf__fd(btf)), "anon_inode:btf");
        btf__free(btf);
    }
}

#[test]
fn prog_streams_of_both_kinds() {
    auto_mode();
    let insns = [insn(0xb7, 0, 0, 0, 0), insn(0x95, 0, 0, 0, 0)];
    // SAFETY: valid strings and instructions.
    let user = own(unsafe {
        bpf_prog_load(
            2,
            c"st".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            2,
            &mut load_opts(),
        )
    });
    let mut buf = [0u8; 64];
    // SAFETY: a buffer of 64 bytes.
    unsafe {
        assert_eq!(
            bpf_prog_stream_read(user.as_raw_fd(), 1, buf.as_mut_ptr().cast(), 64, null_mut()),
            0
        );
        assert_eq!(
            bpf_prog_stream_read(user.as_raw_fd(), 9, buf.as_mut_ptr().cast(), 64, null_mut()),
            -libc::EINVAL
        );
        assert_eq!(
            bpf_prog_stream_read(-1, 1, buf.as_mut_ptr().cast(), 64, null_mut()),
            -libc::EBADF
        );
    }
    if !kernel_ready() {
        return;
    }
    // A kernel program: the wrapper answers as the raw syscall does.
    let license = c"GPL";
    let mut attr = sys::ProgLoadAttr {
        prog_type: 1,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: the instructions and license outlive the call.
    let kprog = unsafe { sys::bpf_fd(sys::cmd::PROG_LOAD, &mut attr) }.unwrap();
    for id in [1u32, 2, 9] {
        // SAFETY: a buffer of 64 bytes.
        let r = unsafe {
            bpf_prog_stream_read(
                kprog.as_raw_fd(),
                id,
                buf.as_mut_ptr().cast(),
                64,
                null_mut(),
            )
        };
        let mut raw: [u32; 6] = [0; 6];
        let p = buf.as_mut_ptr() as u64;
        raw[0] = p as u32;
        raw[1] = (p >> 32) as u32;
        raw[2] = 64;
        raw[3] = id;
        raw[4] = kprog.as_raw_fd() as u32;
        // SAFETY: BPF_PROG_STREAM_READ_BY_FD's attribute, the buffer valid.
        let want = unsafe { sys::bpf(37, &mut raw) }.map_or_else(|e| -e, |v| v as c_int);
        assert_eq!(r, want, "stream {id}");
    }
}
