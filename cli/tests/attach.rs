//! `userbpf attach PID` and `userbpf detach PID` end to end: a running
//! multi-threaded PIE victim (tests/attach/victim.c, built here with cc)
//! gets a uprobe without restarting; this test process is the loader (a
//! map, a counting program and a link for the victim's pid, published in
//! a private namespace as libbpf.so.1 would). Then detach, and the victim
//! runs on to completion with the right output; the refusals.
//!
//! Needs `target/release/libuserbpf_agent.so` next to the userbpf
//! executable (`cargo build --release -p userbpf-agent`), and cc.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object::{Object, ObjectSection, ObjectSymbol};
use userbpf_runtime::asm::assemble;
use userbpf_runtime::image::ProgramImage;
use userbpf_runtime::isa::BPF_PSEUDO_MAP_IDX;
use userbpf_runtime::maps::{Map, MapSpec};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData, Registration, Role};

const VICTIM_C: &str = include_str!("attach/victim.c");
/// An unprivileged user for the refusal tests (run as root).
const NOBODY: u32 = 65534;

fn userbpf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_userbpf"));
    c.env("USERBPF_DIR", namespace());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// This test process's scratch directory, open to every user (the
/// refusal tests run the victim and userbpf as another one).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Earlier runs' directories, once their process is gone.
        if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("userbpf-attach-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("userbpf-attach-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// The private namespace directory, shared with the victims through
/// USERBPF_DIR.
fn namespace() -> &'static Path {
    static NS: OnceLock<PathBuf> = OnceLock::new();
    NS.get_or_init(|| {
        let ns = scratch().join("ns");
        std::fs::create_dir_all(&ns).unwrap();
        std::fs::set_permissions(&ns, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Set once, under the OnceLock: every test reaches this before it
        // spawns anything or touches the registry (userbpf() and
        // Victim::start call it first), so no thread reads the
        // environment meanwhile.
        std::env::set_var("USERBPF_DIR", &ns);
        ns
    })
}

fn victim_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = scratch().join("victim.c");
        std::fs::write(&src, VICTIM_C).unwrap();
        let bin = scratch().join("victim");
        let st = Command::new("cc")
            .args(["-O2", "-g", "-fPIE", "-pie", "-pthread", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .expect("cc");
        assert!(st.success(), "cc failed");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    })
    .clone()
}

/// Tests share this process's registry file: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
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

