//! USDT attachment end to end: a traced program with `<sys/sdt.h>` probes
//! (gcc, PIE), a BPF object using `BPF_USDT` from the installed
//! `<bpf/usdt.bpf.h>` (clang-16), attached through the library; checked
//! against the registry records the agents read, the object's
//! `__bpf_usdt_specs` map, and `readelf`'s view of the target.
//!
//! - `in_process`: through the rlib (`attach_usdt` is the body of
//!   `bpf_program__attach_usdt`), every detail and error;
//! - `through_libbpf_so`: a C driver linked against `target/<profile>/
//!   libbpf.so` attaches with `bpf_program__attach` (and with
//!   `bpf_program__attach_usdt` once the symbol is marked implemented)
//!   while the test reads its registry file.

mod common;

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr::null;
use std::sync::OnceLock;

use bpf::implemented::*;
use bpf::link_api::LinkHandle;
use bpf::object_api::{ObjectHandle, ProgramHandle};
use userbpf_runtime::registry::{self, kind, RecordData};

use common::{profile_dir, run};

fn support() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/usdt_support")
}

struct Built {
    dir: PathBuf,
    target: PathBuf,
    object: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("usdt-attach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("usdt_target");
        run(Command::new("gcc")
            .args(["-O2", "-fPIE", "-pie"])
            .arg(support().join("target.c"))
            .arg("-o")
            .arg(&target));
        let object = dir.join("usdt.bpf.o");
        run(Command::new("clang-16")
            .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg(format!("-DTARGET=\"{}\"", target.display()))
            .arg("-c")
            .arg(support().join("usdt.bpf.c"))
            .arg("-o")
            .arg(&object));
        Built {
            dir,
            target,
            object,
        }
    })
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap()
}

/// What readelf says: file offsets of each probe's sites, and the file
/// offset of each semaphore (by symbol and section, not by segment).
struct Expected {
    sites: HashMap<String, Vec<u64>>,
    semaphores: HashMap<String, u64>,
}

fn expected(path: &Path) -> Expected {
    let sections = run(Command::new("readelf").arg("-SW").arg(path));
    let sec = |name: &str| -> (u64, u64) {
        sections
            .lines()
            .find_map(|l| {
                let (_, rest) = l.trim().strip_prefix('[')?.split_once(']')?;
                let f: Vec<&str> = rest.split_whitespace().collect();
                (f.first() == Some(&name)).then(|| (hex(f[2]), hex(f[3])))
            })
            .unwrap()
    };
    let (text_addr, text_off) = sec(".text");
    let (probes_addr, probes_off) = sec(".probes");
    let notes = run(Command::new("readelf").arg("-nW").arg(path));
    let mut sites: HashMap<String, Vec<u64>> = HashMap::new();
    let mut name = String::new();
    for l in notes.lines().map(str::trim) {
        if let Some(n) = l.strip_prefix("Name: ") {
            name = n.to_owned();
        } else if let Some(loc) = l.strip_prefix("Location: ") {
            let addr = hex(loc.split(',').next().unwrap());
            sites
                .entry(name.clone())
                .or_default()
                .push(addr - text_addr + text_off);
        }
    }
    let symbols = run(Command::new("readelf").arg("-sW").arg(path));
    let mut semaphores = HashMap::new();
    for l in symbols.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let Some(probe) = f
            .get(7)
            .and_then(|n| n.strip_prefix("ubpf_"))
            .and_then(|n| n.strip_suffix("_semaphore"))
        {
            semaphores.insert(probe.to_owned(), hex(f[1]) - probes_addr + probes_off);
        }
    }
    Expected { sites, semaphores }
}

/// The USDT link records of loader `pid` in `dir`, for program `prog`.
fn usdt_records(dir: &Path, pid: u32, prog: &str) -> Vec<RecordData> {
    let mut out: Vec<RecordData> = registry::scan(dir, false)
        .into_iter()
        .filter(|l| l.pid == pid)
        .flat_map(|l| l.file.records())
        .filter(|r| r.kind == kind::LINK && r.type_ == 3 && r.name_str() == prog)
        .collect();
    out.sort_by_key(|r| r.offset);
    out
}

