//! Uprobe attach through `libbpf.so` from C (tests/attach_uprobe.c with
//! the object of tests/attach_uprobe.bpf.c): auto-attach by section name,
//! `bpf_program__attach_uprobe[_opts]`, `bpf_program__attach_uprobe_multi`
//! and libbpf's errors; the link records are read back from the registry
//! and checked against offsets computed from `readelf` output, and must
//! go away with `bpf_link__destroy`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{libbpf_so, run};
use userbpf_runtime::registry::{self, kind, AttachKind, RecordData};

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-attach-uprobe");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `(offset, size)` of the dynamic symbols of `lib` by readelf's name
/// (`malloc@@GLIBC_2.2.5`), FUNC only, as file offsets.
fn readelf_funcs(lib: &Path) -> Vec<(String, u64, u64)> {
    let text = run(Command::new("readelf")
        .args(["-W", "-S", "--dyn-syms"])
        .arg(lib));
    let mut sections: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('[') {
            let (nr, rest) = rest.split_once(']').unwrap();
            let Ok(nr) = nr.trim().parse::<usize>() else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if nr > 0 {
                let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
                sections.insert(nr, (hex(f[2]), hex(f[3])));
            }
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        if f.len() < 8 || f[3] != "FUNC" {
            continue;
        }
        let Ok(ndx) = f[6].parse::<usize>() else {
            continue;
        };
        let (addr, off) = sections[&ndx];
        let value = u64::from_str_radix(f[1], 16).unwrap();
        out.push((f[7].to_owned(), value - addr + off, f[2].parse().unwrap()));
    }
    out
}

fn func<'a>(funcs: &'a [(String, u64, u64)], name: &str) -> &'a (String, u64, u64) {
    funcs.iter().find(|f| f.0 == name).unwrap()
}

fn build(dir: &Path) -> (PathBuf, PathBuf) {
    let so = libbpf_so();
    let profile = so.parent().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = dir.join("attach_uprobe");
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-I"])
        .arg(manifest.join("../include"))
        .arg("-o")
        .arg(&exe)
        .arg(manifest.join("tests/attach_uprobe.c"))
        .arg("-L")
        .arg(profile)
        .arg("-lbpf")
        .arg(format!("-Wl,-rpath,{}", profile.display())));
    let obj = dir.join("attach_uprobe.bpf.o");
    run(Command::new("clang-16")
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(manifest.join("tests/attach_uprobe.bpf.c"))
        .arg("-o")
        .arg(&obj));
    (exe, obj)
}

fn records_of(dir: &Path, pid: u32) -> Vec<RecordData> {
    registry::scan(dir, false)
        .into_iter()
        .filter(|l| l.pid == pid)
        .flat_map(|l| l.file.records())
        .collect()
}

