//! Syscall User Dispatch without the rewriter: syscalls made by inline
//! `syscall` instructions of this binary and of JIT-like code reach the
//! dispatcher (its test observer) with their results; threads that exist,
//! threads created later, fork children, vfork+exec, posix_spawn, signal
//! handlers (glibc's restorer), masks and alternate stacks keep working;
//! a seccomp RET_TRAP still reaches the application's SIGSYS handler;
//! `deactivate` stops it all.
//!
//! SUD changes process-wide state (the SIGSYS action, every thread): each
//! test runs its body in a child process (this binary again).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering::*};
use std::time::Instant;

use userbpf_agent::syscall::dispatch::set_test_observer;
use userbpf_agent::syscall::{gate, sud};

const NR_MAX: usize = 1024;
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

/// A syscall made by an instruction of this binary (no libc).
#[inline(never)]
fn inline_syscall(nr: i64, a0: u64) -> i64 {
    let r: i64;
    // SAFETY: a raw syscall; callers pass harmless ones.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => r,
            in("rdi") a0,
            lateout("rcx") _, lateout("r11") _,
            options(nostack)
        )
    };
    r
}

fn errno() -> i32 {
    // SAFETY: the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = v };
}

/// Runs `name` again in a child process with `var` set; returns its stdout.
fn in_child(name: &str, var: &str, show: bool) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(var, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {:?}\n{stdout}{stderr}",
        out.status
    );
    assert!(stdout.contains("1 passed"), "{stdout}{stderr}");
    if show {
        print!("{stdout}");
    }
    stdout
}

/// `mov eax, 39; syscall; ret` (getpid) in a fresh executable page.
fn jit_getpid() -> extern "C" fn() -> i64 {
    const CODE: [u8; 8] = [0xb8, 0x27, 0, 0, 0, 0x0f, 0x05, 0xc3];
    // SAFETY: a new private mapping, written and then made executable.
    unsafe {
        let p = libc::mmap(
            core::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        core::ptr::copy_nonoverlapping(CODE.as_ptr(), p.cast(), CODE.len());
        assert_eq!(
            libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC),
            0
        );
        core::mem::transmute::<*mut libc::c_void, extern "C" fn() -> i64>(p)
    }
}

static USR1_HITS: AtomicU64 = AtomicU64::new(0);
static USR1_PID: AtomicI64 = AtomicI64::new(0);

extern "C" fn on_usr1(_sig: libc::c_int, _info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    USR1_HITS.fetch_add(1, SeqCst);
    // A syscall inside the handler (itself inside the dispatched tgkill).
    USR1_PID.store(inline_syscall(libc::SYS_getpid, 0), SeqCst);
}

static USR2_PID: AtomicI64 = AtomicI64::new(0);

extern "C" fn on_usr2(_sig: libc::c_int, _info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    // Trapped although the handler's mask was "everything".
    USR2_PID.store(inline_syscall(libc::SYS_getpid, 0), SeqCst);
}

static SECCOMP_CODE: AtomicI32 = AtomicI32::new(0);
static SECCOMP_NR: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_app_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel's SIGSYS siginfo (syscall at 24) and context.
    unsafe {
        SECCOMP_CODE.store((*info).si_code, SeqCst);
        SECCOMP_NR.store((info as *const u8).add(24).cast::<i32>().read(), SeqCst);
        (*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RAX as usize] = 4242;
    }
}

fn current_mask() -> u64 {
    // SAFETY: queries the mask into a local.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, core::ptr::null(), &mut set);
        *(&set as *const libc::sigset_t as *const u64)
    }
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

extern "C" fn thread_body(arg: *mut libc::c_void) -> *mut libc::c_void {
    let (n, r) = seen(libc::SYS_gettid, || inline_syscall(libc::SYS_gettid, 0));
    // SAFETY: plain syscall.
    let tid = unsafe { libc::gettid() } as i64;
    let ok = sud::active_here() && n == 1 && r == tid;
    // SAFETY: the test passes a pointer to an AtomicU64.
    unsafe { (*(arg as *const AtomicU64)).store(ok as u64 + 1, SeqCst) };
    core::ptr::null_mut()
}

