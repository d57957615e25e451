//! The agent end to end: this test process is the loader (maps, programs
//! and links published in the registry), a C target runs under
//! `LD_PRELOAD=libuserbpf_agent.so`, and the programs' effects are read
//! back from the maps.
//!
//! Needs `target/release/libuserbpf_agent.so` (`cargo build --release
//! -p userbpf-agent`; `make test` builds it first) and gcc.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object::{Object, ObjectSection, ObjectSymbol};
use userbpf_runtime::asm::assemble;
use userbpf_runtime::image::ProgramImage;
use userbpf_runtime::isa::BPF_PSEUDO_MAP_IDX;
use userbpf_runtime::maps::{Map, MapSpec};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData, Registration, Role};

const TARGET_C: &str = r#"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile long sink;
long global_val = 7;

/* endbr64 first (-fcf-protection=full). */
__attribute__((noinline)) long count_fn(long x) { sink += x; return x * 3; }
/* First instruction RIP-relative: no endbr64 here. */
__attribute__((noinline, nocf_check)) long rip_fn(long x) { return global_val + x; }
/* bpf_override_return target. */
__attribute__((noinline)) long check_fn(long x) { sink += x; return x == 42 ? 0 : -1; }

static sigjmp_buf jb;
static void segv_handler(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; siglongjmp(jb, 1); }
static void trap_handler(int sig) { (void)sig; }

static void *lib;
static long (*lib_fn)(long);

static long per_thread;
static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; i < per_thread; i++) count_fn(i);
    return NULL;
}