fn counters() -> Arc<Map> {
    namespace();
    let spec = MapSpec {
        map_type: 2, // ARRAY
        key_size: 4,
        value_size: 8,
        max_entries: 16,
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

/// A published program that adds 1 to the map value at key `cookie`.
struct Prog {
    id: u32,
    _fd: std::os::fd::OwnedFd,
    _reg: Registration,
}

fn count_prog(map: &Map) -> Prog {
    let mut insns = assemble(
        "call 174
         and %r0, 15
         stxw [%r10-4], %r0
         lddw %r1, 0
         mov %r2, %r10
         add %r2, -4
         call 1
         jeq %r0, 0, out
         mov %r1, 1
         lock add [%r0+0], %r1
         out:
         mov %r0, 0
         exit",
    )
    .unwrap();
    let at = insns.iter().position(|i| i.code == 0x18).unwrap();
    insns[at].src = BPF_PSEUDO_MAP_IDX;
    insns[at].imm = 0;
    let image = ProgramImage {
        name: "count".into(),
        prog_type: 2, // KPROBE
        expected_attach_type: 0,
        insns,
        map_ids: vec![map.id()],
    };
    let fd = userbpf_runtime::image::file::create(&image).unwrap();
    let id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Prog);
    let reg = registry::publish_prog(id, fd.as_raw_fd(), 2, "count").unwrap();
    Prog {
        id,
        _fd: fd,
        _reg: reg,
    }
}

/// A uprobe link on `name` in `bin` for process `pid` (0: all).
fn uprobe(prog: &Prog, bin: &Path, name: &str, pid: u32, cookie: u64) -> Registration {
    let f = func(bin, name);
    let meta = std::fs::metadata(bin).unwrap();
    let mut d = RecordData::zeroed();
    d.kind = kind::LINK;
    d.id = userbpf_runtime::ids::next_id(userbpf_runtime::ids::IdKind::Link);
    d.fd = -1;
    d.type_ = AttachKind::Uprobe as u32;
    d.prog_id = prog.id;
    d.pid = pid;
    d.offset = f.0;
    d.cookie = cookie;
    d.set_path(bin.to_str().unwrap()).unwrap();
    d.dev = meta.dev();
    d.ino = meta.ino();
    d.func_offset = f.0;
    d.func_size = f.1;
    registry::publish(&d).unwrap()
}

struct Victim {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl Victim {
    /// Starts the victim without the agent (as `uid` if given).
    fn start(args: &[&str], uid: Option<u32>) -> Victim {
        let mut cmd = Command::new(victim_binary());
        cmd.args(args)
            .env("USERBPF_DIR", namespace())
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("victim said {line:?}"))
            .parse()
            .unwrap();
        Victim {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    fn has_agent(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .unwrap()
            .contains("libuserbpf_agent.so")
    }

    /// Writes the line that ends the run; returns what it printed and
    /// whether it exited with 0.
    fn finish(mut self, line: &str) -> (String, bool) {
        let mut stdin = self.stdin.take().unwrap();
        writeln!(stdin, "{line}").unwrap();
        drop(stdin);
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        let st = self.child.wait().unwrap();
        (out.trim().to_string(), st.success())
    }

    /// The bytes at file offset `off` of the victim binary, as mapped in
    /// the victim now.
    fn code_at(&self, off: u64, len: usize) -> Vec<u8> {
        let bin = victim_binary();
        let ino = std::fs::metadata(&bin).unwrap().ino();
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).unwrap();
        for line in maps.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 || f[4].parse::<u64>().ok() != Some(ino) {
                continue;
            }
            let (s, e) = f[0].split_once('-').unwrap();
            let (s, e) = (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
            );
            let moff = u64::from_str_radix(f[2], 16).unwrap();
            if off >= moff && off - moff < e - s {
                let mem = std::fs::File::open(format!("/proc/{}/mem", self.pid)).unwrap();
                let mut buf = vec![0u8; len];
                std::os::unix::fs::FileExt::read_exact_at(&mem, &mut buf, s + off - moff).unwrap();
                return buf;
            }
        }
        panic!("offset {off:#x} not mapped in the victim");
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the main thread of `pid` is blocked in read() (the victim
/// says "ready" just before).
fn wait_blocked_in_read(pid: u32) {
    eventually("the victim blocked in read", || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/syscall"))
            .is_ok_and(|s| s.starts_with("0 "))
    });
}

/// Waits (a liveness bound, not a measurement) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: not within 30 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn agent_files_of(pid: u32) -> usize {
    registry::scan_role(namespace(), Role::Agent, false)
        .iter()
        .filter(|a| a.pid == pid)
        .count()
}

fn attach(pid: u32) -> Output {
    userbpf()
        .args(["attach", &pid.to_string()])
        .output()
        .unwrap()
}

fn detach(pid: u32) -> Output {
    userbpf()
        .args(["detach", &pid.to_string()])
        .output()
        .unwrap()
}

#[test]
fn a_running_multithreaded_victim_gets_a_uprobe_then_detach_restores_it() {
    let _g = serial();
    let bin = victim_binary();
    let map = counters();
    let _m = registry::publish_map(&map).unwrap();
    let prog = count_prog(&map);
    let v = Victim::start(&["3"], None);
    let _link = uprobe(&prog, &bin, "count_fn", v.pid, 1);
    let (off, _) = func(&bin, "count_fn");
    let original = std::fs::read(&bin).unwrap()[off as usize..off as usize + 8].to_vec();

    // Running without the agent: nothing counts.
    wait_blocked_in_read(v.pid);
    assert!(!v.has_agent());
    assert_eq!(read(&map, 1), 0);

    let out = attach(v.pid);
    assert!(out.status.success(), "attach: {}", show(&out));
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(stdout.contains("loaded"), "{stdout}");
    // The link for this pid was installed before attach returned.
    assert!(stdout.contains("1 probe(s) installed"), "{stdout}");
    // The main thread was blocked in read(): the one we prefer.
    assert!(stdout.contains("blocked in read"), "{stdout}");
    assert!(v.has_agent());
    eventually("counts in the map", || read(&map, 1) > 1000);
    assert_ne!(v.code_at(off, 8), original, "count_fn is hooked");

    let list = userbpf().args(["list", "--json"]).output().unwrap();
    assert!(list.status.success(), "{}", show(&list));
    assert!(
        text(&list.stdout).contains(&format!("\"pid\": {}", v.pid))
            || text(&list.stdout).contains(&format!("\"pid\":{}", v.pid)),
        "list shows the attached victim: {}",
        text(&list.stdout)
    );

    let out = detach(v.pid);
    assert!(out.status.success(), "detach: {}", show(&out));
    assert!(
        text(&out.stdout).contains("hooks removed"),
        "{}",
        show(&out)
    );
    let after = read(&map, 1);
    // The code is as it was, and nothing counts any more while the
    // workers go on calling.
    assert_eq!(v.code_at(off, 8), original, "count_fn restored");
    assert_eq!(
        agent_files_of(v.pid),
        0,
        "the agent's registry file is gone"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(&map, 1), after, "no hits after detach");

    // Attach again: the agent is there, and starts again.
    let out = attach(v.pid);
    assert!(out.status.success(), "attach again: {}", show(&out));
    println!("{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("already loaded"),
        "{}",
        show(&out)
    );
    assert!(
        text(&out.stdout).contains("1 probe(s) installed"),
        "{}",
        show(&out)
    );
    eventually("counts again", || read(&map, 1) > after + 1000);
    let out = detach(v.pid);
    assert!(out.status.success(), "detach again: {}", show(&out));
    println!("{}", text(&out.stdout));
    assert_eq!(v.code_at(off, 8), original, "count_fn restored again");

    // The victim runs on: its read() (interrupted by every injection)
    // returns what we write now, every result of the hooked function
    // was right, no nanosleep failed.
    let (line, ok) = v.finish("done 4242");
    assert!(ok, "victim failed: {line}");
    assert!(line.starts_with("read=done 4242 calls="), "{line}");
    assert!(line.contains(" mismatches=0 "), "{line}");
    assert!(line.ends_with(" nap_errors=0"), "{line}");
    let calls: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("calls="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        calls > read(&map, 1),
        "the victim made {calls} calls, more than were counted while attached"
    );
}

#[test]
fn a_thread_blocked_in_nanosleep_restarts_it() {
    let _g = serial();
    let bin = victim_binary();
    let map = counters();
    let _m = registry::publish_map(&map).unwrap();
    let prog = count_prog(&map);
    // A link for every process: it fires in the victim once attached.
    let _link = uprobe(&prog, &bin, "count_fn", 0, 2);
    let v = Victim::start(&["nap"], None);
    let out = attach(v.pid);
    assert!(out.status.success(), "attach: {}", show(&out));
    assert!(
        text(&out.stdout).contains("blocked in nanosleep")
            || text(&out.stdout).contains("blocked in clock_nanosleep"),
        "{}",
        show(&out)
    );
    eventually("counts in the map", || read(&map, 2) >= 3);
    let out = detach(v.pid);
    assert!(out.status.success(), "detach: {}", show(&out));
    let (line, ok) = v.finish("bye");
    assert!(ok, "victim failed: {line}");
    assert!(line.starts_with("read=bye "), "{line}");
    assert!(line.contains(" mismatches=0 "), "{line}");
    assert!(line.ends_with(" nap_errors=0"), "{line}");
}

#[test]
fn a_thread_running_its_own_code_makes_the_call() {
    let _g = serial();
    let bin = victim_binary();
    let map = counters();
    let _m = registry::publish_map(&map).unwrap();
    let prog = count_prog(&map);
    // One thread, always in hot_fn's loop: never in a system call.
    let v = Victim::start(&["hot"], None);
    let _link = uprobe(&prog, &bin, "hot_fn", v.pid, 3);
    let out = attach(v.pid);
    assert!(out.status.success(), "attach: {}", show(&out));
    assert!(
        text(&out.stdout).contains(&format!("in thread {} (running)", v.pid)),
        "{}",
        show(&out)
    );
    eventually("counts in the map", || read(&map, 3) > 1000);
    let out = detach(v.pid);
    assert!(out.status.success(), "detach: {}", show(&out));
    let after = read(&map, 3);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read(&map, 3), after, "no hits after detach");
    // Still running its loop.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", v.pid)).unwrap();
    let state = stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap();
    assert!(matches!(state, 'R' | 'S'), "victim state {state}");
}

#[test]
fn attach_refuses_a_process_that_does_not_exist() {
    // Above any pid_max the kernel allows.
    let out = attach(999_999_999);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no process 999999999"),
        "{}",
        show(&out)
    );
    let out = detach(999_999_999);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no process 999999999"),
        "{}",
        show(&out)
    );
}