/// One argument of the legacy (installed header) `struct __bpf_usdt_spec`:
/// (val_off, arg_type, reg_off, arg_signed, arg_bitshift).
fn legacy_arg(v: &[u8], i: usize) -> (i64, u32, i16, u8, u8) {
    let a = &v[i * 16..i * 16 + 16];
    (
        i64::from_le_bytes(a[0..8].try_into().unwrap()),
        u32::from_le_bytes(a[8..12].try_into().unwrap()),
        i16::from_le_bytes(a[12..14].try_into().unwrap()),
        a[14],
        a[15],
    )
}

/// (usdt_cookie, arg_cnt) of a legacy spec.
fn legacy_tail(v: &[u8]) -> (u64, i16) {
    (
        u64::from_le_bytes(v[192..200].try_into().unwrap()),
        i16::from_le_bytes(v[200..202].try_into().unwrap()),
    )
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

#[repr(C)]
struct UsdtOpts {
    sz: usize,
    usdt_cookie: u64,
}

#[test]
fn in_process() {
    let b = built();
    let ns = b.dir.join("ns-in-process");
    std::fs::create_dir_all(&ns).unwrap();
    // SAFETY: set before this process touches the registry; the other test
    // only passes the variable to its child.
    unsafe { std::env::set_var("USERBPF_DIR", &ns) };
    let want = expected(&b.target);
    let me = std::process::id();
    let target = CString::new(b.target.to_str().unwrap()).unwrap();
    let meta = std::fs::metadata(&b.target).unwrap();
    let canonical = std::fs::canonicalize(&b.target).unwrap();
    let obj_path = CString::new(b.object.to_str().unwrap()).unwrap();

    // SAFETY: live handles and valid C strings throughout.
    unsafe {
        let o = bpf_object__open_file(obj_path.as_ptr(), null());
        assert!(!o.is_null());
        let on_hit = prog(o, "on_hit");
        // Not loaded: libbpf's EINVAL.
        let l = bpf::usdt_api::attach_usdt(
            on_hit,
            -1,
            target.as_ptr(),
            c"ubpf".as_ptr(),
            c"hit".as_ptr(),
            null(),
        );
        assert_eq!(l.unwrap_err().errno(), libc::EINVAL);
        assert_eq!(bpf_object__load(o), 0);
        let on_sema = prog(o, "on_sema");
        let specs = bpf_object__find_map_by_name(o, c"__bpf_usdt_specs".as_ptr());
        assert!(!specs.is_null());
        let vsize = bpf_map__value_size(specs) as usize;
        assert_eq!(
            vsize, 208,
            "the installed usdt.bpf.h has the pre-1.7 layout"
        );
        let spec_at = |id: u64| {
            let key = id as u32;
            let mut v = vec![0u8; vsize];
            let r = bpf_map__lookup_elem(
                specs,
                (&key as *const u32).cast::<c_void>(),
                4,
                v.as_mut_ptr().cast::<c_void>(),
                vsize,
                0,
            );
            assert_eq!(r, 0);
            v
        };

        // Explicit attach, this process only, with a USDT cookie.
        let opts = UsdtOpts {
            sz: std::mem::size_of::<UsdtOpts>(),
            usdt_cookie: 0xfeed,
        };
        let hit = bpf::usdt_api::attach_usdt(
            on_hit,
            0,
            target.as_ptr(),
            c"ubpf".as_ptr(),
            c"hit".as_ptr(),
            (&opts as *const UsdtOpts).cast(),
        )
        .unwrap();
        assert!(bpf_link__fd(hit) >= 0);
        let recs = usdt_records(&ns, me, "on_hit");
        let mut offsets: Vec<u64> = recs.iter().map(|r| r.offset).collect();
        let mut want_hit = want.sites["hit"].clone();
        want_hit.sort();
        offsets.sort();
        assert_eq!(offsets, want_hit, "one record per call site");
        assert_eq!(recs.len(), 2);
        for r in &recs {
            assert_eq!(r.id, recs[0].id, "one link");
            assert_eq!(r.fd, bpf_link__fd(hit), "the link's own fd");
            assert_eq!(r.pid, me, "pid 0 is this process");
            assert_eq!(r.ref_ctr_offset, want.semaphores["hit"]);
            assert_eq!(r.path_str(), canonical.to_str().unwrap());
            assert_eq!((r.dev, r.ino), (meta.dev(), meta.ino()));
            assert!(
                r.func_size > 0
                    && r.func_offset <= r.offset
                    && r.offset < r.func_offset + r.func_size
            );
        }
        // Both sites read (int a, long b) from the same registers: one spec.
        assert_eq!(recs[0].cookie, recs[1].cookie);
        let hit_id = recs[0].cookie;
        let v = spec_at(hit_id);
        assert_eq!(legacy_tail(&v), (0xfeed, 2));
        let (a0, a1) = (legacy_arg(&v, 0), legacy_arg(&v, 1));
        assert_eq!((a0.1, a0.3, a0.4), (1, 1, 32), "int in a register");
        assert_eq!((a1.1, a1.3, a1.4), (1, 1, 0), "long in a register");

        // Auto-attach from SEC("usdt/<target>:ubpf:sema"): every process.
        let sema = bpf_program__attach(on_sema);
        assert!(!sema.is_null());
        let recs = usdt_records(&ns, me, "on_sema");
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].offset, want.sites["sema"][0]);
        assert_eq!(recs[0].pid, 0, "-1 is every process");
        assert_eq!(recs[0].ref_ctr_offset, want.semaphores["sema"]);
        assert_ne!(recs[0].cookie, hit_id);
        let sema_id = recs[0].cookie;
        let v = spec_at(sema_id);
        assert_eq!(legacy_tail(&v), (0, 3));
        assert_eq!(legacy_arg(&v, 0).4, 48, "short");
        assert_eq!(legacy_arg(&v, 1), (42, 0, 0, 1, 32), "constant 42");
        assert_eq!(legacy_arg(&v, 2), (-7, 0, 0, 1, 32), "constant -7");

        // Destroy: the records go, the spec id comes back and is reused.
        assert_eq!(bpf_link__destroy(hit), 0);
        assert!(usdt_records(&ns, me, "on_hit").is_empty());
        assert_eq!(usdt_records(&ns, me, "on_sema").len(), 1);
        let hit2 = bpf::usdt_api::attach_usdt(
            on_hit,
            -1,
            target.as_ptr(),
            c"ubpf".as_ptr(),
            c"hit".as_ptr(),
            null(),
        )
        .unwrap();
        let recs = usdt_records(&ns, me, "on_hit");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].cookie, hit_id, "freed spec id reused");
        assert_eq!(recs[0].pid, 0);
        assert_eq!(
            legacy_tail(&spec_at(hit_id)),
            (0, 2),
            "respecified without cookie"
        );

        // Errors.
        let attach = |path: &std::ffi::CStr,
                      provider: &std::ffi::CStr,
                      name: &std::ffi::CStr,
                      opts: *const c_void| {
            bpf::usdt_api::attach_usdt(
                on_hit,
                -1,
                path.as_ptr(),
                provider.as_ptr(),
                name.as_ptr(),
                opts,
            )
            .map(|l: *mut LinkHandle| l)
            .map_err(|e| e.errno())
        };
        assert_eq!(
            attach(&target, c"ubpf", c"nosuch", null()).unwrap_err(),
            libc::ENOENT
        );
        assert_eq!(
            attach(&target, c"nosuch", c"hit", null()).unwrap_err(),
            libc::ENOENT
        );
        assert_eq!(
            attach(c"/nonexistent/bin", c"ubpf", c"hit", null()).unwrap_err(),
            libc::ENOENT
        );
        assert_eq!(
            attach(c"no-such-program-anywhere", c"ubpf", c"hit", null()).unwrap_err(),
            libc::ENOENT
        );
        assert_eq!(
            attach(&obj_path, c"ubpf", c"hit", null()).unwrap_err(),
            libc::EBADF,
            "ET_REL"
        );
        let small = [4usize, 0];
        assert_eq!(
            attach(&target, c"ubpf", c"hit", small.as_ptr().cast()).unwrap_err(),
            libc::EINVAL
        );
        let mut big = [0u64; 8];
        big[0] = 64;
        big[6] = 1; // byte 48: past bpf_uprobe_opts' 44 bytes
        assert_eq!(
            attach(&target, c"ubpf", c"hit", big.as_ptr().cast()).unwrap_err(),
            libc::EINVAL
        );
        big[6] = 0;
        let ok = attach(&target, c"ubpf", c"hit", big.as_ptr().cast()).unwrap();
        assert_eq!(bpf_link__destroy(ok), 0);
        // Failed attachments left nothing behind.
        assert_eq!(usdt_records(&ns, me, "on_hit").len(), 2);
        let bad = bpf_program__attach(prog(o, "bad_section"));
        assert!(bad.is_null());
        assert_eq!(errno(), libc::EINVAL);

        assert_eq!(bpf_link__destroy(hit2), 0);
        assert_eq!(bpf_link__destroy(sema), 0);
        assert!(usdt_records(&ns, me, "on_hit").is_empty());
        assert!(usdt_records(&ns, me, "on_sema").is_empty());
        bpf_object__close(o);
    }
}

