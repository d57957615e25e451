//! Syscall rewriting against this process's own libc: after
//! `Rewriter::refresh` every syscall a libc wrapper makes reaches the
//! dispatcher (seen through its test observer), with unchanged results and
//! errno; threads, fork, vfork and restarted signals keep working; a
//! library loaded later is rewritten by the next refresh (jump sites, a
//! trap site, adjacent sites, a signal-return shape left alone); `clear`
//! puts every byte back.
//!
//! One test function: the hooks are process-wide.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::ffi::CString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use userbpf_agent::syscall::dispatch::set_test_observer;
use userbpf_agent::syscall::rewrite::{Rewriter, SiteKind};
use userbpf_agent::syscall::scan;

const NR_MAX: usize = 512;
static COUNTS: [AtomicU64; NR_MAX] = [const { AtomicU64::new(0) }; NR_MAX];

fn observe(nr: u64) {
    if let Some(c) = COUNTS.get(nr as usize) {
        c.fetch_add(1, Relaxed);
    }
}

fn count(nr: i64) -> u64 {
    COUNTS[nr as usize].load(Relaxed)
}

/// How many times `nr` was dispatched while `f` ran, and `f`'s result.
fn seen<R>(nr: i64, f: impl FnOnce() -> R) -> (u64, R) {
    let before = count(nr);
    let r = f();
    (count(nr) - before, r)
}

fn errno() -> i32 {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = v };
}

/// Builds tests/syscall_rewrite/sites.c into `name` (a name per test: they
/// run in parallel).
fn build_sites_lib(name: &str) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/syscall_rewrite/sites.c");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let st = Command::new("gcc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc failed");
    out
}

/// The address of the `n`th `syscall` instruction (0f 05) in the first 64
/// bytes of `f`.
fn syscall_in(f: usize, n: usize) -> usize {
    // SAFETY: the function's text is mapped (it was just resolved).
    let b = unsafe { core::slice::from_raw_parts(f as *const u8, 64) };
    b.windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0x0f, 0x05])
        .nth(n)
        .map(|(i, _)| f + i)
        .expect("syscall instruction")
}

/// The 8 bytes before `addr` and the 8 from it on.
fn around(addr: usize) -> [u8; 16] {
    // SAFETY: module text, mapped (the sites are not at a text edge).
    unsafe { ((addr - 8) as *const [u8; 16]).read_unaligned() }
}

fn code_at(addr: usize) -> [u8; 8] {
    // SAFETY: module text, mapped.
    unsafe { (addr as *const [u8; 8]).read_unaligned() }
}

/// The exported symbol at or before `addr` (diagnostics).
fn symbol(addr: usize) -> String {
    // SAFETY: dladdr fills `info` on success.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(addr as *const libc::c_void, &mut info) != 0 && !info.dli_sname.is_null() {
            let name = std::ffi::CStr::from_ptr(info.dli_sname).to_string_lossy();
            return format!("{name}+{:#x}", addr - info.dli_saddr as usize);
        }
    }
    "?".into()
}

/// glibc's getppid: `mov $110,%eax; syscall; ret`, which touches no
/// register but rax, rcx and r11 (and keeps the flags).
const GETPPID_BARE: [u8; 8] = [0xb8, 0x6e, 0, 0, 0, 0x0f, 0x05, 0xc3];