#[test]
fn uprobes_publish_records_and_fail_like_libbpf() {
    let dir = out_dir();
    let (exe, obj) = build(&dir);
    let ns = format!("attach-uprobe-test-{}", std::process::id());
    let ns_dir = PathBuf::from(format!("/dev/shm/userbpf-{}", unsafe { libc::getuid() })).join(&ns);
    let mut child = Command::new(&exe)
        .arg(&obj)
        .env("USERBPF_NAMESPACE", &ns)
        .env_remove("USERBPF_DIR")
        .env("LD_LIBRARY_PATH", libbpf_so().parent().unwrap())
        .env("USERBPF_BACKEND", "user")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if stdout.read_line(&mut l).unwrap() == 0 {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("child exited early:\n{}\n{err}", lines.join(""));
        }
        let done = l.starts_with("ready");
        lines.push(l);
        if done {
            break;
        }
    }
    let got: HashMap<String, String> = lines
        .iter()
        .filter_map(|l| l.trim_end().split_once(" = "))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    let e = |n: i32| format!("{}", -n);
    let expected = [
        ("attach before load", e(libc::EINVAL)),
        ("attach up_malloc", "ok".into()),
        ("attach up_malloc4", "ok".into()),
        ("attach uret_free", "ok".into()),
        ("attach up_realpath", "ok".into()),
        ("attach multi_cond", "ok".into()),
        ("attach bad_fmt", e(libc::EINVAL)),
        ("attach bad_func", e(libc::ENOENT)),
        ("attach bad_retoff", e(libc::EINVAL)),
        ("attach bad_multi", e(libc::EINVAL)),
        // -LIBBPF_ERRNO__FORMAT
        ("attach ambiguous", e(4003)),
        ("uprobe_opts free pid 0", "ok".into()),
        ("uprobe retprobe raw offset", "ok".into()),
        ("uprobe no such pid", e(libc::ESRCH)),
        ("uprobe offset past the end", e(libc::EINVAL)),
        ("uprobe missing file", e(libc::ENOENT)),
        ("uprobe unresolvable name", e(libc::ENOENT)),
        ("uprobe NULL path", e(libc::EINVAL)),
        ("uprobe unloaded", e(libc::EINVAL)),
        ("uprobe socket program", e(libc::EINVAL)),
        ("uprobe multi program", e(libc::EINVAL)),
        ("uprobe_opts sz 4", e(libc::EINVAL)),
        ("uprobe_opts bad mode", e(libc::EINVAL)),
        ("uprobe_opts legacy cookie", e(libc::EOPNOTSUPP)),
        ("multi syms", "ok".into()),
        ("multi syms and offsets", e(libc::EINVAL)),
        ("multi pattern and cnt", e(libc::EINVAL)),
        ("multi NULL path", e(libc::EINVAL)),
        ("multi nothing", e(libc::EINVAL)),
        ("multi retprobe and session", e(libc::EINVAL)),
        ("multi no match", e(libc::ENOENT)),
        ("multi missing sym", e(libc::ENOENT)),
        ("multi on a uprobe program", e(libc::EINVAL)),
    ];
    for (what, want) in &expected {
        assert_eq!(got.get(*what), Some(want), "{what}\n{}", lines.join(""));
    }
    assert_eq!(lines.last().unwrap().trim_end(), "ready 8");

    // The records, against readelf.
    let libc_path = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    let meta = std::fs::metadata(&libc_path).unwrap();
    let funcs = readelf_funcs(&libc_path);
    let recs = records_of(&ns_dir, pid);
    let progs: HashMap<String, u32> = recs
        .iter()
        .filter(|r| r.kind == kind::PROG)
        .map(|r| (r.name_str(), r.id))
        .collect();
    let links: Vec<&RecordData> = recs.iter().filter(|r| r.kind == kind::LINK).collect();
    let by_prog = |name: &str| -> Vec<&RecordData> {
        links
            .iter()
            .copied()
            .filter(|r| r.name_str() == name)
            .collect()
    };
    for r in &links {
        assert_eq!(r.path_str(), libc_path.to_str().unwrap());
        assert_eq!((r.dev, r.ino), (meta.dev(), meta.ino()));
        assert_eq!(
            Some(&r.prog_id),
            progs.get(&r.name_str()),
            "prog id of {}",
            r.name_str()
        );
    }
    let one = |name: &str| -> RecordData {
        let v = by_prog(name);
        assert_eq!(v.len(), 1, "{name}: {}", v.len());
        *v[0]
    };
    let check =
        |r: &RecordData, kind: AttachKind, off: u64, f: &(String, u64, u64), cookie, pid| {
            assert_eq!(r.type_, kind as u32, "{}", r.name_str());
            assert_eq!(r.offset, off, "{}", r.name_str());
            assert_eq!((r.func_offset, r.func_size), (f.1, f.2), "{}", r.name_str());
            assert_eq!(r.cookie, cookie, "{}", r.name_str());
            assert_eq!(r.pid, pid, "{}", r.name_str());
            assert_eq!(r.ref_ctr_offset, 0);
        };
    let malloc = func(&funcs, "malloc@@GLIBC_2.2.5");
    let free = func(&funcs, "free@@GLIBC_2.2.5");
    let realpath = func(&funcs, "realpath@@GLIBC_2.3");
    check(
        &one("up_malloc"),
        AttachKind::Uprobe,
        malloc.1,
        malloc,
        0,
        0,
    );
    check(
        &one("up_malloc4"),
        AttachKind::Uprobe,
        malloc.1 + 4,
        malloc,
        0,
        0,
    );
    check(&one("uret_free"), AttachKind::Uretprobe, free.1, free, 0, 0);
    check(
        &one("up_realpath"),
        AttachKind::Uprobe,
        realpath.1,
        realpath,
        0,
        0,
    );

    // Every pthread_cond_* FUNC, one record each, all under one link id.
    let cond = by_prog("multi_cond");
    let mut want: Vec<u64> = funcs
        .iter()
        .filter(|f| {
            let base = f.0.split('@').next().unwrap();
            base.len() > 13 && base.starts_with("pthread_cond_")
        })
        .map(|f| f.1)
        .collect();
    let mut have: Vec<u64> = cond.iter().map(|r| r.offset).collect();
    want.sort();
    have.sort();
    assert_eq!(have, want);
    assert!(cond.iter().all(|r| r.id == cond[0].id && r.pid == 0));

    // "manual": free with a cookie for this process, and a raw retprobe.
    let manual = by_prog("manual");
    assert_eq!(manual.len(), 2);
    let m_free = manual
        .iter()
        .find(|r| r.type_ == AttachKind::Uprobe as u32)
        .unwrap();
    check(m_free, AttachKind::Uprobe, free.1, free, 0x1234, pid);
    let m_raw = manual
        .iter()
        .find(|r| r.type_ == AttachKind::Uretprobe as u32)
        .unwrap();
    assert_eq!((m_raw.offset, m_raw.pid, m_raw.cookie), (0x1000, 0, 0));
    assert_ne!(m_free.id, m_raw.id);

    // uprobe_multi by symbols: cookies in order, retprobes, this process.
    let mm = by_prog("manual_multi");
    assert_eq!(mm.len(), 2);
    let mm_malloc = mm.iter().find(|r| r.offset == malloc.1).unwrap();
    let mm_free = mm.iter().find(|r| r.offset == free.1).unwrap();
    check(mm_malloc, AttachKind::Uretprobe, malloc.1, malloc, 11, pid);
    check(mm_free, AttachKind::Uretprobe, free.1, free, 22, pid);
    assert_eq!(mm_malloc.id, mm_free.id);
    let link_ids: std::collections::HashSet<u32> = links.iter().map(|r| r.id).collect();
    assert_eq!(link_ids.len(), 8, "one id per link");

    // bpf_link__destroy takes the records away.
    stdin.write_all(b"go\n").unwrap();
    let mut l = String::new();
    stdout.read_line(&mut l).unwrap();
    assert_eq!(l, "destroyed\n");
    let left: Vec<RecordData> = records_of(&ns_dir, pid)
        .into_iter()
        .filter(|r| r.kind == kind::LINK)
        .collect();
    assert!(left.is_empty(), "{} link records left", left.len());
    stdin.write_all(b"go\n").unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(child.wait().unwrap().success());

    // libbpf's messages.
    for msg in [
        "libbpf: prog 'up_malloc': can't attach BPF program without FD (was it loaded?)\n",
        "libbpf: prog 'bad_fmt': section 'uprobe/libc.so.6' missing ':function[+offset]' specification\n",
        "libbpf: prog 'bad_retoff': uretprobes do not support offset specification\n",
        "libbpf: prog 'bad_multi': invalid format of section definition 'uprobe.multi/libc.so.6'\n",
        "libbpf: elf: failed to find symbol 'no_such_fn_xyz' in '/lib/x86_64-linux-gnu/libc.so.6'\n",
        "libbpf: prog 'manual': failed to resolve full path for 'libnope.so.9': -ENOENT\n",
        "libbpf: bpf_uprobe_opts size (4) is too small\n",
        "libbpf: prog 'manual': user context value is not supported\n",
        "libbpf: prog 'manual': failed to attach multi-uprobe: -EINVAL\n",
    ] {
        assert!(err.contains(msg), "missing {msg:?} in:\n{err}");
    }
    let _ = std::fs::remove_dir_all(&ns_dir);
}