/// Installs a seccomp filter: syscall 999 -> SECCOMP_RET_TRAP.
fn seccomp_trap_999() {
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        stmt(0x20, 0), // ld [nr]
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: 999,
        }, // jeq #999
        stmt(0x06, 0x0003_0000 | 7), // ret TRAP
        stmt(0x06, 0x7fff_0000), // ret ALLOW
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: standard seccomp set-up with a valid program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::syscall(libc::SYS_seccomp, 1, 0, &prog as *const libc::sock_fprog),
            0
        );
    }
}

/// The whole story, in one child process.
#[test]
fn sud_covers_every_syscall_without_the_rewriter() {
    if std::env::var_os("USERBPF_SUD_CHILD").is_none() {
        in_child(
            "sud_covers_every_syscall_without_the_rewriter",
            "USERBPF_SUD_CHILD",
            false,
        );
        return;
    }
    // SAFETY: plain syscall.
    let pid = unsafe { libc::getpid() } as i64;

    // A thread that exists before activation, parked in a futex.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(bool, u64, i64)>();
    let early = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        let (n, r) = seen(libc::SYS_getppid, || inline_syscall(libc::SYS_getppid, 0));
        done_tx.send((sud::active_here(), n, r)).unwrap();
    });

    // A handler installed before SUD with every signal in its mask.
    // SAFETY: installs an SA_SIGINFO handler that only uses atomics and a
    // raw syscall.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_usr2 as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigfillset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &sa, core::ptr::null_mut()),
            0
        );
    }

    set_test_observer(Some(observe));
    assert!(!sud::active_here());
    sud::try_activate().expect("SUD");
    assert!(sud::active_here());
    assert!(sud::is_active());

    // Inline syscall of this binary.
    let traps = sud::sigsys_count();
    let (n, r) = seen(libc::SYS_getpid, || inline_syscall(libc::SYS_getpid, 0));
    assert_eq!((n, r), (1, pid));
    assert!(sud::sigsys_count() > traps);
    // A failing one: the raw result, and errno untouched by the handler.
    set_errno(77);
    let (n, r) = seen(libc::SYS_close, || {
        inline_syscall(libc::SYS_close, u64::MAX)
    });
    assert_eq!((n, r), (1, -(libc::EBADF as i64)));
    assert_eq!(errno(), 77);
    // Through libc: errno from the result.
    // SAFETY: closing an invalid descriptor.
    let (n, r) = seen(libc::SYS_close, || unsafe { libc::close(-1) });
    assert_eq!((n, r, errno()), (1, -1, libc::EBADF));

    // JIT-like code; its site is reported for the rewriter.
    let f = jit_getpid();
    let _ = sud::take_trapped_sites();
    let (n, r) = seen(libc::SYS_getpid, || f());
    assert_eq!((n, r), (1, pid));
    let sites = sud::take_trapped_sites();
    assert!(sites.contains(&(f as usize + 5)), "{sites:x?}");
    assert!(!sud::take_trapped_sites().contains(&(f as usize + 5)));

    // The thread that existed: reached by our signal, its futex restarted.
    go_tx.send(()).unwrap();
    let (active, n, r) = done_rx.recv().unwrap();
    // SAFETY: plain syscall.
    assert_eq!((active, n, r), (true, 1, unsafe { libc::getppid() } as i64));
    early.join().unwrap();

    // A thread created through the interposed pthread_create.
    let result = AtomicU64::new(0);
    let (n, _) = seen(libc::SYS_clone3, || {
        // SAFETY: a plain thread with a C start routine and a live argument.
        unsafe {
            let mut t: libc::pthread_t = 0;
            let rc = userbpf_agent::interpose::pthread_create(
                &mut t,
                core::ptr::null(),
                thread_body,
                &result as *const AtomicU64 as *mut libc::c_void,
            );
            assert_eq!(rc, 0);
            assert_eq!(libc::pthread_join(t, core::ptr::null_mut()), 0);
        }
    });
    assert!(n >= 1, "clone3 dispatched");
    assert_eq!(
        result.load(SeqCst),
        2,
        "thread covered and its syscall seen"
    );

    // Signal mask and alternate stack survive the handler's sigreturn;
    // SIGSYS is never blocked.
    let before = current_mask();
    // SAFETY: masks built in locals.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigaddset(&mut set, libc::SIGSYS);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut()),
            0
        );
    }
    let m = current_mask();
    assert_ne!(m & bit(libc::SIGUSR2), 0, "SIGUSR2 blocked: {m:#x}");
    assert_eq!(m & bit(libc::SIGSYS), 0, "SIGSYS never blocked: {m:#x}");
    // SAFETY: restores the mask read above.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        *(&mut set as *mut libc::sigset_t as *mut u64) = before;
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, core::ptr::null_mut());
    }
    assert_eq!(current_mask(), before);
    let mut alt = vec![0u8; 64 * 1024];
    // SAFETY: a live buffer as the alternate stack, then disabled.
    unsafe {
        let mut old: libc::stack_t = core::mem::zeroed();
        let ss = libc::stack_t {
            ss_sp: alt.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: alt.len(),
        };
        assert_eq!(libc::sigaltstack(&ss, &mut old), 0);
        let mut cur: libc::stack_t = core::mem::zeroed();
        assert_eq!(libc::sigaltstack(core::ptr::null(), &mut cur), 0);
        assert_eq!(cur.ss_sp, alt.as_mut_ptr().cast());
        assert_eq!(libc::sigaltstack(&old, core::ptr::null_mut()), 0);
    }

    // A signal handler: delivered inside the dispatched tgkill, with its
    // own syscall dispatched, and back through glibc's restorer.
    // SAFETY: installs an SA_SIGINFO handler that only uses atomics and a
    // raw syscall.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()),
            0
        );
    }
    let sigreturns = count(libc::SYS_rt_sigreturn);
    // SAFETY: raises a handled signal.
    let (n, rc) = seen(libc::SYS_getpid, || unsafe { libc::raise(libc::SIGUSR1) });
    assert_eq!(rc, 0);
    assert_eq!(USR1_HITS.load(SeqCst), 1);
    assert_eq!(USR1_PID.load(SeqCst), pid);
    assert!(n >= 1, "the handler's getpid dispatched");
    assert!(
        count(libc::SYS_rt_sigreturn) > sigreturns,
        "rt_sigreturn dispatched"
    );

    // The handler installed before SUD, with a full mask: SIGSYS was taken
    // out of it at activation.
    let (n, rc) = seen(libc::SYS_getpid, || {
        // SAFETY: raises a handled signal.
        unsafe { libc::raise(libc::SIGUSR2) }
    });
    assert_eq!((rc, USR2_PID.load(SeqCst)), (0, pid));
    assert!(n >= 1);
    // sigsuspend with a mask that blocks SIGSYS: the handler that runs
    // meanwhile still has its syscalls trapped.
    USR1_PID.store(0, SeqCst);
    // SAFETY: masks in locals; SIGUSR1 is pending while blocked, then
    // delivered inside sigsuspend.
    unsafe {
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        libc::raise(libc::SIGUSR1);
        assert_eq!(USR1_PID.load(SeqCst), 0);
        let mut wait: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut wait);
        libc::sigdelset(&mut wait, libc::SIGUSR1);
        assert_eq!(libc::sigsuspend(&wait), -1);
        assert_eq!(errno(), libc::EINTR);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
    }
    assert_eq!(USR1_PID.load(SeqCst), pid);
    assert_eq!(USR1_HITS.load(SeqCst), 2);

    // fork: the child runs under SUD too.
    // SAFETY: the child only makes syscalls and exits.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let (n, r) = seen(libc::SYS_getppid, || inline_syscall(libc::SYS_getppid, 0));
        let ok = sud::active_here() && n == 1 && r == pid;
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "fork child: {status:#x}"
    );

    // vfork + exec from inline code (the vfork runs on a native stub).
    let path = c"/bin/true";
    let argv = [path.as_ptr(), core::ptr::null()];
    let envp = [core::ptr::null::<libc::c_char>()];
    let (n, vpid) = seen(libc::SYS_vfork, || {
        let r: i64;
        // SAFETY: vfork; the child only execs or exits, in registers.
        unsafe {
            core::arch::asm!(
                "mov eax, 58",
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "mov eax, 59",
                "syscall",
                "mov eax, 60",
                "mov edi, 127",
                "syscall",
                "2:",
                in("rdi") path.as_ptr(),
                in("rsi") argv.as_ptr(),
                in("rdx") envp.as_ptr(),
                out("rax") r,
                lateout("rcx") _, lateout("r11") _,
            )
        };
        r
    });
    assert_eq!(n, 1);
    assert!(vpid > 0, "vfork: {vpid}");
    // SAFETY: waits for our child.
    assert_eq!(
        unsafe { libc::waitpid(vpid as i32, &mut status, 0) } as i64,
        vpid
    );
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "vfork child: {status:#x}"
    );
    // posix_spawn (clone3 or clone with CLONE_VM|CLONE_VFORK on a new stack).
    let st = std::process::Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));

    // The application's own SIGSYS handler, installed now (the
    // interposer or the dispatched rt_sigaction keep ours in place), gets
    // the seccomp RET_TRAP.
    // SAFETY: installs an SA_SIGINFO handler; reads back into a local.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_app_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(libc::SIGSYS, &sa, core::ptr::null_mut()), 0);
        let mut cur: libc::sigaction = core::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGSYS, core::ptr::null(), &mut cur),
            0
        );
        assert_eq!(cur.sa_sigaction, on_app_sigsys as *const () as usize);
    }
    seccomp_trap_999();
    let (n, r) = seen(999, || inline_syscall(999, 0));
    assert_eq!((n, r), (1, 4242));
    assert_eq!(SECCOMP_CODE.load(SeqCst), sud::SYS_SECCOMP);
    assert_eq!(SECCOMP_NR.load(SeqCst), 999);
    // Still dispatching after all that.
    let (n, r) = seen(libc::SYS_getpid, || inline_syscall(libc::SYS_getpid, 0));
    assert_eq!((n, r), (1, pid));

    // deactivate: nothing trapped any more, in any thread.
    sud::deactivate();
    assert!(!sud::active_here());
    let traps = sud::sigsys_count();
    let (n, r) = seen(libc::SYS_getpid, || inline_syscall(libc::SYS_getpid, 0));
    assert_eq!((n, r), (0, pid));
    let (n, r) = seen(libc::SYS_getpid, || f());
    assert_eq!((n, r), (0, pid));
    assert_eq!(sud::sigsys_count(), traps);
    // And on again.
    sud::try_activate().unwrap();
    let (n, r) = seen(libc::SYS_getpid, || inline_syscall(libc::SYS_getpid, 0));
    assert_eq!((n, r), (1, pid));
    sud::deactivate();
    set_test_observer(None);
}