int main(void) {
    char line[128];
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    signal(SIGTRAP, trap_handler);
    printf("ready %d\n", getpid());
    while (fgets(line, sizeof line, stdin)) {
        long a = 0, b = 0;
        if (sscanf(line, "count %ld", &a) == 1) {
            for (long i = 0; i < a; i++) count_fn(i);
            printf("ok\n");
        } else if (sscanf(line, "rip %ld", &a) == 1) {
            printf("%ld\n", rip_fn(a));
        } else if (sscanf(line, "check %ld", &a) == 1) {
            printf("%ld\n", check_fn(a));
        } else if (sscanf(line, "threads %ld %ld", &a, &b) == 2) {
            pthread_t t[64];
            per_thread = b;
            for (long i = 0; i < a; i++) pthread_create(&t[i], NULL, worker, NULL);
            for (long i = 0; i < a; i++) pthread_join(t[i], NULL);
            printf("ok\n");
        } else if (strncmp(line, "sigcheck", 8) == 0) {
            struct sigaction old;
            sigaction(SIGSEGV, NULL, &old);
            int segv_ok = old.sa_sigaction == segv_handler && (old.sa_flags & SA_SIGINFO);
            void (*prev)(int) = signal(SIGTRAP, SIG_DFL);
            signal(SIGTRAP, prev);
            printf("%d %d\n", segv_ok, prev == trap_handler);
        } else if (strncmp(line, "segv", 4) == 0) {
            if (sigsetjmp(jb, 1) == 0) {
                *(volatile int *)16 = 1;
                printf("not caught\n");
            } else {
                printf("caught\n");
            }
        } else if (strncmp(line, "errno", 5) == 0) {
            errno = 1234;
            count_fn(1);
            printf("%d\n", errno);
        } else if (sscanf(line, "fork %ld", &a) == 1) {
            pid_t c = fork();
            if (c == 0) {
                for (long i = 0; i < a; i++) count_fn(i);
                _exit(0);
            }
            int st = 0;
            waitpid(c, &st, 0);
            printf("%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        } else if (strncmp(line, "dlopen ", 7) == 0) {
            line[strcspn(line, "\n")] = 0;
            lib = dlopen(line + 7, RTLD_NOW);
            lib_fn = lib ? (long (*)(long))dlsym(lib, "lib_fn") : NULL;
            printf("%s\n", lib_fn ? "ok" : "failed");
        } else if (sscanf(line, "libcall %ld", &a) == 1) {
            long r = 0;
            for (long i = 0; i < a; i++) r += lib_fn(i);
            printf("%ld\n", r);
        } else if (strncmp(line, "dlclose", 7) == 0) {
            printf("%d\n", dlclose(lib));
        } else if (strncmp(line, "closefds", 8) == 0) {
            for (int fd = 3; fd < 1024; fd++) close(fd);
            printf("ok\n");
        } else if (strncmp(line, "exit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn agent_path() -> PathBuf {
    let p = workspace().join("target/release/libuserbpf_agent.so");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --release -p userbpf-agent` first",
        p.display()
    );
    p
}

/// The target binary, built once per test process.
fn target_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = workspace().join("target/agent-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join(format!("target-{}.c", std::process::id()));
        std::fs::write(&src, TARGET_C).unwrap();
        let bin = dir.join(format!("target-{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-O2", "-g", "-fcf-protection=full", "-pie", "-fPIE", "-o"])
            .arg(&bin)
            .arg(&src)
            .args(["-lpthread", "-ldl"])
            .status()
            .expect("gcc");
        assert!(st.success(), "gcc failed");
        bin
    })
    .clone()
}

/// (file offset, size) of a function symbol.
fn func(bin: &Path, name: &str) -> (u64, u64) {
    let data = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("{name} not in {}", bin.display()));
    let section = file.section_by_index(sym.section_index().unwrap()).unwrap();
    let (sec_off, _) = section.file_range().unwrap();
    (sym.address() - section.address() + sec_off, sym.size())
}

/// One namespace for this test process, set before anything uses it.
fn namespace() -> &'static str {
    static NS: OnceLock<String> = OnceLock::new();
    NS.get_or_init(|| {
        // A loader child inherits its parent's namespace.
        if let Ok(ns) = std::env::var("USERBPF_NAMESPACE") {
            if ns.starts_with("agent-e2e-") {
                return ns;
            }
        }
        let ns = format!("agent-e2e-{}", std::process::id());
        std::env::set_var("USERBPF_NAMESPACE", &ns);
        ns
    })
}

/// Tests share the registry file of this process; serialise them so each
/// sees only its own links.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn counters() -> Arc<Map> {
    namespace();
    let spec = MapSpec {
        map_type: 2, // ARRAY
        key_size: 4,
        value_size: 8,
        max_entries: 256,
        map_flags: 0,
        map_extra: 0,
        name: "counters".into(),
        btf_key_type_id: 0,
        btf_value_type_id: 0,
        inner: None,
        spin_lock_off: None,
    };
    let id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Map);
    Map::create(&spec, id).unwrap()
}

fn read(map: &Map, key: u32) -> u64 {
    let mut v = [0u8; 8];
    map.lookup(&key.to_le_bytes(), &mut v, 0).unwrap();
    u64::from_le_bytes(v)
}

/// A loaded program: its file stays open while the test runs.
struct Prog {
    id: u32,
    _fd: std::os::fd::OwnedFd,
    _reg: Registration,
}

/// `body` runs with r6 = ctx and r0 = a pointer to the map value at key
/// `cookie & 255`; the map reference is `lddw %r1, 0` (patched to map #0).
fn program(map: &Map, name: &str, body: &str) -> Prog {
    let src = format!(
        "mov %r6, %r1
         call 174
         and %r0, 255
         stxw [%r10-4], %r0
         lddw %r1, 0
         mov %r2, %r10
         add %r2, -4
         call 1
         jeq %r0, 0, out
         {body}
         out:
         mov %r0, 0
         exit"
    );
    let mut insns = assemble(&src).unwrap();
    let at = insns.iter().position(|i| i.code == 0x18).unwrap();
    insns[at].src = BPF_PSEUDO_MAP_IDX;
    insns[at].imm = 0;
    let image = ProgramImage {
        name: name.into(),
        prog_type: 2, // KPROBE
        expected_attach_type: 0,
        insns,
        map_ids: vec![map.id()],
    };
    let fd = userbpf_runtime::image::file::create(&image).unwrap();
    let id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Prog);
    let reg = registry::publish_prog(id, fd.as_raw_fd(), 2, name).unwrap();
    Prog {
        id,
        _fd: fd,
        _reg: reg,
    }
}

/// Counts hits: value += 1.
fn count_prog(map: &Map) -> Prog {
    program(map, "count", "mov %r1, 1\n lock add [%r0+0], %r1")
}

/// Stores a pt_regs field (byte offset `off`) into the value.
fn store_reg_prog(map: &Map, off: i16) -> Prog {
    program(
        map,
        "store",
        &format!("ldxdw %r1, [%r6+{off}]\n stxdw [%r0+0], %r1"),
    )
}

const DI: i16 = 112;
const AX: i16 = 80;
const SP: i16 = 152;
const IP: i16 = 128;

fn map_record(map: &Map) -> Registration {
    registry::publish_map(map).unwrap()
}

struct LinkSpec<'a> {
    prog: u32,
    kind: AttachKind,
    bin: &'a Path,
    offset: u64,
    func: (u64, u64),
    cookie: u64,
    pid: u32,
}

fn link(s: LinkSpec) -> (u32, Registration) {
    let meta = std::fs::metadata(s.bin).unwrap();
    let id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Link);
    let mut d = RecordData::zeroed();
    d.kind = kind::LINK;
    d.id = id;
    d.fd = -1;
    d.type_ = s.kind as u32;
    d.prog_id = s.prog;
    d.pid = s.pid;
    d.offset = s.offset;
    d.cookie = s.cookie;
    d.set_path(s.bin.to_str().unwrap()).unwrap();
    d.dev = meta.dev();
    d.ino = meta.ino();
    d.func_offset = s.func.0;
    d.func_size = s.func.1;
    (id, registry::publish(&d).unwrap())
}

struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl Target {
    fn start(bin: &Path) -> Target {
        let mut child = Command::new(bin)
            .env("LD_PRELOAD", agent_path())
            .env("USERBPF_NAMESPACE", namespace())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
        Target {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "target died on `{cmd}`");
        line.trim().to_string()
    }

    fn wait_attached(&self, id: u32, n: usize) {
        wait_attached(self.pid, id, n)
    }

    fn wait_detached(&self, id: u32) {
        wait_detached(self.pid, id)
    }
}

/// Waits until the agent of `pid` reports `n` installed probes of link
/// `id`; fails on a reported error.
fn wait_attached(pid: u32, id: u32, n: usize) {
    let dir = userbpf_runtime::namespace::namespace_dir();
    let start = Instant::now();
    loop {
        let recs: Vec<RecordData> = registry::scan_role(&dir, Role::Agent, false)
            .into_iter()
            .filter(|a| a.pid == pid)
            .flat_map(|a| a.file.records())
            .filter(|r| r.kind == kind::ATTACHMENT && r.id == id)
            .collect();
        if let Some(bad) = recs.iter().find(|r| r.flags != 0) {
            panic!("link {id} failed in the target: errno {}", bad.flags);
        }
        if recs.len() == n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "link {id} not attached in time"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Waits until the agent of `pid` reports no probe of link `id`.
fn wait_detached(pid: u32, id: u32) {
    let dir = userbpf_runtime::namespace::namespace_dir();
    let start = Instant::now();
    loop {
        let n = registry::scan_role(&dir, Role::Agent, false)
            .into_iter()
            .filter(|a| a.pid == pid)
            .flat_map(|a| a.file.records())
            .filter(|r| r.kind == kind::ATTACHMENT && r.id == id)
            .count();
        if n == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "link {id} not detached in time"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "exit");
        let _ = self.child.wait();
    }
}

#[test]
fn uprobe_counts_calls_on_an_endbr64_function() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let f = func(&bin, "count_fn");
    let code = std::fs::read(&bin).unwrap();
    assert_eq!(
        &code[f.0 as usize..f.0 as usize + 4],
        &[0xf3, 0x0f, 0x1e, 0xfa],
        "count_fn should start with endbr64"
    );
    let mut t = Target::start(&bin);
    assert_eq!(t.ask("count 10"), "ok");
    let (id, reg) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 1,
        pid: 0,
    });
    t.wait_attached(id, 1);
    assert_eq!(t.ask("count 1000"), "ok");
    assert_eq!(read(&map, 1), 1000);
    drop(reg);
    t.wait_detached(id);
    assert_eq!(t.ask("count 500"), "ok");
    assert_eq!(read(&map, 1), 1000, "no hits after detach");
}

#[test]
fn links_present_at_start_are_installed_before_main() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let f = func(&bin, "count_fn");
    let (id, _reg) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 2,
        pid: 0,
    });
    let mut t = Target::start(&bin);
    // No waiting: the constructor installed it.
    assert_eq!(t.ask("count 77"), "ok");
    assert_eq!(read(&map, 2), 77);
    t.wait_attached(id, 1);
}

#[test]
fn uprobe_and_uretprobe_on_a_rip_relative_function() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    let arg = store_reg_prog(&map, DI);
    let rc = store_reg_prog(&map, AX);
    let ip = store_reg_prog(&map, IP);
    let f = func(&bin, "rip_fn");
    let code = std::fs::read(&bin).unwrap();
    let first = &code[f.0 as usize..f.0 as usize + 3];
    assert!(
        first == [0x48, 0x8b, 0x05] || first == [0x48, 0x03, 0x3d],
        "rip_fn should start with a RIP-relative mov/add, got {first:x?}"
    );
    let mut t = Target::start(&bin);
    let spec = |prog: &Prog, kind, cookie| LinkSpec {
        prog: prog.id,
        kind,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie,
        pid: 0,
    };
    let (a, _ra) = link(spec(&arg, AttachKind::Uprobe, 10));
    let (r, _rr) = link(spec(&rc, AttachKind::Uretprobe, 11));
    let (i, _ri) = link(spec(&ip, AttachKind::Uprobe, 12));
    t.wait_attached(a, 1);
    t.wait_attached(r, 1);
    t.wait_attached(i, 1);
    assert_eq!(t.ask("rip 35"), "42");
    assert_eq!(read(&map, 10), 35, "PT_REGS_PARM1 at entry");
    assert_eq!(read(&map, 11), 42, "PT_REGS_RC at return");
    let ip_seen = read(&map, 12);
    // PT_REGS_IP is the function's address: its page offset matches the
    // file offset's (text is mapped page-aligned).
    assert_eq!(ip_seen & 0xfff, f.0 & 0xfff, "PT_REGS_IP {ip_seen:#x}");
}

#[test]
fn uprobe_at_an_offset_inside_a_function() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let sp = store_reg_prog(&map, SP);
    let f = func(&bin, "count_fn");
    // The second instruction after endbr64.
    let code = std::fs::read(&bin).unwrap();
    let body = &code[f.0 as usize..(f.0 + f.1) as usize];
    let mut dec = iced_x86::Decoder::with_ip(64, body, 0, iced_x86::DecoderOptions::NONE);
    let _endbr = dec.decode();
    let second = dec.decode();
    let inner = f.0 + second.next_ip();
    let mut t = Target::start(&bin);
    let spec = |prog: &Prog, cookie| LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: inner,
        func: f,
        cookie,
        pid: 0,
    };
    let (id, _r) = link(spec(&prog, 20));
    let (id2, _r2) = link(spec(&sp, 21));
    t.wait_attached(id, 1);
    t.wait_attached(id2, 1);
    assert_eq!(t.ask("count 333"), "ok");
    assert_eq!(read(&map, 20), 333);
    assert_ne!(read(&map, 21), 0, "PT_REGS_SP");
}

#[test]
fn pid_filter_selects_the_process() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let f = func(&bin, "count_fn");
    let mut t1 = Target::start(&bin);
    let mut t2 = Target::start(&bin);
    let (id, _r) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 30,
        pid: t2.pid,
    });
    t2.wait_attached(id, 1);
    assert_eq!(t1.ask("count 100"), "ok");
    assert_eq!(t2.ask("count 7"), "ok");
    assert_eq!(read(&map, 30), 7);
}

#[test]
fn override_return_skips_the_function() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    // bpf_override_return(ctx, 42 + 1000) on every call; count in 40.
    let prog = program(
        &map,
        "override",
        "mov %r1, 1
         lock add [%r0+0], %r1
         mov %r1, %r6
         mov %r2, 1042
         call 58",
    );
    let f = func(&bin, "check_fn");
    let mut t = Target::start(&bin);
    assert_eq!(t.ask("check 1"), "-1");
    let (id, r) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 40,
        pid: 0,
    });
    t.wait_attached(id, 1);
    assert_eq!(t.ask("check 1"), "1042");
    assert_eq!(read(&map, 40), 1);
    drop(r);
    t.wait_detached(id);
    assert_eq!(t.ask("check 42"), "0");
}

#[test]
fn bad_pointer_read_gets_efault_and_the_target_lives() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    // r1 = probe_read_user(fp-16, 8, 0x10): the result goes to the value.
    let prog = program(
        &map,
        "badptr",
        "mov %r7, %r0
         mov %r1, %r10
         add %r1, -16
         mov %r2, 8
         mov %r3, 16
         call 112
         stxdw [%r7+0], %r0",
    );
    let f = func(&bin, "count_fn");
    let mut t = Target::start(&bin);
    let (id, _r) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 50,
        pid: 0,
    });
    t.wait_attached(id, 1);
    assert_eq!(t.ask("count 3"), "ok");
    assert_eq!(read(&map, 50) as i64, -(libc::EFAULT as i64));
    assert_eq!(t.ask("rip 1"), "8", "the target still works");
}

#[test]
fn signals_errno_and_fork_behave_as_before() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    // Counts and reads a bad pointer (the agent's fault handler works).
    let prog = program(
        &map,
        "count_fault",
        "mov %r1, 1
         lock add [%r0+0], %r1
         mov %r1, %r10
         add %r1, -16
         mov %r2, 8
         mov %r3, 16
         call 112",
    );
    let f = func(&bin, "count_fn");
    let mut t = Target::start(&bin);
    let (id, _r) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 80,
        pid: 0,
    });
    t.wait_attached(id, 1);
    // The application reads back its own actions, not the agent's.
    assert_eq!(t.ask("sigcheck"), "1 1");
    // Its SIGSEGV handler still runs for its own faults.
    assert_eq!(t.ask("segv"), "caught");
    // errno survives a hooked call whose program faulted inside.
    assert_eq!(t.ask("errno"), "1234");
    assert_eq!(read(&map, 80), 1);
    // A forked child keeps the hooks (a link for every process).
    assert_eq!(t.ask("fork 25"), "0");
    assert_eq!(read(&map, 80), 26);
    assert_eq!(t.ask("count 4"), "ok");
    assert_eq!(read(&map, 80), 30);
}

#[test]
fn sixteen_threads_while_links_come_and_go() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let f = func(&bin, "count_fn");
    let mut t = Target::start(&bin);
    let spec = |cookie| LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie,
        pid: 0,
    };
    // A steady link: exact counts while attached.
    let (steady, _s) = link(spec(60));
    t.wait_attached(steady, 1);
    // Churn: links attached and detached 1000 times (each time until the
    // target's agent reports it installed, then removed) while 16 threads
    // call the function: odd rounds on the same entry site (the link set
    // is swapped), even rounds at an inner instruction (a hook is
    // installed and removed under the running threads).
    let code = std::fs::read(&bin).unwrap();
    let body = &code[f.0 as usize..(f.0 + f.1) as usize];
    let mut dec = iced_x86::Decoder::with_ip(64, body, 0, iced_x86::DecoderOptions::NONE);
    let _endbr = dec.decode();
    let inner = f.0 + dec.decode().next_ip();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let prog_id = prog.id;
        let bin = bin.clone();
        let pid = t.pid;
        std::thread::spawn(move || {
            let mut n = 0;
            while n < 1000 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (id, r) = link(LinkSpec {
                    prog: prog_id,
                    kind: AttachKind::Uprobe,
                    bin: &bin,
                    offset: if n % 2 == 1 { f.0 } else { inner },
                    func: f,
                    cookie: 61,
                    pid: 0,
                });
                wait_attached(pid, id, 1);
                drop(r);
                wait_detached(pid, id);
                n += 1;
            }
            n
        })
    };
    let mut rounds = 0u64;
    while !churn.is_finished() {
        assert_eq!(t.ask("threads 16 20000"), "ok");
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(churn.join().unwrap(), 1000);
    assert_eq!(read(&map, 60), rounds * 16 * 20000, "exact while attached");
    let churned = read(&map, 61);
    assert!(churned <= rounds * 16 * 20000);
    eprintln!("{rounds} rounds of 16 x 20000 calls; churned links saw {churned} hits");
    assert_eq!(t.ask("count 1"), "ok");
}

#[test]
fn loader_killed_the_target_keeps_running_and_hooks_go() {
    let _g = serial();
    let bin = target_binary();
    // The loader is a child process: this test binary re-run in loader
    // mode (see `loader_child`).
    let mut t = Target::start(&bin);
    let mut loader = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "loader_child", "--nocapture", "--ignored"])
        .env("USERBPF_NAMESPACE", namespace())
        .env("AGENT_E2E_LOADER_BIN", &bin)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(loader.stdout.take().unwrap());
    let mut link_id = None;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().strip_prefix("LINK ") {
            link_id = Some(rest.parse::<u32>().unwrap());
            break;
        }
        line.clear();
    }
    let link_id = link_id.expect("loader child printed no link");
    t.wait_attached(link_id, 1);
    assert_eq!(t.ask("count 5"), "ok");
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(loader.id() as i32, libc::SIGKILL) };
    let _ = loader.wait();
    t.wait_detached(link_id);
    assert_eq!(t.ask("count 5"), "ok", "the target survives");
    assert_eq!(t.ask("rip 1"), "8");
}

/// Loader mode for the test above: publishes a counting link on count_fn
/// and waits to be killed.
#[test]
#[ignore]
fn loader_child() {
    let Some(bin) = std::env::var_os("AGENT_E2E_LOADER_BIN") else {
        return;
    };
    let bin = PathBuf::from(bin);
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let f = func(&bin, "count_fn");
    let (id, _r) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 70,
        pid: 0,
    });
    println!("LINK {id}");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn the_agent_file_goes_with_the_process() {
    let _g = serial();
    let bin = target_binary();
    namespace();
    let dir = userbpf_runtime::namespace::namespace_dir();
    let t = Target::start(&bin);
    let file = dir.join(format!("agent-{}.reg", t.pid));
    // Its watcher thread writes the file at its first reconcile, which
    // may come after the target's first line on a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(file.exists(), "an agent announces itself at start");
    drop(t);
    assert!(!file.exists(), "and cleans up at exit");
}

/// CPU time (utime + stime, in ticks) of process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_target_that_closes_every_fd_keeps_its_agent() {
    let _g = serial();
    let bin = target_binary();
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let f = func(&bin, "count_fn");
    let mut t = Target::start(&bin);
    assert_eq!(t.ask("closefds"), "ok");
    // The agent's fds are gone (a poll already waiting keeps them alive
    // until it returns): it must neither go deaf nor spin afterwards.
    let (id, _r) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 90,
        pid: 0,
    });
    t.wait_attached(id, 1);
    assert_eq!(t.ask("count 12"), "ok");
    assert_eq!(read(&map, 90), 12);
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_ticks(t.pid);
    std::thread::sleep(Duration::from_millis(500));
    let spent = cpu_ticks(t.pid) - before;
    assert!(spent < 10, "the target burnt {spent} ticks while idle");
    // Still listening: another link comes and goes.
    let (id2, r2) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &bin,
        offset: f.0,
        func: f,
        cookie: 91,
        pid: 0,
    });
    t.wait_attached(id2, 1);
    drop(r2);
    t.wait_detached(id2);
}

/// A shared library with `lib_fn`, built once per test process.
fn library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = workspace().join("target/agent-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join(format!("lib-{}.c", std::process::id()));
        std::fs::write(
            &src,
            "__attribute__((noinline)) long lib_fn(long x) { return x * 2 + 1; }\n",
        )
        .unwrap();
        let lib = dir.join(format!("libprobed-{}.so", std::process::id()));
        let st = Command::new("gcc")
            .args(["-O2", "-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(&src)
            .status()
            .expect("gcc");
        assert!(st.success(), "gcc failed");
        lib
    })
    .clone()
}

#[test]
fn a_library_dlopened_later_gets_its_probes() {
    let _g = serial();
    let bin = target_binary();
    let lib = library();
    let map = counters();
    let _m = map_record(&map);
    let prog = count_prog(&map);
    let f = func(&lib, "lib_fn");
    let mut t = Target::start(&bin);
    let (id, _r) = link(LinkSpec {
        prog: prog.id,
        kind: AttachKind::Uprobe,
        bin: &lib,
        offset: f.0,
        func: f,
        cookie: 100,
        pid: 0,
    });
    // Not mapped yet: nothing to install.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(t.ask(&format!("dlopen {}", lib.display())), "ok");
    // The dynamic loader's hook woke the agent.
    t.wait_attached(id, 1);
    assert_eq!(t.ask("libcall 7"), "49");
    assert_eq!(read(&map, 100), 7);
    assert_eq!(t.ask("dlclose"), "0");
    t.wait_detached(id);
    assert_eq!(t.ask("count 2"), "ok", "the target lives on");
}

/// `userbpf attach` and libbpf.so.1's in-process agent `dlopen` the agent,
/// whose thread-local block is initial-exec: glibc gives a library loaded
/// late only the static TLS surplus (about 1.6 KiB here, shared with other
/// libraries), and refuses it beyond that ("cannot allocate memory in
/// static TLS block"). Keep big per-thread data out of `thread_local!`.
#[test]
fn the_agents_static_tls_stays_small() {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let data = std::fs::read(agent_path()).unwrap();
    let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    let e = elf.endian();
    let tls = elf
        .elf_program_headers()
        .iter()
        .find(|p| p.p_type(e) == object::elf::PT_TLS)
        .map_or(0, |p| p.p_memsz(e));
    assert!(tls <= 1280, "the agent's TLS segment is {tls} bytes");
}
