//! The tracing helpers, exercised from eBPF programs on both engines, and
//! the fault-recovering copies under them (`helpers::safe_mem`), including
//! signal chaining in child processes.
//!
//! Child processes re-run this test binary with `USERBPF_HELPERS_CHILD`
//! naming a scenario; the test of the same name runs the scenario instead
//! of its parent side.

mod support;

use std::ffi::c_int;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use support::asmx::assemble;
use userbpf_runtime::helpers::safe_mem::{self, Fault};
use userbpf_runtime::helpers::{
    ids, register_tracing_helpers, task, HelperRegistry, PtRegs, RunInfo,
};
use userbpf_runtime::vm::{Engine, Vm, VmError, VmOptions};

const ENGINES: [Engine; 2] = [Engine::Interpreter, Engine::Jit];
const CHILD_ENV: &str = "USERBPF_HELPERS_CHILD";

const EFAULT: u64 = (-14i64) as u64;
const EINVAL: u64 = (-22i64) as u64;
const E2BIG: u64 = (-7i64) as u64;
const EOPNOTSUPP: u64 = (-95i64) as u64;

fn registry() -> HelperRegistry {
    let mut r = HelperRegistry::new();
    register_tracing_helpers(&mut r);
    r
}

fn vm(src: &str, engine: Engine) -> Vm {
    Vm::from_insns(assemble(src), registry(), VmOptions::with_engine(engine))
        .unwrap_or_else(|e| panic!("{engine}: {e}\n{src}"))
}

/// The program on each engine.
fn vms(src: &str) -> Vec<Vm> {
    ENGINES.iter().map(|&e| vm(src, e)).collect()
}

/// A context buffer: `words` at offsets 0, 8, ..., then `extra` zero bytes.
fn ctx_of(words: &[u64], extra: usize) -> Vec<u8> {
    let mut v: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    v.resize(v.len() + extra, 0);
    v
}

fn word(ctx: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(ctx[off..off + 8].try_into().unwrap())
}

fn run_with_info(vm: &Vm, ctx: &mut [u8], info: &mut RunInfo) -> Result<u64, VmError> {
    // SAFETY: `ctx` and `info` are exclusively borrowed for the run.
    unsafe { vm.run_with(ctx.as_mut_ptr(), ctx.len(), &[], info.as_user_ptr()) }
}