/// USERBPF_SYSCALL_DISPATCH=off refuses activation.
#[test]
fn sud_can_be_disabled() {
    if std::env::var_os("USERBPF_SUD_OFF_CHILD").is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sud_can_be_disabled",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("USERBPF_SUD_OFF_CHILD", "1")
            .env("USERBPF_SYSCALL_DISPATCH", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        return;
    }
    assert_eq!(sud::try_activate(), Err(sud::SudError::Disabled));
    assert!(!sud::active_here());
}

fn ns_per(iters: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Cost of a trapped syscall (run with --release for the figures).
#[test]
fn sud_cost() {
    if std::env::var_os("USERBPF_SUD_COST_CHILD").is_none() {
        in_child("sud_cost", "USERBPF_SUD_COST_CHILD", true);
        return;
    }
    const N: u32 = 100_000;
    let plain = ns_per(N, || {
        inline_syscall(libc::SYS_getppid, 0);
    });
    sud::try_activate().unwrap();
    let gated = ns_per(N, || {
        // SAFETY: getppid.
        unsafe { gate::syscall6(libc::SYS_getppid as u64, [0; 6]) };
    });
    let trapped = ns_per(N, || {
        inline_syscall(libc::SYS_getppid, 0);
    });
    let before = sud::sigsys_count();
    inline_syscall(libc::SYS_getppid, 0);
    assert_eq!(sud::sigsys_count(), before + 1);
    sud::deactivate();
    let allowed = ns_per(N, || {
        inline_syscall(libc::SYS_getppid, 0);
    });
    // A thread that never had SUD: the gateway's own cost (an indirect
    // call) against an inline instruction.
    let (fresh_plain, fresh_gated) = std::thread::spawn(|| {
        assert!(!sud::active_here());
        let p = ns_per(N, || {
            inline_syscall(libc::SYS_getppid, 0);
        });
        let g = ns_per(N, || {
            // SAFETY: getppid.
            unsafe { gate::syscall6(libc::SYS_getppid as u64, [0; 6]) };
        });
        (p, g)
    })
    .join()
    .unwrap();
    println!(
        "getppid: plain {plain:.0} ns, trapped by SUD {trapped:.0} ns (+{:.0} ns); \
         registered thread: through the gate {gated:.0} ns, any syscall with the selector on ALLOW \
         {allowed:.0} ns; unregistered thread: inline {fresh_plain:.0} ns, through the gate {fresh_gated:.0} ns",
        trapped - plain
    );
    assert!(trapped > plain);
}

/// With the rewriter too: libc's hooked calls are dispatched once (their
/// real call goes through the gateway, not trapped), inline ones are
/// trapped, and calls that run natively after a hook (clone3 of
/// pthread_create, rt_sigreturn) work.
#[test]
fn sud_with_the_rewriter() {
    if std::env::var_os("USERBPF_SUD_RW_CHILD").is_none() {
        in_child("sud_with_the_rewriter", "USERBPF_SUD_RW_CHILD", true);
        return;
    }
    // SAFETY: plain syscall.
    let pid = unsafe { libc::getpid() } as i64;
    let mut rw = userbpf_agent::syscall::rewrite::Rewriter::new();
    let stats = rw.refresh();
    set_test_observer(Some(observe));
    sud::try_activate().unwrap();
    // libc's getppid: hooked, dispatched once, no trap.
    let traps = sud::sigsys_count();
    // SAFETY: plain syscall.
    let (n, r) = seen(libc::SYS_getppid, || unsafe { libc::getppid() });
    assert_eq!(n, 1, "{stats:?}");
    assert!(r > 0);
    let hooked_traps = sud::sigsys_count() - traps;
    assert_eq!(hooked_traps, 0, "a hooked call's real call is not trapped");
    // Inline: trapped.
    let (n, r) = seen(libc::SYS_getpid, || inline_syscall(libc::SYS_getpid, 0));
    assert_eq!((n, r), (1, pid));
    // A thread and a signal.
    let h = std::thread::spawn(|| inline_syscall(libc::SYS_getpid, 0));
    assert_eq!(h.join().unwrap(), pid);
    // SAFETY: installs an SA_SIGINFO handler that only uses atomics and a
    // raw syscall, then raises the signal.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &sa, core::ptr::null_mut()),
            0
        );
        assert_eq!(libc::raise(libc::SIGUSR1), 0);
    }
    assert_eq!(USR1_PID.load(SeqCst), pid);
    let st = std::process::Command::new("/bin/sh")
        .args(["-c", "exit 4"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(4));
    sud::deactivate();
    set_test_observer(None);
    rw.clear();
    println!("rewrite {stats:?}; SIGSYS for a hooked getppid: {hooked_traps}");
}