/// Calls `f` (a [`GETPPID_BARE`] function) with every general register
/// the syscall keeps, xmm0-15, CF and ZF set to known values, and checks
/// them afterwards (ymm upper halves too, with AVX). Returns the calls
/// made.
fn registers_survive(f: usize, ppid: libc::pid_t) -> u64 {
    use core::arch::x86_64::*;
    let want: [u64; 10] = core::array::from_fn(|i| 0x1111_2222_0000_0000 + i as u64);
    let mut g = want;
    let xw: [u64; 16] = core::array::from_fn(|i| 0xa5a5_0000_0000_0000 + i as u64);
    // SAFETY: SSE2 is baseline on x86-64.
    let mk = |i: usize| unsafe { _mm_set_epi64x(xw[i] as i64, !xw[i] as i64) };
    let mut x: [__m128i; 16] = core::array::from_fn(mk);
    let (ret, cf, zf): (u64, u64, u64);
    // SAFETY: `f` is libc's getppid (checked bytes); it changes rax, rcx
    // and r11 only, which are declared clobbered. The stack is aligned
    // (the asm block's entry).
    unsafe {
        core::arch::asm!(
            "cmp rax, rax", // ZF = 1
            "stc",          // CF = 1
            "call rax",
            "setc cl",
            "movzx ecx, cl",
            "setz r11b",
            "movzx r11d, r11b",
            inout("rax") f as u64 => ret,
            out("rcx") cf,
            out("r11") zf,
            inout("rdi") g[0],
            inout("rsi") g[1],
            inout("rdx") g[2],
            inout("r8") g[3],
            inout("r9") g[4],
            inout("r10") g[5],
            inout("r12") g[6],
            inout("r13") g[7],
            inout("r14") g[8],
            inout("r15") g[9],
            inout("xmm0") x[0], inout("xmm1") x[1], inout("xmm2") x[2], inout("xmm3") x[3],
            inout("xmm4") x[4], inout("xmm5") x[5], inout("xmm6") x[6], inout("xmm7") x[7],
            inout("xmm8") x[8], inout("xmm9") x[9], inout("xmm10") x[10], inout("xmm11") x[11],
            inout("xmm12") x[12], inout("xmm13") x[13], inout("xmm14") x[14], inout("xmm15") x[15],
        )
    };
    assert_eq!(ret as i64, i64::from(ppid));
    assert_eq!((cf, zf), (1, 1), "flags");
    assert_eq!(g, want, "general registers");
    for (i, v) in x.iter().enumerate() {
        // SAFETY: plain 128-bit values.
        let got: [u64; 2] = unsafe { core::mem::transmute(*v) };
        assert_eq!(got, [!xw[i], xw[i]], "xmm{i}");
    }
    if !std::is_x86_feature_detected!("avx") {
        return 1;
    }
    // SAFETY: AVX is present.
    unsafe { ymm_survive(f) };
    2
}

/// The upper halves of ymm0-15 across a call of `f` (see
/// [`registers_survive`]).
#[target_feature(enable = "avx")]
unsafe fn ymm_survive(f: usize) {
    use core::arch::x86_64::*;
    let w: [i64; 16] = core::array::from_fn(|i| 0x5a5a_0000_0000_0000 + i as i64);
    let mut y: [__m256i; 16] = core::array::from_fn(|i| _mm256_set_epi64x(w[i], 1, 2, !w[i]));
    // SAFETY: as in registers_survive.
    unsafe {
        core::arch::asm!(
            "call {f}",
            f = in(reg) f,
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            inout("ymm0") y[0], inout("ymm1") y[1], inout("ymm2") y[2], inout("ymm3") y[3],
            inout("ymm4") y[4], inout("ymm5") y[5], inout("ymm6") y[6], inout("ymm7") y[7],
            inout("ymm8") y[8], inout("ymm9") y[9], inout("ymm10") y[10], inout("ymm11") y[11],
            inout("ymm12") y[12], inout("ymm13") y[13], inout("ymm14") y[14], inout("ymm15") y[15],
        )
    };
    for (i, v) in y.iter().enumerate() {
        // SAFETY: plain 256-bit values.
        let got: [i64; 4] = unsafe { core::mem::transmute(*v) };
        assert_eq!(got, [!w[i], 2, 1, w[i]], "ymm{i}");
    }
}

/// Threads running syscalls while the sites are patched.
struct Busy {
    stop: std::sync::Arc<AtomicBool>,
    looping: std::thread::JoinHandle<u64>,
    reader: std::thread::JoinHandle<(isize, u8)>,
    wfd: libc::c_int,
    rfd: libc::c_int,
}

