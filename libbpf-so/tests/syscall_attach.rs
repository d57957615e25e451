//! Syscall sections served in user space, loader side
//! (tests/syscall_attach/progs.bpf.c, through the rlib's C entry points):
//! placement in `auto` mode, the LINK records attach publishes (kind,
//! syscall number, context layout, path, cookie, program), detach, the
//! kernel's and libbpf's errors (ENOENT for unknown tracepoints and
//! syscalls, EINVAL for the wrong program type, the refusal for other
//! tracepoints), and `LINUX_HAS_SYSCALL_WRAPPER`.

mod common;

use std::ffi::{c_void, CString};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::process::Command;
use std::ptr::null;

use bpf::implemented::*;
use bpf::link_api::LinkHandle;
use bpf::object_api::{ObjectHandle, ProgramHandle};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData};
use userbpf_runtime::syscalls::{self, SyscallCtx, SyscallCtxKind, ALL_SYSCALLS};

use common::run;

fn object() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("syscall-attach-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let obj = dir.join("progs.bpf.o");
    run(Command::new("clang-16")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-c"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/syscall_attach/progs.bpf.c"
        ))
        .arg("-o")
        .arg(&obj));
    obj
}

unsafe fn prog(o: *mut ObjectHandle, name: &str) -> *mut ProgramHandle {
    let n = CString::new(name).unwrap();
    // SAFETY: live object, C string.
    let p = unsafe { bpf_object__find_program_by_name(o, n.as_ptr()) };
    assert!(!p.is_null(), "{name}");
    p
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// This process's LINK records.
fn links() -> Vec<RecordData> {
    let dir = userbpf_runtime::namespace::namespace_dir();
    let me = std::process::id();
    registry::scan(&dir, false)
        .into_iter()
        .filter(|l| l.pid == me)
        .flat_map(|l| l.file.records())
        .filter(|r| r.kind == kind::LINK)
        .collect()
}

/// The one record of `link` (matched by the link's fd).
unsafe fn record_of(link: *mut LinkHandle) -> RecordData {
    assert!(!link.is_null(), "attach failed: errno {}", errno());
    // SAFETY: a live link.
    let fd = unsafe { bpf_link__fd(link) };
    assert!(fd >= 0);
    let recs: Vec<RecordData> = links().into_iter().filter(|r| r.fd == fd).collect();
    assert_eq!(recs.len(), 1, "one record per syscall link");
    recs[0]
}

/// The namespace id of a loaded user-space program.
unsafe fn prog_id(p: *mut ProgramHandle) -> u32 {
    // SAFETY: a live program.
    let fd = unsafe { bpf_program__fd(p) };
    // SAFETY: the program's fd, open while the object lives.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    userbpf_libbpf_compat::backend::userspace::program_by_fd(b)
        .expect("a user-space program")
        .id
}

fn tracefs_id(category: &str, event: &str) -> Option<u16> {
    let dir = syscalls::tracefs_dir()?;
    std::fs::read_to_string(dir.join(format!("events/{category}/{event}/id")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[repr(C)]
struct TracepointOpts {
    sz: usize,
    bpf_cookie: u64,
}

#[repr(C)]
struct RawTracepointOpts {
    sz: usize,
    cookie: u64,
}

#[repr(C)]
struct KsyscallOpts {
    sz: usize,
    bpf_cookie: u64,
    retprobe: bool,
}

#[test]
fn syscall_links() {
    let obj = object();
    let ns = obj.parent().unwrap().join("ns");
    std::fs::create_dir_all(&ns).unwrap();
    // SAFETY: the only test of this binary; set before the registry is used.
    unsafe {
        std::env::set_var("USERBPF_DIR", &ns);
        std::env::remove_var("USERBPF_BACKEND");
    }
    let path = CString::new(obj.to_str().unwrap()).unwrap();
    // SAFETY: live handles and valid C strings throughout.
    unsafe {
        let o = bpf_object__open_file(path.as_ptr(), null());
        assert!(!o.is_null());
        assert_eq!(bpf_object__load(o), 0, "errno {}", errno());

        // auto mode: every syscall section is a user-space program, bare
        // `ksyscall` included (root or not).
        for name in [
            "tp_enter_openat",
            "tp_exit_openat",
            "rawsc_enter",
            "raw_enter",
            "raw_exit",
            "ks_openat",
            "kret_newfstatat",
            "ks_manual",
            "tp_missing",
        ] {
            let fd = bpf_program__fd(prog(o, name));
            let b = BorrowedFd::borrow_raw(fd);
            assert!(
                userbpf_libbpf_compat::backend::userspace::program_by_fd(b).is_some(),
                "{name} is not in user space"
            );
        }

        // LINUX_HAS_SYSCALL_WRAPPER = 1 in .kconfig.
        let kcfg = bpf_object__find_map_by_name(o, c".kconfig".as_ptr());
        assert!(!kcfg.is_null());
        let vsize = bpf_map__value_size(kcfg) as usize;
        let mut v = vec![0u8; vsize];
        let key = 0u32;
        assert_eq!(
            bpf_map__lookup_elem(
                kcfg,
                (&key as *const u32).cast::<c_void>(),
                4,
                v.as_mut_ptr().cast::<c_void>(),
                vsize,
                0
            ),
            0
        );
        assert_eq!(v[0], 1, "LINUX_HAS_SYSCALL_WRAPPER");

        // Auto-attach: one record each, the kernel's layouts.
        let before = links().len();
        let tp = prog(o, "tp_enter_openat");
        let l = bpf_program__attach(tp);
        let r = record_of(l);
        assert_eq!(r.type_, AttachKind::SyscallEnter as u32);
        assert_eq!(r.offset, 257);
        assert_eq!(r.path_str(), "syscalls/sys_enter_openat");
        assert_eq!(r.name_str(), "tp_enter_openat");
        assert_eq!(r.prog_id, prog_id(tp));
        assert_eq!((r.pid, r.cookie), (0, 0));
        let ctx = SyscallCtx::from_bits(r.ref_ctr_offset).unwrap();
        assert_eq!(ctx.kind, SyscallCtxKind::Tracepoint);
        assert_eq!(
            (ctx.nr_offset, ctx.nr_size, ctx.args_offset, ctx.size),
            (8, 4, 16, 48)
        );
        if let Some(id) = tracefs_id("syscalls", "sys_enter_openat") {
            assert_eq!(ctx.common_type, id, "common_type from tracefs");
        }
        assert_eq!(bpf_link__destroy(l), 0);
        assert_eq!(links().len(), before, "destroy removes the record");

        let l = bpf_program__attach(prog(o, "tp_exit_openat"));
        let r = record_of(l);
        assert_eq!((r.type_, r.offset), (AttachKind::SyscallExit as u32, 257));
        let ctx = SyscallCtx::from_bits(r.ref_ctr_offset).unwrap();
        assert_eq!(
            (ctx.nr_offset, ctx.nr_size, ctx.args_offset, ctx.size),
            (8, 4, 16, 24)
        );
        assert_eq!(bpf_link__destroy(l), 0);

        let l = bpf_program__attach(prog(o, "rawsc_enter"));
        let r = record_of(l);
        assert_eq!(
            (r.type_, r.offset),
            (AttachKind::SyscallEnter as u32, ALL_SYSCALLS)
        );
        assert_eq!(r.path_str(), "raw_syscalls/sys_enter");
        let ctx = SyscallCtx::from_bits(r.ref_ctr_offset).unwrap();
        assert_eq!(ctx.kind, SyscallCtxKind::RawSyscalls);
        assert_eq!(
            (ctx.nr_offset, ctx.nr_size, ctx.args_offset, ctx.size),
            (8, 8, 16, 64)
        );
        assert_eq!(bpf_link__destroy(l), 0);

        let l = bpf_program__attach(prog(o, "raw_enter"));
        let r = record_of(l);
        assert_eq!(
            (r.type_, r.offset),
            (AttachKind::SyscallEnter as u32, ALL_SYSCALLS)
        );
        assert_eq!(r.path_str(), "raw_tp/sys_enter");
        assert_eq!(
            SyscallCtx::from_bits(r.ref_ctr_offset),
            Some(SyscallCtx::raw_tracepoint(false))
        );
        assert_eq!(bpf_link__destroy(l), 0);

        let l = bpf_program__attach(prog(o, "raw_exit"));
        let r = record_of(l);
        assert_eq!(r.type_, AttachKind::SyscallExit as u32);
        assert_eq!(r.path_str(), "raw_tp/sys_exit");
        assert_eq!(
            SyscallCtx::from_bits(r.ref_ctr_offset),
            Some(SyscallCtx::raw_tracepoint(true))
        );
        // bpf_link__detach removes the record; destroy after it is fine.
        assert_eq!(bpf_link__detach(l), 0);
        assert_eq!(links().len(), before);
        assert_eq!(bpf_link__destroy(l), 0);

        let l = bpf_program__attach(prog(o, "ks_openat"));
        let r = record_of(l);
        assert_eq!((r.type_, r.offset), (AttachKind::SyscallEnter as u32, 257));
        assert_eq!(r.path_str(), "ksyscall/openat");
        assert_eq!(
            SyscallCtx::from_bits(r.ref_ctr_offset),
            Some(SyscallCtx::ksyscall())
        );
        assert_eq!(bpf_link__destroy(l), 0);

        let l = bpf_program__attach(prog(o, "kret_newfstatat"));
        let r = record_of(l);
        assert_eq!((r.type_, r.offset), (AttachKind::SyscallExit as u32, 262));
        assert_eq!(r.path_str(), "kretsyscall/newfstatat");
        assert_eq!(
            SyscallCtx::from_bits(r.ref_ctr_offset),
            Some(SyscallCtx::kretsyscall())
        );
        assert_eq!(bpf_link__destroy(l), 0);

        // Bare `ksyscall`: no auto-attach (EOPNOTSUPP from
        // bpf_program__attach), by hand with a cookie and retprobe.
        let ks = prog(o, "ks_manual");
        assert!(bpf_program__attach(ks).is_null());
        assert_eq!(errno(), libc::EOPNOTSUPP);
        let opts = KsyscallOpts {
            sz: std::mem::size_of::<KsyscallOpts>(),
            bpf_cookie: 9,
            retprobe: true,
        };
        let l = bpf_program__attach_ksyscall(
            ks,
            c"newstat".as_ptr(),
            (&opts as *const KsyscallOpts).cast(),
        );
        let r = record_of(l);
        assert_eq!(
            (r.type_, r.offset, r.cookie),
            (AttachKind::SyscallExit as u32, 4, 9)
        );
        assert_eq!(r.path_str(), "kretsyscall/newstat");
        assert_eq!(bpf_link__destroy(l), 0);

        // By hand, with cookies; a tracepoint program on another syscall
        // tracepoint, as the kernel allows.
        let topts = TracepointOpts {
            sz: std::mem::size_of::<TracepointOpts>(),
            bpf_cookie: 42,
        };
        let l = bpf_program__attach_tracepoint_opts(
            tp,
            c"syscalls".as_ptr(),
            c"sys_exit_getppid".as_ptr(),
            (&topts as *const TracepointOpts).cast(),
        );
        let r = record_of(l);
        assert_eq!(
            (r.type_, r.offset, r.cookie),
            (AttachKind::SyscallExit as u32, 110, 42)
        );
        // Two links on one program at once.
        let l2 = bpf_program__attach_tracepoint(tp, c"raw_syscalls".as_ptr(), c"sys_exit".as_ptr());
        let r2 = record_of(l2);
        assert_ne!(r2.id, r.id);
        assert_eq!(r2.offset, ALL_SYSCALLS);
        assert_eq!(bpf_link__destroy(l), 0);
        assert_eq!(bpf_link__destroy(l2), 0);
        let ropts = RawTracepointOpts {
            sz: std::mem::size_of::<RawTracepointOpts>(),
            cookie: 7,
        };
        let l = bpf_program__attach_raw_tracepoint_opts(
            prog(o, "raw_enter"),
            c"sys_exit".as_ptr(),
            (&ropts as *const RawTracepointOpts).cast_mut().cast(),
        );
        let r = record_of(l);
        assert_eq!((r.type_, r.cookie), (AttachKind::SyscallExit as u32, 7));
        assert_eq!(bpf_link__destroy(l), 0);

        // Unknown tracepoints and syscalls: ENOENT.
        assert!(bpf_program__attach(prog(o, "tp_missing")).is_null());
        assert_eq!(errno(), libc::ENOENT);
        assert!(bpf_program__attach_tracepoint(
            tp,
            c"syscalls".as_ptr(),
            c"sys_enter_nope".as_ptr()
        )
        .is_null());
        assert_eq!(errno(), libc::ENOENT);
        assert!(bpf_program__attach_tracepoint(
            tp,
            c"raw_syscalls".as_ptr(),
            c"sys_enter_x".as_ptr()
        )
        .is_null());
        assert_eq!(errno(), libc::ENOENT);
        // `stat` is `newstat` to the kernel.
        assert!(bpf_program__attach_ksyscall(ks, c"stat".as_ptr(), null()).is_null());
        assert_eq!(errno(), libc::ENOENT);

        // The wrong program type: EINVAL.
        let raw = prog(o, "raw_enter");
        assert!(bpf_program__attach_tracepoint(
            raw,
            c"syscalls".as_ptr(),
            c"sys_enter_openat".as_ptr()
        )
        .is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert!(bpf_program__attach_raw_tracepoint(tp, c"sys_enter".as_ptr()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert!(bpf_program__attach_ksyscall(tp, c"openat".as_ptr(), null()).is_null());
        assert_eq!(errno(), libc::EINVAL);

        // Other tracepoints stay the kernel's: the existing refusal.
        assert!(
            bpf_program__attach_tracepoint(tp, c"sched".as_ptr(), c"sched_switch".as_ptr())
                .is_null()
        );
        assert!(
            [libc::EOPNOTSUPP, libc::EPERM].contains(&errno()),
            "{}",
            errno()
        );
        assert!(bpf_program__attach_raw_tracepoint(raw, c"sched_switch".as_ptr()).is_null());
        assert!(
            [libc::EOPNOTSUPP, libc::EPERM].contains(&errno()),
            "{}",
            errno()
        );

        assert_eq!(links().len(), before, "no record left behind");
        bpf_object__close(o);
    }
}