#[test]
fn detach_refuses_a_process_without_the_agent() {
    let _g = serial();
    let v = Victim::start(&["0"], None);
    let out = detach(v.pid);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no userbpf agent is loaded"),
        "{}",
        show(&out)
    );
    let (line, ok) = v.finish("x");
    assert!(ok && line.starts_with("read=x "), "{line}");
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// userbpf run as `uid` (from a copy the user can reach).
fn attach_as(uid: u32, pid: u32) -> Output {
    userbpf()
        .args(["attach", &pid.to_string()])
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap()
}

#[test]
fn attach_refuses_clearly_when_ptrace_is_not_allowed() {
    let _g = serial();
    if !is_root() {
        // Another user's process: pid 1, unless it is ours.
        let init_uid = std::fs::metadata("/proc/1").map(|m| m.uid()).unwrap_or(0);
        // SAFETY: getuid cannot fail.
        if init_uid == unsafe { libc::getuid() } {
            println!("skipped: pid 1 runs as this user, and no other user's process is at hand");
            return;
        }
        let out = attach(1);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("ptrace is not allowed on process 1"), "{err}");
        return;
    }
    // The userbpf executable must be reachable by the other user.
    let exe = Path::new(env!("CARGO_BIN_EXE_userbpf"));
    for dir in exe.ancestors().skip(1) {
        let mode = std::fs::metadata(dir).map(|m| m.mode()).unwrap_or(0);
        if mode & 0o001 == 0 {
            println!(
                "skipped: {} is not reachable by uid {NOBODY} ({} is mode {mode:o})",
                exe.display(),
                dir.display()
            );
            return;
        }
    }

    // Another user's process (root's), without CAP_SYS_PTRACE.
    let v = Victim::start(&["1"], None);
    let out = attach_as(NOBODY, v.pid);
    assert!(!out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("ptrace is not allowed on process {}", v.pid)),
        "{err}"
    );
    assert!(err.contains("runs as uid 0"), "{err}");
    assert!(err.contains(&format!("you are uid {NOBODY}")), "{err}");
    assert!(!v.has_agent());
    let (line, ok) = v.finish("still here");
    assert!(ok && line.starts_with("read=still here "), "{line}");

    // The same user, but the process made itself not dumpable.
    let v = Victim::start(&["1", "nodump"], Some(NOBODY));
    let out = attach_as(NOBODY, v.pid);
    assert!(!out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("ptrace is not allowed on process {}", v.pid)),
        "{err}"
    );
    assert!(err.contains("not dumpable"), "{err}");
    let (line, ok) = v.finish("fine");
    assert!(ok && line.starts_with("read=fine "), "{line}");
}