impl Busy {
    fn start(ppid: libc::pid_t) -> Busy {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let looping = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Relaxed) {
                // SAFETY: no preconditions.
                assert_eq!(unsafe { libc::getppid() }, ppid);
                n += 1;
            }
            n
        });
        let mut fds = [0; 2];
        // SAFETY: room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let rfd = fds[0];
        let reader = std::thread::spawn(move || {
            let mut b = 0u8;
            // SAFETY: one byte into `b`.
            let n = unsafe { libc::read(rfd, (&mut b as *mut u8).cast(), 1) };
            (n, b)
        });
        std::thread::sleep(Duration::from_millis(30));
        Busy {
            stop,
            looping,
            reader,
            wfd: fds[1],
            rfd,
        }
    }

    fn finish(self) {
        std::thread::sleep(Duration::from_millis(10));
        self.stop.store(true, Relaxed);
        let n = self.looping.join().unwrap();
        assert!(n > 0);
        // SAFETY: one byte from a literal.
        assert_eq!(unsafe { libc::write(self.wfd, b"z".as_ptr().cast(), 1) }, 1);
        assert_eq!(self.reader.join().unwrap(), (1, b'z'));
        // SAFETY: our descriptors.
        unsafe {
            libc::close(self.rfd);
            libc::close(self.wfd);
        }
    }
}

static SIG_HIT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    SIG_HIT.store(true, SeqCst);
    // A syscall from the signal handler while the thread is blocked in one.
    // SAFETY: async-signal-safe.
    unsafe { libc::getppid() };
}