#[test]
fn through_libbpf_so() {
    let b = built();
    let so = common::libbpf_so();
    let driver = b.dir.join("driver");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include");
    run(Command::new("gcc")
        .arg("-I")
        .arg(&include)
        .arg(support().join("driver.c"))
        .arg("-L")
        .arg(so.parent().unwrap())
        .args(["-lbpf", "-o"])
        .arg(&driver));
    // The explicit entry point is checked once the library exports it.
    let explicit = bpf::table::SYMBOLS.iter().any(|s| {
        s.name == "bpf_program__attach_usdt" && s.status == bpf::table::Status::Implemented
    });
    if !explicit {
        eprintln!("bpf_program__attach_usdt is still a stub: checking auto-attach only");
    }
    let ns = b.dir.join("ns-so");
    std::fs::create_dir_all(&ns).unwrap();
    let mut child = Command::new(&driver)
        .arg(&b.object)
        .arg(&b.target)
        .arg(if explicit { "1" } else { "0" })
        .env("LD_LIBRARY_PATH", profile_dir())
        .env("USERBPF_DIR", &ns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().map(|l| l.unwrap()).unwrap_or_default();
    assert_eq!(next(), "attached");
    let want = expected(&b.target);
    let sema = usdt_records(&ns, pid, "on_sema");
    assert_eq!(sema.len(), 1);
    assert_eq!(sema[0].offset, want.sites["sema"][0]);
    assert_eq!(sema[0].ref_ctr_offset, want.semaphores["sema"]);
    assert_eq!(sema[0].pid, 0);
    let hit = usdt_records(&ns, pid, "on_hit");
    if explicit {
        assert_eq!(hit.len(), 2);
        assert_eq!(hit[0].ref_ctr_offset, want.semaphores["hit"]);
    } else {
        assert!(hit.is_empty());
    }
    // The target under the agent: the semaphores are up before `main`, and
    // the programs read the probes' arguments through usdt.bpf.h.
    let agent = profile_dir().join("libuserbpf_agent.so");
    assert!(
        agent.exists(),
        "build the agent: cargo build --release -p userbpf-agent"
    );
    let run = Command::new(&b.target)
        .env("LD_PRELOAD", &agent)
        .env("USERBPF_DIR", &ns)
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        // ubpf:hit has two call sites, each a uprobe that counts on the
        // shared semaphore, as the kernel's reference counters do.
        if explicit {
            "semaphores 2 1"
        } else {
            "semaphores 0 1"
        }
    );
    let out = userbpf_runtime::registry::scan(&ns, false)
        .into_iter()
        .filter(|l| l.pid == pid)
        .flat_map(|l| l.file.records())
        .find(|r| r.kind == userbpf_runtime::registry::kind::MAP && r.name_str() == "out")
        .expect("the driver's `out` map");
    let map = userbpf_runtime::maps::Map::open_path(&userbpf_runtime::registry::proc_fd_path(
        pid, out.fd,
    ))
    .unwrap();
    let value = |k: u32| {
        let mut v = [0u8; 8];
        map.lookup(&k.to_le_bytes(), &mut v, 0).unwrap();
        i64::from_le_bytes(v)
    };
    assert_eq!(
        (value(4), value(5), value(6)),
        (-3, 42, -7),
        "ubpf:sema args"
    );
    if explicit {
        // hit_b ran last: (argc + 1, 1 << 40), the user's cookie, 2 args.
        assert_eq!(
            (value(0), value(1), value(2), value(3)),
            (2, 1 << 40, 0xfeed, 2),
            "ubpf:hit args"
        );
    }
    writeln!(stdin).unwrap();
    assert_eq!(next(), "destroyed");
    assert!(usdt_records(&ns, pid, "on_sema").is_empty());
    assert!(usdt_records(&ns, pid, "on_hit").is_empty());
    writeln!(stdin).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "driver failed: {}", next());
}