/// An anonymous mapping of `pages` pages with `prot`.
struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(pages: usize, prot: c_int) -> Mapping {
        let len = pages * page_size();
        // SAFETY: a fresh private anonymous mapping.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        Mapping {
            addr: addr.cast(),
            len,
        }
    }

    /// One read-write page at a fixed low address whose next page nobody
    /// maps (the kernel only places mappings there when asked to): a stable
    /// "mapped page, then a hole". A page unmapped from a larger mapping
    /// could be reused at once by another test thread's mmap. Each test
    /// passes its own `slot`.
    fn before_hole(slot: u64) -> Mapping {
        let want = 0x100_0000 + slot * 0x10_0000;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let addr = unsafe {
            libc::mmap(
                want as *mut libc::c_void,
                page_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(addr as u64, want, "cannot map at {want:#x}");
        let hole = want + page_size() as u64;
        // SAFETY: msync only inspects the range; ENOMEM means unmapped.
        let rc = unsafe { libc::msync(hole as *mut libc::c_void, page_size(), libc::MS_ASYNC) };
        assert_eq!(rc, -1, "{hole:#x} is mapped");
        Mapping {
            addr: addr.cast(),
            len: page_size(),
        }
    }

    fn at(&self, off: usize) -> *mut u8 {
        self.addr.wrapping_add(off)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own range (already unmapped pages are fine).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// An unmapped page. A page mapped and unmapped again could be reused at
/// once by another test thread, so this is a fixed low address that
/// nothing maps (above `vm.mmap_min_addr`, far below the executable).
fn unmapped_page() -> u64 {
    let addr = 0x10000u64;
    // SAFETY: msync only inspects the range; ENOMEM means unmapped.
    let rc = unsafe { libc::msync(addr as *mut libc::c_void, page_size(), libc::MS_ASYNC) };
    assert_eq!(rc, -1, "{addr:#x} is mapped");
    addr
}

// ---------------------------------------------------------------------
// safe_mem
// ---------------------------------------------------------------------

#[test]
fn safe_read_copies_every_length_and_alignment() {
    let src: Vec<u8> = (0..200u8).collect();
    for off in 0..8 {
        for len in 0..100 {
            let mut dst = vec![0xeeu8; 120];
            // SAFETY: both ranges are valid.
            unsafe { safe_mem::safe_read(dst.as_mut_ptr().add(3), src.as_ptr().add(off), len) }
                .unwrap();
            assert_eq!(&dst[3..3 + len], &src[off..off + len]);
            assert!(dst[..3].iter().chain(&dst[3 + len..]).all(|&b| b == 0xee));
        }
    }
}

#[test]
fn safe_read_refuses_bad_ranges_without_touching_them() {
    let mut dst = [0u8; 16];
    let d = dst.as_mut_ptr();
    for addr in [
        0u64,
        8,
        4095,
        0xffff_8880_0000_0000,
        0x0000_9000_0000_0000,
        u64::MAX - 4,
    ] {
        // SAFETY: `dst` is valid; the source is refused before use.
        let r = unsafe { safe_mem::safe_read(d, addr as *const u8, 8) };
        assert_eq!(r, Err(Fault::NotUser { addr, len: 8 }), "{addr:#x}");
    }
    // A range ending past user space.
    // SAFETY: refused before use.
    let r = unsafe { safe_mem::safe_read(d, 0x7fff_ffff_fffc as *const u8, 8) };
    assert!(matches!(r, Err(Fault::NotUser { .. })));
    // A bad destination is refused too.
    let src = [1u8; 8];
    // SAFETY: refused before use.
    let r = unsafe { safe_mem::safe_read(std::ptr::null_mut(), src.as_ptr(), 8) };
    assert_eq!(r, Err(Fault::NotUser { addr: 0, len: 8 }));
}

#[test]
fn safe_read_recovers_from_faults() {
    let mut dst = [0u8; 32];
    let d = dst.as_mut_ptr();
    // Unmapped.
    let gone = unmapped_page();
    // SAFETY: `dst` is valid; faults are recovered.
    let r = unsafe { safe_mem::safe_read(d, gone as *const u8, 16) };
    assert!(matches!(r, Err(Fault::Faulted { .. })), "{r:?}");
    // PROT_NONE.
    let none = Mapping::new(1, libc::PROT_NONE);
    // SAFETY: as above.
    let r = unsafe { safe_mem::safe_read(d, none.addr, 16) };
    assert!(matches!(r, Err(Fault::Faulted { .. })), "{r:?}");
    // A range that runs from a mapped page into an unmapped one.
    let two = Mapping::before_hole(0);
    let edge = two.at(page_size() - 8);
    // SAFETY: the first page is ours.
    unsafe { edge.cast::<u64>().write_unaligned(0x1122_3344_5566_7788) };
    // SAFETY: as above.
    let r = unsafe { safe_mem::safe_read(d, edge, 8) };
    assert_eq!(r, Ok(()));
    assert_eq!(
        u64::from_le_bytes(dst[..8].try_into().unwrap()),
        0x1122_3344_5566_7788
    );
    for len in [9, 16, 17, 32] {
        // SAFETY: as above.
        let r = unsafe { safe_mem::safe_read(d, edge, len) };
        assert!(matches!(r, Err(Fault::Faulted { .. })), "{len}: {r:?}");
    }
    // Writes: a read-only page.
    let ro = Mapping::new(1, libc::PROT_READ);
    let src = [7u8; 8];
    // SAFETY: as above; the destination is a page of ours.
    let r = unsafe { safe_mem::safe_write(ro.addr, src.as_ptr(), 8) };
    assert!(matches!(r, Err(Fault::Faulted { .. })), "{r:?}");
    // SAFETY: as above.
    let r = unsafe { safe_mem::safe_zero(ro.addr, 8) };
    assert!(matches!(r, Err(Fault::Faulted { .. })), "{r:?}");
    // And the process is fine.
    assert!(safe_mem::is_installed());
}

#[test]
fn safe_read_recovers_from_sigbus() {
    // A shared file mapping past the end of its (truncated) file: SIGBUS.
    let path = std::env::temp_dir().join(format!("userbpf-sigbus-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(page_size() as u64).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of our file.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page_size(),
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    file.set_len(0).unwrap();
    let mut dst = [0u8; 8];
    // SAFETY: `dst` is valid; the fault is recovered.
    let r = unsafe { safe_mem::safe_read(dst.as_mut_ptr(), addr.cast(), 8) };
    assert!(matches!(r, Err(Fault::Faulted { .. })), "{r:?}");
    // SAFETY: our mapping.
    unsafe { libc::munmap(addr, page_size()) };
    let _ = std::fs::remove_file(path);
}

#[test]
fn safe_read_str_follows_the_kernel() {
    let s = b"hello\0world";
    let mut dst = [0xffu8; 16];
    let d = dst.as_mut_ptr();
    // SAFETY: valid buffers throughout.
    unsafe {
        assert_eq!(safe_mem::safe_read_str(d, s.as_ptr(), 16), Ok(6));
        assert_eq!(&dst[..7], b"hello\0\xff");
        assert_eq!(safe_mem::safe_read_str(d, s.as_ptr(), 6), Ok(6));
        assert_eq!(safe_mem::safe_read_str(d, s.as_ptr(), 4), Ok(4));
        assert_eq!(&dst[..4], b"hel\0");
        assert_eq!(safe_mem::safe_read_str(d, s.as_ptr(), 1), Ok(1));
        assert_eq!(dst[0], 0);
        assert_eq!(safe_mem::safe_read_str(d, s.as_ptr(), 0), Ok(0));
        assert_eq!(safe_mem::safe_read_str(d, c"".as_ptr().cast(), 8), Ok(1));
        assert!(matches!(
            safe_mem::safe_read_str(d, std::ptr::null(), 8),
            Err(Fault::NotUser { .. })
        ));
    }
    // Strings at the end of a page followed by an unmapped page.
    let two = Mapping::before_hole(1);
    let end = two.at(page_size());
    // SAFETY: the first page is ours.
    unsafe {
        std::ptr::write_bytes(end.sub(10), b'a', 10);
        end.sub(1).write(0);
    }
    let mut out = [0u8; 64];
    let o = out.as_mut_ptr();
    // SAFETY: `out` is valid; faults are recovered.
    unsafe {
        // 9 characters and the NUL, which is the page's last byte.
        assert_eq!(safe_mem::safe_read_str(o, end.sub(10), 64), Ok(10));
        assert_eq!(&out[..10], b"aaaaaaaaa\0");
        // Truncated before the page end: no fault.
        assert_eq!(safe_mem::safe_read_str(o, end.sub(10), 5), Ok(5));
        // No NUL before the unmapped page: a fault.
        end.sub(1).write(b'a');
        assert!(matches!(
            safe_mem::safe_read_str(o, end.sub(10), 64),
            Err(Fault::Faulted { .. })
        ));
        // ... unless the size stops the copy first.
        assert_eq!(safe_mem::safe_read_str(o, end.sub(10), 10), Ok(10));
        assert_eq!(out[9], 0);
    }
}

#[test]
fn safe_reads_from_many_threads() {
    let good: Vec<u64> = (0..64).collect();
    let none = Mapping::new(1, libc::PROT_NONE);
    let bad = none.addr as u64;
    let good_addr = good.as_ptr() as u64;
    std::thread::scope(|s| {
        for t in 0..8u64 {
            s.spawn(move || {
                let mut faults = 0;
                for i in 0..20_000u64 {
                    let mut dst = [0u64; 4];
                    let idx = (i + t) % 60;
                    let src = if (i + t) % 3 == 0 {
                        bad
                    } else {
                        good_addr + idx * 8
                    };
                    // SAFETY: `dst` is valid; faults are recovered.
                    let r = unsafe {
                        safe_mem::safe_read(dst.as_mut_ptr().cast(), src as *const u8, 32)
                    };
                    if src == bad {
                        assert!(r.is_err());
                        faults += 1;
                    } else {
                        assert_eq!(r, Ok(()));
                        assert_eq!(dst, [idx, idx + 1, idx + 2, idx + 3]);
                    }
                }
                assert!(faults > 6000);
            });
        }
    });
}

// ---- signal chaining, in child processes ----

fn run_child(test: &str, scenario: &str, envs: &[(&str, &str)]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Writes to stdout without locks or allocation (usable in handlers).
fn say(msg: &str) {
    // SAFETY: writes a valid buffer to fd 1.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
}

fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
}

/// A real fault outside our routines: a read of address 8.
fn real_fault() {
    // SAFETY: deliberately faults; the scenarios expect the signal.
    unsafe {
        std::arch::asm!("mov {0}, qword ptr [{1}]", out(reg) _, in(reg) 8usize);
    }
}

fn bad_read_is_recovered() -> bool {
    let mut dst = [0u8; 8];
    let gone = unmapped_page();
    // SAFETY: `dst` is valid; the fault is recovered (or not, which is
    // what some scenarios show).
    unsafe { safe_mem::safe_read(dst.as_mut_ptr(), gone as *const u8, 8) }.is_err()
}

extern "C" fn app_siginfo_handler(sig: c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo.
    let code = unsafe { (*info).si_code };
    say(&format!("app handler: sig {sig} code {code}\n"));
    // SAFETY: exits at once.
    unsafe { libc::_exit(42) };
}

extern "C" fn app_plain_handler(sig: c_int) {
    say(&format!("plain handler: sig {sig}\n"));
    // SAFETY: exits at once.
    unsafe { libc::_exit(43) };
}

extern "C" fn app_late_handler(_: c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    say("late handler\n");
    // SAFETY: exits at once.
    unsafe { libc::_exit(7) };
}

extern "C" fn app_oneshot_handler(_: c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Returns without fixing anything: the fault repeats, now with SIG_DFL.
    say("oneshot handler\n");
}

fn action(handler: usize, flags: c_int) -> libc::sigaction {
    // SAFETY: all-zero is a valid sigaction.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    act
}

fn set_action(sig: c_int, act: &libc::sigaction) {
    // SAFETY: a valid action.
    assert_eq!(
        unsafe { libc::sigaction(sig, act, std::ptr::null_mut()) },
        0
    );
}

fn chaining_scenario(name: &str) {
    no_core_dumps();
    match name {
        "siginfo-before" => {
            let h = app_siginfo_handler as *const () as usize;
            set_action(libc::SIGSEGV, &action(h, libc::SA_SIGINFO));
            assert!(bad_read_is_recovered());
            say("recovered\n");
            real_fault();
        }
        "plain-before" => {
            set_action(
                libc::SIGSEGV,
                &action(app_plain_handler as *const () as usize, 0),
            );
            assert!(bad_read_is_recovered());
            say("recovered\n");
            real_fault();
        }
        "dfl" => {
            set_action(libc::SIGSEGV, &action(libc::SIG_DFL, 0));
            assert!(bad_read_is_recovered());
            say("recovered\n");
            real_fault();
        }
        "dfl-kill" => {
            set_action(libc::SIGSEGV, &action(libc::SIG_DFL, 0));
            assert!(bad_read_is_recovered());
            say("recovered\n");
            // SAFETY: signals ourselves.
            unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
            std::thread::sleep(std::time::Duration::from_millis(500));
            say("survived\n");
        }
        "ign-kill" => {
            set_action(libc::SIGSEGV, &action(libc::SIG_IGN, 0));
            assert!(bad_read_is_recovered());
            // SAFETY: signals ourselves; ignored, as without us.
            unsafe { libc::kill(libc::getpid(), libc::SIGSEGV) };
            std::thread::sleep(std::time::Duration::from_millis(100));
            say("survived\n");
            // A real fault is not ignorable.
            real_fault();
        }
        "after-direct" => {
            set_action(libc::SIGSEGV, &action(libc::SIG_DFL, 0));
            assert!(bad_read_is_recovered());
            say("recovered\n");
            // The application replaces our handler behind our back: it now
            // sees our faults too.
            let h = app_late_handler as *const () as usize;
            set_action(libc::SIGSEGV, &action(h, libc::SA_SIGINFO));
            bad_read_is_recovered();
            say("not reached\n");
        }
        "after-interposed" => {
            set_action(libc::SIGSEGV, &action(libc::SIG_DFL, 0));
            assert!(bad_read_is_recovered());
            let h = app_siginfo_handler as *const () as usize;
            let new = action(h, libc::SA_SIGINFO);
            // SAFETY: all-zero is a valid sigaction.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers.
            assert_eq!(
                unsafe { safe_mem::app_sigaction(libc::SIGSEGV, &new, &mut old) },
                0
            );
            assert_eq!(old.sa_sigaction, libc::SIG_DFL);
            // SAFETY: all-zero is a valid sigaction.
            let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers: the application sees its own action.
            unsafe { safe_mem::app_sigaction(libc::SIGSEGV, std::ptr::null(), &mut now) };
            assert_eq!(now.sa_sigaction, h);
            assert!(bad_read_is_recovered());
            say("recovered\n");
            real_fault();
        }
        "resethand" => {
            let h = app_oneshot_handler as *const () as usize;
            set_action(
                libc::SIGSEGV,
                &action(h, libc::SA_SIGINFO | libc::SA_RESETHAND),
            );
            assert!(bad_read_is_recovered());
            assert!(bad_read_is_recovered());
            say("recovered\n");
            real_fault();
        }
        other => panic!("unknown scenario {other}"),
    }
    say("fell through\n");
    // SAFETY: exits at once.
    unsafe { libc::_exit(99) };
}

#[test]
fn signal_chaining_keeps_the_applications_semantics() {
    if let Ok(s) = std::env::var(CHILD_ENV) {
        chaining_scenario(&s);
        return;
    }
    let test = "signal_chaining_keeps_the_applications_semantics";
    let check = |scenario: &str, code: Option<i32>, signal: Option<i32>, out: &[&str]| {
        let o = run_child(test, scenario, &[]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let info = format!(
            "{scenario}: {:?}\n{stdout}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), code, "{info}");
        assert_eq!(o.status.signal(), signal, "{info}");
        for line in out {
            assert!(stdout.contains(line), "missing {line:?} in {info}");
        }
        stdout.to_string()
    };
    // The application's SA_SIGINFO handler gets its own fault, with the
    // kernel's si_code (SEGV_MAPERR = 1), and none of ours.
    check(
        "siginfo-before",
        Some(42),
        None,
        &["recovered", "app handler: sig 11 code 1"],
    );
    check(
        "plain-before",
        Some(43),
        None,
        &["recovered", "plain handler: sig 11"],
    );
    // SIG_DFL: the fault kills the process, as without us; so does kill().
    check("dfl", None, Some(libc::SIGSEGV), &["recovered"]);
    let out = check("dfl-kill", None, Some(libc::SIGSEGV), &["recovered"]);
    assert!(!out.contains("survived"));
    // SIG_IGN: kill() is ignored, a real fault is not.
    check("ign-kill", None, Some(libc::SIGSEGV), &["survived"]);
    // Installed after us with a plain sigaction: the application's handler
    // runs for our fault (documented; the agent interposes sigaction).
    check(
        "after-direct",
        Some(7),
        None,
        &["recovered", "late handler"],
    );
    // Installed through app_sigaction: both keep working.
    check(
        "after-interposed",
        Some(42),
        None,
        &["recovered", "app handler: sig 11"],
    );
    // SA_RESETHAND: the handler runs once, then the default action.
    let out = check(
        "resethand",
        None,
        Some(libc::SIGSEGV),
        &["recovered", "oneshot handler"],
    );
    assert_eq!(out.matches("oneshot handler").count(), 1, "{out}");
}

// ---------------------------------------------------------------------
// probe_read and friends, from programs
// ---------------------------------------------------------------------

/// A program calling `helper(stack_buf, ctx[8], ctx[0])` with a 64-byte
/// stack buffer prefilled with 0xff; r0 goes to ctx[80], the buffer to
/// ctx[16..80].
fn probe_program(helper: u32) -> String {
    let mut p = String::from("mov %r6, %r1\n");
    for i in 1..=8 {
        p += &format!("stdw [%r10-{}], -1\n", i * 8);
    }
    p += &format!(
        "mov %r1, %r10\nadd %r1, -64\nldxdw %r2, [%r6+8]\nldxdw %r3, [%r6+0]\ncall {helper}\nstxdw [%r6+80], %r0\n"
    );
    for i in 0..8 {
        p += &format!(
            "ldxdw %r1, [%r10-{}]\nstxdw [%r6+{}], %r1\n",
            64 - i * 8,
            16 + i * 8
        );
    }
    p += "mov %r0, 0\nexit\n";
    p
}

/// Runs `helper(buf, size, src)` on both engines; returns (r0, buffer).
fn probe(helper: u32, src: u64, size: u64) -> (u64, Vec<u8>) {
    let mut results = Vec::new();
    for vm in vms(&probe_program(helper)) {
        let mut ctx = ctx_of(&[src, size], 72);
        vm.run(&mut ctx).unwrap();
        results.push((word(&ctx, 80), ctx[16..80].to_vec()));
    }
    assert_eq!(results[0], results[1], "engines disagree");
    results.pop().unwrap()
}

#[test]
fn probe_read_user_copies_and_fails_cleanly() {
    let data: Vec<u8> = (1..=64).collect();
    let src = data.as_ptr() as u64;
    for helper in [ids::PROBE_READ_USER, ids::PROBE_READ] {
        let (r0, buf) = probe(helper, src, 16);
        assert_eq!(r0, 0);
        assert_eq!(&buf[..16], &data[..16]);
        assert!(buf[16..].iter().all(|&b| b == 0xff));
        let (r0, buf) = probe(helper, src, 0);
        assert_eq!(r0, 0);
        assert!(buf.iter().all(|&b| b == 0xff));
    }
    let two = Mapping::before_hole(2);
    let none = Mapping::new(1, libc::PROT_NONE);
    let bad = [
        0,
        16,
        unmapped_page(),
        none.addr as u64,
        two.at(page_size() - 8) as u64,
        0xffff_8880_0000_0000,
        0x0000_9000_0000_0000,
    ];
    for helper in [ids::PROBE_READ_USER, ids::PROBE_READ] {
        for &addr in &bad {
            // The target lives, the program gets -EFAULT and zeroes.
            let (r0, buf) = probe(helper, addr, 24);
            assert_eq!(r0, EFAULT, "{addr:#x}");
            assert!(buf[..24].iter().all(|&b| b == 0), "{addr:#x}");
            assert!(buf[24..].iter().all(|&b| b == 0xff), "{addr:#x}");
        }
    }
    // No kernel memory in user space.
    let (r0, buf) = probe(ids::PROBE_READ_KERNEL, src, 16);
    assert_eq!(r0, EFAULT);
    assert!(buf[..16].iter().all(|&b| b == 0));
}

#[test]
fn probe_read_str_variants() {
    let s = b"tracing!\0junk";
    let src = s.as_ptr() as u64;
    for helper in [ids::PROBE_READ_USER_STR, ids::PROBE_READ_STR] {
        let (r0, buf) = probe(helper, src, 64);
        assert_eq!(r0, 9);
        assert_eq!(&buf[..9], b"tracing!\0");
        // Not padded.
        assert!(buf[9..].iter().all(|&b| b == 0xff));
        let (r0, buf) = probe(helper, src, 5);
        assert_eq!(r0, 5);
        assert_eq!(&buf[..6], b"trac\0\xff");
        let (r0, _) = probe(helper, src, 0);
        assert_eq!(r0, 0);
        let (r0, buf) = probe(helper, unmapped_page(), 32);
        assert_eq!(r0, EFAULT);
        assert!(buf[..32].iter().all(|&b| b == 0));
        let (r0, _) = probe(helper, 0, 32);
        assert_eq!(r0, EFAULT);
    }
    let (r0, buf) = probe(ids::PROBE_READ_KERNEL_STR, src, 16);
    assert_eq!(r0, EFAULT);
    assert!(buf[..16].iter().all(|&b| b == 0));
    assert_eq!(probe(ids::PROBE_READ_KERNEL_STR, src, 0).0, 0);
}

#[test]
fn the_interpreter_refuses_a_destination_that_is_not_the_programs() {
    // r1 = some host buffer the program was not given: -EFAULT, untouched.
    let mut host = [0x55u8; 16];
    let data = [1u8; 16];
    let src = format!(
        "lddw %r1, {:#x}\nmov %r2, 16\nlddw %r3, {:#x}\ncall 112\nexit",
        host.as_mut_ptr() as u64,
        data.as_ptr() as u64
    );
    let r0 = vm(&src, Engine::Interpreter).run(&mut []).unwrap();
    assert_eq!(r0, EFAULT);
    assert_eq!(host, [0x55; 16]);
}

#[test]
fn probe_write_user_writes_target_memory() {
    let ro = Mapping::new(1, libc::PROT_READ);
    let src = "
        mov %r6, %r1
        stdw [%r10-8], 0x1234567
        ldxdw %r1, [%r6+0]
        mov %r2, %r10
        add %r2, -8
        mov %r3, 8
        call 36
        exit";
    for vm in vms(src) {
        let mut target = [0u8; 16];
        let mut ctx = ctx_of(&[target.as_mut_ptr() as u64 + 4], 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), 0);
        assert_eq!(
            u64::from_le_bytes(target[4..12].try_into().unwrap()),
            0x1234567
        );
        for bad in [0u64, ro.addr as u64, unmapped_page(), 0xffff_ffff_ff60_0000] {
            let mut ctx = ctx_of(&[bad], 0);
            assert_eq!(vm.run(&mut ctx).unwrap(), EFAULT, "{bad:#x}");
        }
    }
}

// ---------------------------------------------------------------------
// time, task, random
// ---------------------------------------------------------------------

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `call id` twice; r0 = second - first (checked >= 0 by the caller),
/// ctx[0] = first.
fn two_calls(id: u32) -> String {
    format!(
        "mov %r6, %r1\ncall {id}\nstxdw [%r6+0], %r0\nmov %r7, %r0\ncall {id}\nsub %r0, %r7\nexit"
    )
}

#[test]
fn clocks_match_the_kernel_clocks() {
    // Coarse clocks tick every few ms: allow 50 ms of slack for all.
    let slack = 50_000_000;
    for (id, clk) in [
        (ids::KTIME_GET_NS, libc::CLOCK_MONOTONIC),
        (ids::KTIME_GET_BOOT_NS, libc::CLOCK_BOOTTIME),
        (ids::KTIME_GET_COARSE_NS, libc::CLOCK_MONOTONIC_COARSE),
        (ids::KTIME_GET_TAI_NS, libc::CLOCK_TAI),
    ] {
        for vm in vms(&two_calls(id)) {
            let mut ctx = ctx_of(&[0], 0);
            let before = clock(clk);
            let delta = vm.run(&mut ctx).unwrap();
            let after = clock(clk);
            let first = word(&ctx, 0);
            assert!(delta < 1_000_000_000, "{id}: went back or stalled: {delta}");
            assert!(
                first + slack >= before && first <= after + slack,
                "{id}: {before} {first} {after}"
            );
        }
    }
    for vm in vms(&two_calls(ids::JIFFIES64)) {
        let mut ctx = ctx_of(&[0], 0);
        let delta = vm.run(&mut ctx).unwrap();
        assert!(delta < 1000);
        // Past INITIAL_JIFFIES (5 minutes before the 32-bit wrap).
        assert!(word(&ctx, 0) > 0xfff0_0000);
    }
}

fn gettid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() as u32 }
}

#[test]
fn pid_tgid_uid_gid_and_cpu() {
    let src = "
        mov %r6, %r1
        call 14
        stxdw [%r6+0], %r0
        call 15
        stxdw [%r6+8], %r0
        call 8
        stxdw [%r6+16], %r0
        call 35
        stxdw [%r6+24], %r0
        call 42
        stxdw [%r6+32], %r0
        mov %r0, 0
        exit";
    let check = |vm: &Vm| {
        let mut ctx = ctx_of(&[], 40);
        vm.run(&mut ctx).unwrap();
        // SAFETY: no preconditions.
        let (pid, uid, gid) = unsafe { (libc::getpid() as u64, libc::getuid(), libc::getgid()) };
        assert_eq!(word(&ctx, 0), pid << 32 | u64::from(gettid()));
        assert_eq!(word(&ctx, 8), u64::from(gid) << 32 | u64::from(uid));
        assert!(word(&ctx, 16) < u64::from(userbpf_runtime::cpu::possible_cpus()));
        assert_eq!(word(&ctx, 24), 0);
        assert_eq!(word(&ctx, 32), 0);
    };
    for vm in vms(src) {
        check(&vm);
        // Another thread: its own tid, and its own cache.
        std::thread::scope(|s| {
            s.spawn(|| check(&vm));
        });
        check(&vm);
    }
}

#[test]
fn pid_tgid_is_refreshed_after_fork() {
    let src = "call 14\nexit";
    for vm in vms(src) {
        // Fill this thread's cache.
        let parent = vm.run(&mut []).unwrap();
        assert_eq!(parent & 0xffff_ffff, u64::from(gettid()));
        let mut fds = [0; 2];
        // SAFETY: valid array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only runs the (already compiled) program, writes
        // to the pipe and exits; it takes no locks.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let r0 = vm.run(&mut []).unwrap_or(0);
            // SAFETY: writes 8 bytes and exits.
            unsafe {
                libc::write(fds[1], (&r0 as *const u64).cast(), 8);
                libc::_exit(0);
            }
        }
        let mut r0 = 0u64;
        // SAFETY: reads 8 bytes into `r0`; waits for our child.
        unsafe {
            assert_eq!(libc::read(fds[0], (&mut r0 as *mut u64).cast(), 8), 8);
            libc::waitpid(child, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        // The child's only thread: pid == tid == the child's pid.
        assert_eq!(r0, (child as u64) << 32 | child as u64, "{parent:#x}");
    }
}

/// `get_current_comm(stack, ctx[0])` copied to ctx[8..24]; r0 to ctx[24].
const COMM_PROGRAM: &str = "
    mov %r6, %r1
    stdw [%r10-16], -1
    stdw [%r10-8], -1
    mov %r1, %r10
    add %r1, -16
    ldxdw %r2, [%r6+0]
    call 16
    stxdw [%r6+24], %r0
    ldxdw %r1, [%r10-16]
    stxdw [%r6+8], %r1
    ldxdw %r1, [%r10-8]
    stxdw [%r6+16], %r1
    mov %r0, 0
    exit";

fn comm_of(vm: &Vm, size: u64) -> (u64, Vec<u8>) {
    let mut ctx = ctx_of(&[size], 24);
    vm.run(&mut ctx).unwrap();
    (word(&ctx, 24), ctx[8..24].to_vec())
}

#[test]
fn current_comm_is_the_thread_name() {
    for vm in vms(COMM_PROGRAM) {
        std::thread::Builder::new()
            .name("hlp-comm-test".into())
            .spawn(move || {
                let (r0, comm) = comm_of(&vm, 16);
                assert_eq!(r0, 0);
                assert_eq!(&comm, b"hlp-comm-test\0\0\0");
                let (r0, comm) = comm_of(&vm, 4);
                assert_eq!(r0, 0);
                assert_eq!(&comm[..5], b"hlp\0\xff");
                // A rename is seen once the cache is invalidated (what the
                // agent's interposers do) ...
                // SAFETY: a valid NUL-terminated name.
                unsafe { libc::prctl(libc::PR_SET_NAME, c"renamed".as_ptr()) };
                task::invalidate_comm();
                assert_eq!(&comm_of(&vm, 16).1[..8], b"renamed\0");
                // ... or after at most COMM_TTL_NS without one.
                // SAFETY: as above.
                unsafe { libc::prctl(libc::PR_SET_NAME, c"again".as_ptr()) };
                std::thread::sleep(std::time::Duration::from_nanos(
                    task::COMM_TTL_NS + 20_000_000,
                ));
                assert_eq!(&comm_of(&vm, 16).1[..6], b"again\0");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

#[test]
fn prandom_differs_between_calls_and_threads() {
    let src =
        "mov %r6, %r1\ncall 7\nstxdw [%r6+0], %r0\ncall 7\nstxdw [%r6+8], %r0\nmov %r0, 0\nexit";
    let mut seen = std::collections::HashSet::new();
    for vm in vms(src) {
        for _ in 0..100 {
            let mut ctx = ctx_of(&[0, 0], 0);
            vm.run(&mut ctx).unwrap();
            for off in [0, 8] {
                let v = word(&ctx, off);
                assert!(v <= u64::from(u32::MAX));
                seen.insert(v);
            }
        }
    }
    assert!(seen.len() > 390, "{}", seen.len());
}

// ---------------------------------------------------------------------
// strncmp, snprintf
// ---------------------------------------------------------------------

#[test]
fn strncmp_compares_like_the_kernel() {
    // r1 = ctx + 16 (s1), r2 = ctx[0] (size), r3 = ctx + 48 (s2).
    let src = "
        mov %r6, %r1
        mov %r1, %r6
        add %r1, 16
        ldxdw %r2, [%r6+0]
        mov %r3, %r6
        add %r3, 48
        call 182
        exit";
    let case = |s1: &[u8], size: u64, s2: &[u8]| -> Vec<u64> {
        vms(src)
            .iter()
            .map(|vm| {
                let mut ctx = ctx_of(&[size], 72);
                ctx[16..16 + s1.len()].copy_from_slice(s1);
                ctx[48..48 + s2.len()].copy_from_slice(s2);
                vm.run(&mut ctx).unwrap()
            })
            .collect()
    };
    let minus_one = u64::MAX;
    assert_eq!(case(b"hello", 5, b"hello\0"), [0, 0]);
    assert_eq!(case(b"help", 4, b"hello\0"), [1, 1]);
    assert_eq!(case(b"hell", 4, b"help\0"), [minus_one, minus_one]);
    // Only s1_sz bytes count.
    assert_eq!(case(b"hellX", 4, b"hello\0"), [0, 0]);
    // s1 shorter (NUL inside) than s2.
    assert_eq!(case(b"he\0", 8, b"hello\0"), [minus_one, minus_one]);
    assert_eq!(case(b"", 0, b"x\0"), [0, 0]);
    // Bytes compare unsigned.
    assert_eq!(case(b"\xff", 1, b"a\0"), [1, 1]);
}

#[test]
fn snprintf_formats_into_program_memory() {
    // ctx: [0] str_size, [8] data_len; fmt at ctx+16 (64 bytes), output at
    // ctx+80 (64 bytes), data array at ctx+144 (12 u64).
    let src = "
        mov %r6, %r1
        mov %r1, %r6
        add %r1, 80
        ldxdw %r2, [%r6+0]
        mov %r3, %r6
        add %r3, 16
        mov %r4, %r6
        add %r4, 144
        ldxdw %r5, [%r6+8]
        call 165
        exit";
    let name = b"world\0";
    let case = |fmt: &str, size: u64, args: &[u64]| -> (u64, String) {
        let mut results = Vec::new();
        for vm in vms(src) {
            let mut ctx = ctx_of(&[size, 8 * args.len() as u64], 240);
            ctx[16..16 + fmt.len()].copy_from_slice(fmt.as_bytes());
            for (i, a) in args.iter().enumerate() {
                ctx[144 + 8 * i..152 + 8 * i].copy_from_slice(&a.to_le_bytes());
            }
            let r0 = vm.run(&mut ctx).unwrap();
            let out = &ctx[80..144];
            let end = out.iter().position(|&b| b == 0).unwrap_or(64);
            results.push((r0, String::from_utf8_lossy(&out[..end]).into_owned()));
        }
        assert_eq!(results[0], results[1]);
        results.pop().unwrap()
    };
    let np = name.as_ptr() as u64;
    assert_eq!(
        case("hello %s %d!", 64, &[np, (-5i64) as u64]),
        (16, "hello world -5!".into())
    );
    assert_eq!(
        case("%05u|%-4x|%lld", 64, &[42, 0xab, 1 << 40]),
        (25, "00042|ab  |1099511627776".into())
    );
    // Truncation: the return value counts the whole output and the NUL.
    assert_eq!(case("%s and more", 6, &[np]), (15, "world".into()));
    // Errors.
    assert_eq!(case("%d %d", 64, &[1]).0, EINVAL);
    assert_eq!(case("%q", 64, &[1]).0, EINVAL);
    let twelve = [7u64; 12];
    assert_eq!(
        case("%d%d%d%d%d%d%d%d%d%d%d%d", 64, &twelve),
        (13, "777777777777".into())
    );
    for vm in vms(src) {
        // 13 arguments, or a length that is not a multiple of 8.
        for data_len in [13 * 8, 12] {
            let mut ctx = ctx_of(&[64, data_len], 240);
            ctx[16..19].copy_from_slice(b"%d\0");
            assert_eq!(vm.run(&mut ctx).unwrap(), EINVAL);
        }
    }
}

// ---------------------------------------------------------------------
// RunInfo: func_ip, attach cookie, override_return, get_stack
// ---------------------------------------------------------------------

#[test]
fn run_info_helpers() {
    let src = "
        mov %r6, %r1
        call 173
        stxdw [%r6+0], %r0
        mov %r1, %r6
        call 174
        stxdw [%r6+8], %r0
        mov %r1, %r6
        lddw %r2, 0xfffffffffffffff2
        call 58
        exit";
    for vm in vms(src) {
        let mut info = RunInfo {
            attach_cookie: 0xc00c1e,
            func_ip: 0x40_1000,
            ..RunInfo::default()
        };
        let mut ctx = ctx_of(&[0, 0], 0);
        assert_eq!(run_with_info(&vm, &mut ctx, &mut info).unwrap(), 0);
        assert_eq!((word(&ctx, 0), word(&ctx, 8)), (0x40_1000, 0xc00c1e));
        assert_eq!(info.override_return(), Some((-14i64) as u64));
        // Without a RunInfo: nothing to report, nothing to override.
        let mut ctx = ctx_of(&[1, 1], 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), EOPNOTSUPP);
        assert_eq!((word(&ctx, 0), word(&ctx, 8)), (0, 0));
    }
}

#[test]
fn uprobe_context_is_pt_regs() {
    // PT_REGS_PARM1(ctx) is di at offset 112, PT_REGS_RC ax at 80, IP at 128.
    let src = "ldxdw %r0, [%r1+112]\nldxdw %r2, [%r1+80]\nadd %r0, %r2\nldxdw %r2, [%r1+128]\nadd %r0, %r2\nexit";
    for vm in vms(src) {
        let mut regs = PtRegs {
            di: 1000,
            ax: 200,
            ip: 30,
            ..PtRegs::default()
        };
        // SAFETY: `regs` is exclusively borrowed for the run.
        let r0 = unsafe {
            vm.run_with(
                (&mut regs as *mut PtRegs).cast(),
                std::mem::size_of::<PtRegs>(),
                &[],
                std::ptr::null_mut(),
            )
        };
        assert_eq!(r0, Ok(1230));
    }
}

/// `get_stack(ctx, stack buf of 64, ctx[0] (size), ctx[8] (flags))`; r0 to
/// ctx[16], the buffer to ctx[24..88].
const STACK_PROGRAM: &str = "
    mov %r6, %r1
    mov %r2, %r10
    add %r2, -64
    ldxdw %r3, [%r6+0]
    ldxdw %r4, [%r6+8]
    call 67
    stxdw [%r6+16], %r0
    ldxdw %r1, [%r10-64]
    stxdw [%r6+24], %r1
    ldxdw %r1, [%r10-56]
    stxdw [%r6+32], %r1
    ldxdw %r1, [%r10-48]
    stxdw [%r6+40], %r1
    ldxdw %r1, [%r10-40]
    stxdw [%r6+48], %r1
    ldxdw %r1, [%r10-32]
    stxdw [%r6+56], %r1
    ldxdw %r1, [%r10-24]
    stxdw [%r6+64], %r1
    mov %r0, 0
    exit";

#[test]
fn get_stack_walks_frame_pointers() {
    const USER: u64 = 1 << 8;
    // Three fake frames: [next fp, return address].
    let mut frames = [0u64; 12];
    let base = frames.as_mut_ptr() as u64;
    frames[0] = base + 32;
    frames[1] = 0x1111;
    frames[4] = base + 64;
    frames[5] = 0x2222;
    frames[8] = 0; // the outermost frame: the walk stops after it
    frames[9] = 0x3333;
    // The helper reads the frames through their address.
    std::hint::black_box(&mut frames);
    let mut regs = PtRegs {
        ip: 0xaaaa,
        bp: base,
        ..PtRegs::default()
    };
    let run = |vm: &Vm, regs: &mut PtRegs, size: u64, flags: u64| -> (u64, Vec<u64>) {
        let mut info = RunInfo {
            regs,
            ..RunInfo::default()
        };
        let mut ctx = ctx_of(&[size, flags], 80);
        run_with_info(vm, &mut ctx, &mut info).unwrap();
        let words = (0..6).map(|i| word(&ctx, 24 + 8 * i)).collect();
        (word(&ctx, 16), words)
    };
    for vm in vms(STACK_PROGRAM) {
        let (r0, w) = run(&vm, &mut regs, 48, USER);
        assert_eq!(r0, 32);
        assert_eq!(w, [0xaaaa, 0x1111, 0x2222, 0x3333, 0, 0]);
        let (r0, w) = run(&vm, &mut regs, 48, USER | 2);
        assert_eq!(r0, 16);
        assert_eq!(w, [0x2222, 0x3333, 0, 0, 0, 0]);
        // A smaller buffer takes the innermost frames.
        let (r0, w) = run(&vm, &mut regs, 16, USER);
        assert_eq!(r0, 16);
        assert_eq!(&w[..2], [0xaaaa, 0x1111]);
        // Errors zero the buffer.
        assert_eq!(run(&vm, &mut regs, 48, USER | 4).0, EFAULT);
        assert_eq!(run(&vm, &mut regs, 48, 0), (EFAULT, vec![0; 6]));
        assert_eq!(run(&vm, &mut regs, 48, USER | (1 << 11)).0, EINVAL);
        assert_eq!(run(&vm, &mut regs, 47, USER).0, EINVAL);
        assert_eq!(run(&vm, &mut regs, 48, USER | (1 << 12)).0, EINVAL);
        // A frame pointing at itself ends the walk; a bad one too.
        let mut looping = [0u64; 2];
        looping[0] = looping.as_ptr() as u64;
        looping[1] = 0x4444;
        let mut regs2 = PtRegs {
            ip: 1,
            bp: looping.as_ptr() as u64,
            ..PtRegs::default()
        };
        assert_eq!(run(&vm, &mut regs2, 48, USER).1[..3], [1, 0x4444, 0]);
        regs2.bp = unmapped_page();
        assert_eq!(run(&vm, &mut regs2, 48, USER), (8, vec![1, 0, 0, 0, 0, 0]));
        // Without registers there is no stack.
        let mut ctx = ctx_of(&[48, USER], 80);
        assert_eq!(vm.run(&mut ctx).map(|_| word(&ctx, 16)), Ok(EFAULT));
    }
}

// ---------------------------------------------------------------------
// signals
// ---------------------------------------------------------------------

static USR1: AtomicU32 = AtomicU32::new(0);
extern "C" fn count_usr1(_: c_int) {
    USR1.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn send_signal_reaches_this_process_and_thread() {
    set_action(libc::SIGUSR1, &action(count_usr1 as *const () as usize, 0));
    let src = "ldxdw %r1, [%r1+0]\ncall 117\nexit";
    for vm in vms(src) {
        let before = USR1.load(Ordering::SeqCst);
        let mut ctx = ctx_of(&[libc::SIGUSR1 as u64], 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), 0);
        // A signal to the calling thread is handled before the helper returns.
        assert_eq!(USR1.load(Ordering::SeqCst), before + 1);
        let mut ctx = ctx_of(&[65], 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), EINVAL);
    }
    let src = "ldxdw %r1, [%r1+0]\ncall 109\nexit";
    for vm in vms(src) {
        let before = USR1.load(Ordering::SeqCst);
        let mut ctx = ctx_of(&[libc::SIGUSR1 as u64], 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), 0);
        // Any thread of the process may take it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while USR1.load(Ordering::SeqCst) == before {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Signal 0 only checks that we may signal.
        let mut ctx = ctx_of(&[0], 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), 0);
        let mut ctx = ctx_of(&[1 << 32 | 65], 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), EINVAL);
    }
}

// ---------------------------------------------------------------------
// bpf_loop and callbacks
// ---------------------------------------------------------------------

/// sum(i for i in 0..ctx[0]) via bpf_loop with the accumulator on the
/// caller's stack; r0 = bpf_loop's result, ctx[8] = the sum, r6-r9 kept.
const LOOP_SUM: &str = "
    mov %r6, %r1
    mov %r7, 77
    stdw [%r10-8], 0
    ldxdw %r1, [%r6+0]
    ldfunc %r2, cb
    mov %r3, %r10
    add %r3, -8
    ldxdw %r4, [%r6+16]
    call 181
    ldxdw %r1, [%r10-8]
    stxdw [%r6+8], %r1
    jeq %r7, 77, +1
    mov %r0, 999
    exit
cb:
    ldxdw %r0, [%r2]
    add %r0, %r1
    stxdw [%r2], %r0
    mov %r6, 1000
    mov %r0, 0
    jne %r1, 1000000, +1
    mov %r0, 1
    exit";

#[test]
fn bpf_loop_runs_the_callback_on_both_engines() {
    for vm in vms(LOOP_SUM) {
        let run = |n: u64, flags: u64| {
            let mut ctx = ctx_of(&[n, 0, flags], 0);
            let r0 = vm.run(&mut ctx).unwrap();
            (r0, word(&ctx, 8))
        };
        assert_eq!(run(10, 0), (10, 45));
        assert_eq!(run(0, 0), (0, 0));
        // The index 1,000,000 makes the callback return 1: stop after it.
        assert_eq!(run(1 << 23, 0), (1_000_001, 499_999_500_000 + 1_000_000));
        assert_eq!(run((1 << 23) + 1, 0), (E2BIG, 0));
        // nr_loops is a u32.
        assert_eq!(run((1 << 32) | 3, 0), (3, 3));
        assert_eq!(run(3, 1), (EINVAL, 0));
    }
}

#[test]
fn nested_callbacks() {
    // outer loop i in 0..ctx[0]: inner loop j in 0..i: count += 1; also
    // add i * 100 to the count from the outer callback.
    let src = "
        mov %r6, %r1
        stdw [%r10-8], 0
        ldxdw %r1, [%r6+0]
        ldfunc %r2, outer
        mov %r3, %r10
        add %r3, -8
        mov %r4, 0
        call 181
        ldxdw %r0, [%r10-8]
        exit
    outer:
        mov %r6, %r2
        ldxdw %r3, [%r6]
        mov %r4, %r1
        mul %r4, 100
        add %r3, %r4
        stxdw [%r6], %r3
        ldfunc %r2, inner
        mov %r3, %r6
        mov %r4, 0
        call 181
        mov %r0, 0
        exit
    inner:
        ldxdw %r3, [%r2]
        add %r3, 1
        stxdw [%r2], %r3
        mov %r0, 0
        exit";
    for vm in vms(src) {
        let mut ctx = ctx_of(&[5], 0);
        // sum(i*100) + sum(i) for i in 0..5 = 1000 + 10.
        assert_eq!(vm.run(&mut ctx).unwrap(), 1010);
    }
}

#[test]
fn callbacks_share_the_call_depth_limit() {
    // A callback that calls bpf_loop on itself: each level is a frame.
    let src = "
        mov %r1, 1
        ldfunc %r2, cb
        mov %r3, 0
        mov %r4, 0
        call 181
        exit
    cb:
        mov %r1, 1
        ldfunc %r2, cb
        mov %r3, 0
        mov %r4, 0
        call 181
        mov %r0, 0
        exit";
    let errors: Vec<_> = vms(src)
        .iter()
        .map(|vm| vm.run(&mut []).unwrap_err())
        .collect();
    assert_eq!(errors[0], errors[1]);
    assert!(
        matches!(errors[0], VmError::CallDepthExceeded { pc: 7, max: 8 }),
        "{:?}",
        errors[0]
    );
}

#[test]
fn a_bad_callback_token_is_refused() {
    // A number that is no token, and a token of another program.
    let src = "mov %r1, 3\nlddw %r2, 0x12345678\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit";
    for vm in vms(src) {
        assert_eq!(vm.run(&mut []).unwrap(), EINVAL);
    }
    // Tokens are only good in the run of their own program.
    let leak = "ldfunc %r0, cb\nexit\ncb:\nmov %r0, 0\nexit";
    for engine in ENGINES {
        let token = vm(leak, engine).run(&mut []).unwrap();
        let use_it =
            format!("mov %r1, 3\nlddw %r2, {token:#x}\nmov %r3, 0\nmov %r4, 0\ncall 181\nexit");
        assert_eq!(vm(&use_it, engine).run(&mut []).unwrap(), EINVAL);
    }
}

#[test]
fn a_failing_callback_ends_the_run() {
    // The interpreter stops a callback that writes outside its memory.
    let src = "
        mov %r1, 2
        ldfunc %r2, cb
        mov %r3, 0
        mov %r4, 0
        call 181
        mov %r0, 5
        exit
    cb:
        stdw [%r2+0], 1
        mov %r0, 0
        exit";
    let err = vm(src, Engine::Interpreter).run(&mut []).unwrap_err();
    assert!(
        matches!(err, VmError::MemoryViolation { pc: 8, addr: 0, .. }),
        "{err:?}"
    );
    // An instruction budget covers the callbacks too.
    let options = VmOptions {
        engine: Engine::Interpreter,
        instruction_limit: Some(1000),
    };
    let vm = Vm::from_insns(assemble(LOOP_SUM), registry(), options).unwrap();
    let mut ctx = ctx_of(&[1000, 0, 0], 0);
    assert!(matches!(
        vm.run(&mut ctx),
        Err(VmError::InstructionLimit { limit: 1000, .. })
    ));
    let mut ctx = ctx_of(&[10, 0, 0], 0);
    assert_eq!(vm.run(&mut ctx), Ok(10));
}

// ---------------------------------------------------------------------
// trace_printk, in a child with its own namespace directory
// ---------------------------------------------------------------------

const PRINTK: &str = "
    mov %r6, %r1
    mov %r1, %r6
    add %r1, 24
    ldxdw %r2, [%r6+0]
    ldxdw %r3, [%r6+8]
    ldxdw %r4, [%r6+16]
    mov %r5, 0
    call 6
    exit";

fn printk_ctx(fmt: &str, a: u64, b: u64) -> Vec<u8> {
    let mut ctx = ctx_of(&[fmt.len() as u64 + 1, a, b], 64);
    ctx[24..24 + fmt.len()].copy_from_slice(fmt.as_bytes());
    ctx
}

fn trace_pipe_scenario() {
    let dir = std::env::var("USERBPF_DIR").unwrap();
    let pipe = std::path::Path::new(&dir).join("trace_pipe");
    let world = b"world\0";
    for engine in ENGINES {
        let vm = vm(PRINTK, engine);
        // No reader: the message is dropped at once, the FIFO is created.
        let mut ctx = printk_ctx("nobody %d", 1, 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), 8);
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&pipe).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let path = std::ffi::CString::new(pipe.to_str().unwrap()).unwrap();
        // SAFETY: a valid path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
        assert!(fd >= 0);
        let mut ctx = printk_ctx("hello %d from %s\n", 42, world.as_ptr() as u64);
        assert_eq!(vm.run(&mut ctx).unwrap(), 20);
        let mut ctx = printk_ctx("bad %q", 0, 0);
        assert_eq!(vm.run(&mut ctx).unwrap(), EINVAL);
        let mut buf = [0u8; 512];
        // SAFETY: reads into `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n > 0);
        let text = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
        // SAFETY: closes our descriptor.
        unsafe { libc::close(fd) };
        // "<comm>-<tid> [<cpu>] d..1. <secs>.<usecs>: bpf_trace_printk: <msg>"
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            text.ends_with(": bpf_trace_printk: hello 42 from world\n"),
            "{text:?}"
        );
        let (head, rest) = text.split_at(16);
        assert!(
            head.trim_start().len() <= 15 && !head.trim_start().is_empty(),
            "{text:?}"
        );
        let tid = gettid().to_string();
        assert!(rest.starts_with(&format!("-{tid:<7} [")), "{text:?}");
        let stamp = rest
            .split("d..1. ")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        let (secs, usecs) = stamp.trim().split_once('.').unwrap();
        assert!(secs.parse::<u64>().is_ok() && usecs.len() == 6, "{text:?}");
        say("trace pipe ok\n");
    }
    // SAFETY: exits at once.
    unsafe { libc::_exit(0) };
}

#[test]
fn trace_printk_reaches_a_fifo_reader() {
    if std::env::var(CHILD_ENV).is_ok() {
        trace_pipe_scenario();
        return;
    }
    let dir = std::env::temp_dir().join(format!("userbpf-helpers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = run_child(
        "trace_printk_reaches_a_fifo_reader",
        "trace-pipe",
        &[("USERBPF_DIR", dir.to_str().unwrap())],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.matches("trace pipe ok").count() == 2,
        "{:?}\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

// ---------------------------------------------------------------------
// cost
// ---------------------------------------------------------------------

/// CPU time of this thread (the machine may be shared: wall time would
/// count other processes' time slices).
struct CpuTimer(u64);

impl CpuTimer {
    fn start() -> CpuTimer {
        CpuTimer(clock(libc::CLOCK_THREAD_CPUTIME_ID))
    }
    fn ns_per(&self, n: u64) -> f64 {
        (clock(libc::CLOCK_THREAD_CPUTIME_ID) - self.0) as f64 / n as f64
    }
}

/// Prints ns per call of the hot helpers (thread CPU time); run with
/// `--ignored --nocapture`.
#[test]
#[ignore]
fn helper_costs() {
    let data = [7u8; 64];
    let mut dst = [0u8; 64];
    let n = 10_000_000u64;
    let t = CpuTimer::start();
    for _ in 0..n {
        // SAFETY: valid buffers.
        unsafe {
            safe_mem::safe_read(
                std::hint::black_box(dst.as_mut_ptr()),
                std::hint::black_box(data.as_ptr()),
                16,
            )
        }
        .unwrap();
    }
    println!("safe_read 16 B: {:.2} ns", t.ns_per(n));
    let t = CpuTimer::start();
    for _ in 0..n {
        // SAFETY: valid buffers, no env (as the JIT passes an unchecked one).
        unsafe {
            userbpf_runtime::helpers::probe::bpf_probe_read_user(
                std::hint::black_box(dst.as_mut_ptr() as u64),
                16,
                std::hint::black_box(data.as_ptr() as u64),
                0,
                0,
                std::ptr::null_mut(),
            )
        };
    }
    println!(
        "bpf_probe_read_user 16 B (direct call): {:.2} ns",
        t.ns_per(n)
    );
    // From a JIT-compiled loop: 1000 calls per run.
    let body = |call: &str| {
        format!("mov %r6, %r1\nmov %r7, 1000\nloop:\n{call}\nsub %r7, 1\njne %r7, 0, loop\nexit")
    };
    let read16 = "mov %r1, %r10\nadd %r1, -16\nmov %r2, 16\nldxdw %r3, [%r6+0]\ncall 112";
    let empty = "mov %r0, 0";
    let per_call = |src: &str| {
        let vm = vm(&body(src), Engine::Jit);
        let mut ctx = ctx_of(&[data.as_ptr() as u64], 0);
        let runs = 20_000;
        let t = CpuTimer::start();
        for _ in 0..runs {
            vm.run(&mut ctx).unwrap();
        }
        t.ns_per(runs * 1000)
    };
    let base = per_call(empty);
    println!("JIT loop overhead: {base:.2} ns/iteration");
    println!(
        "JIT probe_read_user 16 B: {:.2} ns",
        per_call(read16) - base
    );
    for (name, id) in [
        ("ktime_get_ns", 5),
        ("ktime_get_coarse_ns", 160),
        ("get_current_pid_tgid", 14),
        ("get_current_uid_gid", 15),
        ("get_smp_processor_id", 8),
        ("get_prandom_u32", 7),
        ("jiffies64", 118),
    ] {
        println!(
            "JIT {name}: {:.2} ns",
            per_call(&format!("call {id}")) - base
        );
    }
    let comm = "mov %r1, %r10\nadd %r1, -16\nmov %r2, 16\ncall 16";
    println!("JIT get_current_comm: {:.2} ns", per_call(comm) - base);
    let strncmp = "mov %r1, %r10\nadd %r1, -16\nmov %r2, 16\nmov %r3, %r10\nadd %r3, -32\ncall 182";
    println!("JIT strncmp 16 B: {:.2} ns", per_call(strncmp) - base);
    let lp = "mov %r1, 1\nldfunc %r2, cb\nmov %r3, 0\nmov %r4, 0\ncall 181";
    let src = format!("{}\ncb:\nmov %r0, 0\nexit", body(lp));
    let loop_vm = vm(&src, Engine::Jit);
    let mut ctx = ctx_of(&[0], 0);
    let t = CpuTimer::start();
    for _ in 0..20_000 {
        loop_vm.run(&mut ctx).unwrap();
    }
    println!(
        "JIT bpf_loop with 1 iteration: {:.2} ns",
        t.ns_per(20_000_000) - base
    );
    let interp = |src: &str| {
        let vm = vm(&body(src), Engine::Interpreter);
        let mut ctx = ctx_of(&[data.as_ptr() as u64], 0);
        let t = CpuTimer::start();
        for _ in 0..2_000 {
            vm.run(&mut ctx).unwrap();
        }
        t.ns_per(2_000_000)
    };
    let ibase = interp(empty);
    println!(
        "interpreter probe_read_user 16 B: {:.2} ns",
        interp(read16) - ibase
    );
    let gone = unmapped_page();
    let t = CpuTimer::start();
    for _ in 0..10_000 {
        // SAFETY: the fault is recovered.
        let _ = unsafe { safe_mem::safe_read(dst.as_mut_ptr(), gone as *const u8, 16) };
    }
    println!("safe_read of a bad pointer: {:.0} ns", t.ns_per(10_000));
}