/// A thread blocked in `read` on a pipe gets SIGUSR1 (installed with
/// `flags`), then a byte: the read's raw result and errno.
fn read_interrupted(flags: libc::c_int) -> (isize, i32, u8) {
    SIG_HIT.store(false, SeqCst);
    // SAFETY: plain libc calls on local data.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()),
            0
        );
    }
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (rfd, wfd) = (fds[0], fds[1]);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut b = 0u8;
        // SAFETY: one byte into `b`.
        let n = unsafe { libc::read(rfd, (&mut b as *mut u8).cast(), 1) };
        (n, errno(), b)
    });
    let t = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: the reader thread is alive until joined.
    assert_eq!(unsafe { libc::pthread_kill(t, libc::SIGUSR1) }, 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !SIG_HIT.load(SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(SIG_HIT.load(SeqCst), "the signal handler ran");
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: one byte from a local.
    assert_eq!(unsafe { libc::write(wfd, b"x".as_ptr().cast(), 1) }, 1);
    let r = reader.join().unwrap();
    // SAFETY: our descriptors.
    unsafe {
        libc::close(rfd);
        libc::close(wfd);
    }
    r
}

#[test]
fn libc_syscalls_go_through_the_dispatcher() {
    let lib_path = build_sites_lib("syscall_rewrite_sites.so");
    // SAFETY: no preconditions.
    let ppid = unsafe { libc::getppid() };

    // The original bytes of every site, to compare after clear().
    let t_scan = Instant::now();
    let sites = scan::syscall_sites();
    eprintln!("scan alone: {:?}, {} sites", t_scan.elapsed(), sites.len());
    let before: Vec<(usize, [u8; 8])> = sites.iter().map(|s| (s.addr, code_at(s.addr))).collect();
    assert!(!before.is_empty());

    // While the sites are patched: one thread makes syscalls in a loop,
    // another is blocked in `read` (it returns into the patched code).
    let busy = Busy::start(ppid);
    let redirects = userbpf_agent::hook::trap_redirects();
    let getppid_fn = libc::getppid as *const () as usize;
    let getppid_is_bare = code_at(getppid_fn) == GETPPID_BARE;

    set_test_observer(Some(observe));
    let mut rw = Rewriter::new();
    let t0 = Instant::now();
    let st = rw.refresh();
    let took = t0.elapsed();
    eprintln!("refresh: {took:?} {st:?}");
    busy.finish();
    eprintln!(
        "threads sent on from a patch's int3: {}",
        userbpf_agent::hook::trap_redirects() - redirects
    );
    for (name, s) in rw.stats_by_module() {
        eprintln!("  {name:?}: {s:?}");
    }
    for (a, e) in rw.refusals() {
        eprintln!("  refused {a:#x} ({}): {e}", symbol(*a));
    }
    assert!(st.modules >= 2, "libc and ld.so at least");
    assert!(st.jump_sites > 50, "{st:?}");
    assert_eq!(st.jump_sites + st.refused, st.sites);
    assert_eq!(st.trap_sites, 0, "no trap sites by default");
    let libc_stats = rw
        .stats_by_module()
        .into_iter()
        .find(|(n, _)| n.contains("libc.so"))
        .expect("libc scanned")
        .1;
    assert!(libc_stats.excluded >= 1, "__restore_rt left alone");

    // Idempotent.
    let t1 = Instant::now();
    assert_eq!(rw.refresh(), st);
    eprintln!("second refresh: {:?}", t1.elapsed());

    // Cost per call (diagnostics): a jump site in libc's getppid.
    let per_call = || {
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: no preconditions.
            std::hint::black_box(unsafe { libc::getppid() });
        }
        t.elapsed() / n
    };
    let hooked = per_call();

    // getppid: seen, same result, errno untouched on success.
    set_errno(77);
    // SAFETY: no preconditions.
    let (n, got) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
    assert_eq!((n, got, errno()), (1, ppid, 77));

    // Registers: at a hooked site the call is made from the hook's
    // trampoline; everything the `syscall` instruction keeps is kept.
    if getppid_is_bare {
        assert_eq!(
            rw.site_kind(syscall_in(getppid_fn, 0)),
            Some(SiteKind::Setup)
        );
        let (n, calls) = seen(libc::SYS_getppid, || registers_survive(getppid_fn, ppid));
        assert_eq!(n, calls);
    } else {
        eprintln!("note: getppid is not `mov $110,%eax; syscall; ret`: registers not checked");
    }

    // openat of a missing file: -1 / ENOENT, as without the hooks.
    let missing = CString::new("/nonexistent/userbpf-rewrite").unwrap();
    // SAFETY: a valid path.
    let (n, fd) = seen(libc::SYS_openat, || unsafe {
        libc::open(missing.as_ptr(), libc::O_RDONLY)
    });
    assert_eq!((n, fd, errno()), (1, -1, libc::ENOENT));

    // write, then read back through a real file.
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("syscall_rewrite.txt");
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    let (n, fd) = seen(libc::SYS_openat, || unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        )
    });
    assert_eq!(n, 1);
    assert!(fd >= 0);
    // SAFETY: 5 bytes from a literal.
    let (n, w) = seen(libc::SYS_write, || unsafe {
        libc::write(fd, b"hello".as_ptr().cast(), 5)
    });
    assert_eq!((n, w), (1, 5));
    // SAFETY: our descriptor.
    assert_eq!(unsafe { libc::lseek(fd, 0, libc::SEEK_SET) }, 0);
    let mut buf = [0u8; 16];
    // SAFETY: into `buf`.
    let (n, r) = seen(libc::SYS_read, || unsafe {
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
    });
    assert_eq!((n, r, &buf[..5]), (1, 5, &b"hello"[..]));
    // read on a closed descriptor: -1 / EBADF.
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    // SAFETY: as above.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 1) };
    assert_eq!((r, errno()), (-1, libc::EBADF));

    // A thread: clone3 runs natively (the dispatcher saw it).
    let (n, v) = seen(libc::SYS_clone3, || {
        std::thread::spawn(|| {
            // SAFETY: no preconditions.
            unsafe { libc::getppid() }
        })
        .join()
        .unwrap()
    });
    assert_eq!((n, v), (1, ppid));

    // fork + waitpid.
    // SAFETY: the child only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe.
        unsafe { libc::_exit(7) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7);

    // vfork + _exit.
    #[allow(deprecated)]
    // SAFETY: the child only calls _exit, on the parent's stack.
    let (n, pid) = seen(libc::SYS_vfork, || unsafe {
        let pid = libc::vfork();
        if pid == 0 {
            libc::_exit(3);
        }
        pid
    });
    assert_eq!(n, 1);
    assert!(pid > 0);
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3);
    // The child ran its `_exit` through the hooks on this thread's TLS:
    // they still run here.
    // SAFETY: no preconditions.
    assert_eq!(
        seen(libc::SYS_getppid, || unsafe { libc::getppid() }),
        (1, ppid)
    );

    // posix_spawn (clone with CLONE_VM | CLONE_VFORK on its own stack).
    let st_true = Command::new("/bin/true").status().unwrap();
    assert!(st_true.success());
    // SAFETY: no preconditions.
    assert_eq!(
        seen(libc::SYS_getppid, || unsafe { libc::getppid() }),
        (1, ppid)
    );

    // A blocking read interrupted by a signal: restarted with SA_RESTART,
    // EINTR without.
    let (n, r) = seen(libc::SYS_read, || read_interrupted(libc::SA_RESTART));
    assert_eq!(r, (1, 0, b'x'));
    assert!(n >= 1);
    let r = read_interrupted(0);
    assert_eq!((r.0, r.1), (-1, libc::EINTR));

    // A library loaded later: the next refresh rewrites it.
    let clib = CString::new(lib_path.to_str().unwrap()).unwrap();
    // SAFETY: our test library, whose constructors do nothing.
    let h = unsafe { libc::dlopen(clib.as_ptr(), libc::RTLD_NOW) };
    assert!(!h.is_null());
    let sym = |name: &str| {
        let c = CString::new(name).unwrap();
        // SAFETY: a valid handle and name.
        let p = unsafe { libc::dlsym(h, c.as_ptr()) };
        assert!(!p.is_null(), "{name}");
        p as usize
    };
    let f_setup = sym("setup_getppid");
    let f_jump = sym("jump_site_getppid");
    let f_trap = sym("trap_site_getppid");
    let f_loop = sym("loop_to_syscall");
    let f_yields = sym("two_yields");
    let f_restorer = sym("restorer_shape");
    let lib_sites = [
        syscall_in(f_setup, 0),
        syscall_in(f_jump, 0),
        syscall_in(f_trap, 0),
        syscall_in(f_loop, 0),
        syscall_in(f_yields, 0),
        syscall_in(f_yields, 1),
        syscall_in(f_restorer, 0),
    ];
    let lib_before: Vec<[u8; 16]> = lib_sites.iter().map(|&a| around(a)).collect();
    let st2 = rw.refresh();
    eprintln!("after dlopen: {st2:?}");
    assert!(st2.modules > st.modules);
    assert_eq!(st2.jump_sites, st.jump_sites + 4, "{st2:?}");
    assert_eq!(st2.setup_sites, st.setup_sites + 1, "{st2:?}");
    use SiteKind::*;
    let kinds = |r: &Rewriter| lib_sites.map(|a| r.site_kind(a));
    assert_eq!(
        kinds(&rw),
        [
            Some(Setup), // `mov $110, %eax` right before
            Some(Jump),  // a `nop` between
            None,        // a branch lands after it: no jump fits
            Some(Jump),  // a branch to the syscall itself
            Some(Jump),  // ... whose jump displaces the next one
            None,
            None, // signal-return shape
        ]
    );
    // A setup hook leaves the syscall and what follows in place.
    assert_eq!(around(lib_sites[0])[3], 0xe9);
    assert_eq!(around(lib_sites[0])[8..], lib_before[0][8..]);
    assert_eq!(around(lib_sites[1])[8], 0xe9);
    assert_eq!(around(lib_sites[2]), lib_before[2]);
    assert_eq!(around(lib_sites[6]), lib_before[6]);

    // SAFETY: the functions' C signatures.
    let (setup, jump, trap, loop_, yields) = unsafe {
        type F0 = extern "C" fn() -> libc::c_long;
        type F1 = extern "C" fn(libc::c_long) -> libc::c_long;
        (
            core::mem::transmute::<usize, F0>(f_setup),
            core::mem::transmute::<usize, F0>(f_jump),
            core::mem::transmute::<usize, F1>(f_trap),
            core::mem::transmute::<usize, F1>(f_loop),
            core::mem::transmute::<usize, F0>(f_yields),
        )
    };
    let ppid = ppid as libc::c_long;
    assert_eq!(seen(libc::SYS_getppid, || setup()), (1, ppid));
    assert_eq!(seen(libc::SYS_getppid, || jump()), (1, ppid));
    assert_eq!(seen(libc::SYS_getppid, || trap(4)), (0, 3 * ppid));
    assert_eq!(seen(libc::SYS_getppid, || loop_(3)), (3, 3 * ppid));
    // The second runs natively in the first one's trampoline.
    assert_eq!(seen(libc::SYS_sched_yield, || yields()), (1, 0));

    // clear: every byte back, nothing dispatched any more.
    rw.clear();
    assert_eq!(rw.stats().jump_sites + rw.stats().trap_sites, 0);
    for (a, b) in &before {
        assert_eq!(code_at(*a), *b, "site {a:#x} restored");
    }
    for (a, b) in lib_sites.iter().zip(&lib_before) {
        assert_eq!(around(*a), *b, "site {a:#x} restored");
    }
    // SAFETY: no preconditions.
    let (n, got) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
    assert_eq!((n, got as libc::c_long), (0, ppid));
    eprintln!("getppid: {hooked:?} hooked, {:?} native", per_call());
    assert_eq!(seen(libc::SYS_getppid, || setup()), (0, ppid));
    assert_eq!(seen(libc::SYS_getppid, || jump()), (0, ppid));

    // Trap sites, in the test library only (its code never runs with
    // SIGTRAP blocked).
    let mut tr = Rewriter::new();
    tr.set_trap_sites(true);
    tr.set_module_filter(Some(Box::new(|name: &str| {
        name.contains("syscall_rewrite_sites")
    })));
    let st4 = tr.refresh();
    eprintln!("trap sites allowed, test library only: {st4:?}");
    assert_eq!((st4.modules, st4.jump_sites, st4.trap_sites), (1, 4, 2));
    assert_eq!(
        kinds(&tr),
        [
            Some(Setup),
            Some(Jump),
            Some(Trap),
            Some(Jump),
            Some(Trap), // lets the next one be hooked
            Some(Jump),
            None,
        ]
    );
    assert_eq!(code_at(lib_sites[2])[0], 0xcc);
    assert_eq!(code_at(lib_sites[4])[0], 0xcc);
    assert_eq!(seen(libc::SYS_getppid, || setup()), (1, ppid));
    assert_eq!(seen(libc::SYS_getppid, || trap(4)), (3, 3 * ppid));
    assert_eq!(seen(libc::SYS_sched_yield, || yields()), (2, 0));
    // libc untouched by this one.
    // SAFETY: no preconditions.
    assert_eq!(seen(libc::SYS_getppid, || unsafe { libc::getppid() }).0, 0);
    tr.clear();
    for (a, b) in lib_sites.iter().zip(&lib_before) {
        assert_eq!(around(*a), *b, "site {a:#x} restored");
    }

    // And the first one again after its clear.
    let st3 = rw.refresh();
    assert_eq!(st3, st2);
    // SAFETY: no preconditions.
    let (n, _) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
    assert_eq!(n, 1);
    assert_eq!(seen(libc::SYS_getppid, || setup()), (1, ppid));

    // The library unloaded and loaded again (often at the same address,
    // with fresh code): the next refresh hooks it again.
    // SAFETY: nothing of the library is in use.
    assert_eq!(unsafe { libc::dlclose(h) }, 0);
    // SAFETY: as for the first dlopen.
    let h = unsafe { libc::dlopen(clib.as_ptr(), libc::RTLD_NOW) };
    assert!(!h.is_null());
    let c = CString::new("setup_getppid").unwrap();
    // SAFETY: a valid handle and name; the function's C signature.
    let setup2: extern "C" fn() -> libc::c_long =
        unsafe { core::mem::transmute(libc::dlsym(h, c.as_ptr())) };
    let st5 = rw.refresh();
    assert_eq!(st5, st2);
    assert_eq!(seen(libc::SYS_getppid, || setup2()), (1, ppid));
    rw.clear();
    set_test_observer(None);
}

/// Loads the test library and resolves `name` in it.
fn lib_fn(path: &std::path::Path, name: &str) -> usize {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: our test library, whose constructors do nothing.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
    assert!(!h.is_null());
    let n = CString::new(name).unwrap();
    // SAFETY: a valid handle and name.
    let p = unsafe { libc::dlsym(h, n.as_ptr()) };
    assert!(!p.is_null(), "{name}");
    p as usize
}

/// With Syscall User Dispatch on as well (the agent's configuration): a
/// hooked site is dispatched once, without a SIGSYS; a site the rewriter
/// refused reaches the dispatcher through SIGSYS; the native paths (a
/// thread's clone3, vfork through the rewriter's thunk, posix_spawn) work
/// under both. SUD is process-wide: the body runs in a child process.
#[test]
fn rewriter_with_sud() {
    const VAR: &str = "USERBPF_REWRITE_SUD_CHILD";
    if std::env::var_os(VAR).is_none() {
        let lib = build_sites_lib("syscall_rewrite_sud_sites.so");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "rewriter_with_sud",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(VAR, &lib)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "child failed: {:?}\n{stdout}{stderr}",
            out.status
        );
        assert!(stdout.contains("1 passed"), "{stdout}{stderr}");
        return;
    }
    use userbpf_agent::syscall::sud;
    let lib = PathBuf::from(std::env::var_os(VAR).unwrap());
    // SAFETY: no preconditions.
    let ppid = unsafe { libc::getppid() } as libc::c_long;
    let f_trap = lib_fn(&lib, "trap_site_getppid");
    // SAFETY: its C signature.
    let trap: extern "C" fn(libc::c_long) -> libc::c_long = unsafe { core::mem::transmute(f_trap) };

    set_test_observer(Some(observe));
    if let Err(e) = sud::try_activate() {
        eprintln!("no SUD here ({e}): nothing to test");
        return;
    }
    let mut rw = Rewriter::new();
    let st = rw.refresh();
    assert!(st.jump_sites > 50);
    assert_eq!(rw.site_kind(syscall_in(f_trap, 0)), None, "refused");

    // A hooked site: dispatched once, no SIGSYS.
    let sigsys = sud::sigsys_count();
    // SAFETY: no preconditions.
    let (n, v) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
    assert_eq!((n, v as libc::c_long), (1, ppid));
    assert_eq!(sud::sigsys_count(), sigsys);

    // A refused site: SUD brings it.
    let (n, v) = seen(libc::SYS_getppid, || trap(4));
    assert_eq!((n, v), (3, 3 * ppid));
    assert_eq!(sud::sigsys_count(), sigsys + 3);

    // Native paths.
    let (n, v) = seen(libc::SYS_clone3, || {
        std::thread::spawn(|| {
            // SAFETY: no preconditions.
            let (n, v) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
            (n, v as libc::c_long)
        })
        .join()
        .unwrap()
    });
    assert!(n >= 1);
    assert_eq!(v, (1, ppid));
    #[allow(deprecated)]
    // SAFETY: the child only calls _exit, on the parent's stack.
    let pid = unsafe {
        let pid = libc::vfork();
        if pid == 0 {
            libc::_exit(5);
        }
        pid
    };
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5);
    // SAFETY: no preconditions.
    let (n, _) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
    assert_eq!(n, 1, "hooks still run after vfork");
    assert!(Command::new("/bin/true").status().unwrap().success());
    // SAFETY: the child only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: async-signal-safe.
        unsafe { libc::_exit(6) };
    }
    // SAFETY: our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 6);
    // SAFETY: no preconditions.
    let (n, _) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
    assert_eq!(n, 1);

    rw.clear();
    sud::deactivate();
    set_test_observer(None);
}
