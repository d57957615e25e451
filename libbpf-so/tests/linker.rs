//! The static linker (`bpf_linker__*`) against libbpf's own: three BPF
//! objects (tests/linker/{a,b,c}.bpf.c: a static subprogram named alike in
//! two files, an extern function, an extern map, duplicate weak maps, a
//! weak function overridden by a strong one, an extern variable, a
//! `.kconfig` extern, data in .data/.rodata/.bss, CO-RE relocations) are
//! linked in several orders by userbpf's libbpf.so and by `bpftool gen
//! object` (the system libbpf's linker). The outputs must be byte for byte
//! the same; the linked object must open with the system libbpf and with
//! ours, with the same programs, sections, instruction counts and maps, and
//! its programs must run (user mode) with the expected results. Plus the
//! API's errors.

mod common;

use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use bpf::cabi::{bpf_linker_file_opts, bpf_linker_opts};
use bpf::implemented::*;
use common::{libbpf_so, run};

const SYSTEM_LIBBPF: &str = "/usr/lib/x86_64-linux-gnu/libbpf.so.1";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn work_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("libbpf-so-linker-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles tests/linker/{a,b,c}.bpf.c into `dir`.
fn objects(dir: &Path) -> Vec<PathBuf> {
    compile(dir, &["a", "b", "c"])
}

/// Compiles tests/linker/NAME.bpf.c into `dir`/NAME.o for each name.
fn compile(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let obj = dir.join(format!("{n}.o"));
            run(Command::new("clang-16")
                .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
                .args(["-I/usr/include/x86_64-linux-gnu", "-I"])
                .arg(manifest().join("../include"))
                .arg("-c")
                .arg(manifest().join(format!("tests/linker/{n}.bpf.c")))
                .arg("-o")
                .arg(&obj));
            obj
        })
        .collect()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// Builds tests/linker/driver.c against our libbpf.so.
fn build_driver(dir: &Path) -> PathBuf {
    let so = libbpf_so();
    let driver = dir.join("driver");
    run(Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror", "-I"])
        .arg(manifest().join("../include"))
        .arg(manifest().join("tests/linker/driver.c"))
        .arg("-L")
        .arg(so.parent().unwrap())
        .arg(format!("-Wl,-rpath,{}", so.parent().unwrap().display()))
        .args(["-lbpf", "-o"])
        .arg(&driver));
    driver
}

#[test]
fn links_like_libbpf() {
    let dir = work_dir("oracle");
    let objs = objects(&dir);
    let driver = build_driver(&dir);
    let system_driver = Path::new(SYSTEM_LIBBPF).exists().then(|| {
        let d = dir.join("driver_system");
        run(Command::new("gcc")
            .args(["-O2", "-Wall", "-Werror", "-DOPEN_ONLY", "-I"])
            .arg(manifest().join("../include"))
            .arg(manifest().join("tests/linker/driver.c"))
            .arg(SYSTEM_LIBBPF)
            .arg("-o")
            .arg(&d));
        d
    });
    let bpftool = have("bpftool");
    if !bpftool {
        eprintln!("skipping the byte comparison: no bpftool");
    }
    if system_driver.is_none() {
        eprintln!("skipping the system libbpf checks: no {SYSTEM_LIBBPF}");
    }
    // Orders (a single object, with unresolved externs, too). When B's or C's extern `counts` comes before A's definition,
    // libbpf's linker keeps the extern's DATASEC offset (a quirk of
    // `linker_append_btf`), so the object it makes (and ours, the same
    // bytes) fails to open: "map relo failed to find map".
    for (order, loadable) in [
        ("abc", true),
        ("acb", true),
        ("bca", false),
        ("cab", false),
        ("a", false),
        ("c", false),
    ] {
        let inputs: Vec<&PathBuf> = order.bytes().map(|c| &objs[(c - b'a') as usize]).collect();
        let ours_dir = dir.join(format!("ours-{order}"));
        let ref_dir = dir.join(format!("ref-{order}"));
        std::fs::create_dir_all(&ours_dir).unwrap();
        std::fs::create_dir_all(&ref_dir).unwrap();
        let ours = ours_dir.join("linked.o");
        let reference = ref_dir.join("linked.o");
        run(Command::new(&driver).arg("link").arg(&ours).args(&inputs));
        if bpftool {
            run(Command::new("bpftool")
                .args(["gen", "object"])
                .arg(&reference)
                .args(&inputs));
            let (a, b) = (
                std::fs::read(&ours).unwrap(),
                std::fs::read(&reference).unwrap(),
            );
            assert!(
                a == b,
                "{order}: {} differs from bpftool's {}",
                ours.display(),
                reference.display()
            );
        }
        if !loadable {
            continue;
        }
        let show = |obj: &Path| {
            run(Command::new(&driver)
                .arg("show")
                .arg(obj)
                .env("USERBPF_BACKEND", "user"))
        };
        let out = show(&ours);
        println!("{order}:\n{out}");
        for line in [
            "prog prog_a sec raw_tp/sys_enter insns 38",
            "prog prog_b sec raw_tp/sys_enter insns 25",
            "prog prog_c sec raw_tp/sys_exit insns 8",
            "prog prog_d sec raw_tp/sys_exit insns 33",
            "map counts type 2 max 4 key 4 value 8",
            "map shared type 1 max 8 key 4 value 4",
            "map linked.bss type 2 max 1 key 4 value 24",
            "map linked.kconfig type 2 max 1 key 4 value 4",
            // helper(2) * 3 + add_b(5) (10 + 10 + 100) + 7 + a_bss + 4000 + 10000
            "run prog_a round 0 retval 14134",
            "run prog_a round 1 retval 14135",
            // add_b(1) (2 + 10 + 100) + 100 + b_bss[1]
            "run prog_b round 0 retval 223",
            "run prog_c round 0 retval 21",
            // B's strong weak_fn(10) + (version > 0) + hits * 1000
            "run prog_d round 0 retval 1111",
            "run prog_d round 1 retval 2111",
            "counts[0] = 2",
            "counts[1] = 12",
            "counts[2] = 14",
            "shared[0] = 3",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{order}: no '{line}' in\n{out}"
            );
        }
        if bpftool {
            assert_eq!(
                out,
                show(&reference),
                "{order}: bpftool's object runs differently"
            );
        }
        if let Some(system_driver) = &system_driver {
            let open_only = |obj: &Path| run(Command::new(system_driver).arg("show").arg(obj));
            let sys = open_only(&ours);
            let ours_open: Vec<&str> = out.lines().filter(|l| !l.starts_with("run ")).collect();
            let ours_open: Vec<&str> = ours_open
                .into_iter()
                .filter(|l| l.starts_with("prog ") || l.starts_with("map "))
                .collect();
            assert_eq!(
                sys.lines().collect::<Vec<_>>(),
                ours_open,
                "{order}: the system libbpf sees another object"
            );
            if bpftool {
                assert_eq!(sys, open_only(&reference));
            }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn api_contract_and_errors() {
    let dir = work_dir("api");
    let objs = objects(&dir);
    let a = std::fs::read(&objs[0]).unwrap();
    let cpath = |p: &Path| CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: (the whole test) every pointer passed is NULL, a live linker,
    // a C string or a buffer of the given size.
    unsafe {
        assert!(bpf_linker__new(std::ptr::null(), std::ptr::null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let bad = bpf_linker_opts { sz: 1 };
        let out = cpath(&dir.join("out.o"));
        assert!(bpf_linker__new(out.as_ptr(), &bad).is_null());
        assert_eq!(errno(), libc::EINVAL);
        assert!(bpf_linker__new_fd(-1, std::ptr::null()).is_null());
        assert_eq!(errno(), libc::EINVAL);
        let missing = cpath(&dir.join("no/such/dir/out.o"));
        assert!(bpf_linker__new(missing.as_ptr(), std::ptr::null()).is_null());
        assert_eq!(errno(), libc::ENOENT);
        bpf_linker__free(std::ptr::null_mut());

        // The file-based link and the fd/buffer-based one agree.
        let l = bpf_linker__new(out.as_ptr(), std::ptr::null());
        assert!(!l.is_null());
        let nofile = cpath(&dir.join("nope.o"));
        assert_eq!(
            bpf_linker__add_file(l, nofile.as_ptr(), std::ptr::null()),
            -libc::ENOENT
        );
        let fopts = bpf_linker_file_opts { sz: 2 };
        let a_path = cpath(&objs[0]);
        assert_eq!(
            bpf_linker__add_file(l, a_path.as_ptr(), &fopts),
            -libc::EINVAL
        );
        let junk = [0u8; 64];
        assert_eq!(
            bpf_linker__add_buf(
                l,
                junk.as_ptr() as *mut c_void,
                junk.len(),
                std::ptr::null()
            ),
            -libc::EINVAL
        );
        assert_eq!(
            bpf_linker__add_buf(l, a.as_ptr() as *mut c_void, 0, std::ptr::null()),
            -libc::EINVAL
        );
        assert_eq!(bpf_linker__add_fd(l, -1, std::ptr::null()), -libc::EINVAL);
        for o in &objs {
            let p = cpath(o);
            assert_eq!(bpf_linker__add_file(l, p.as_ptr(), std::ptr::null()), 0);
        }
        assert_eq!(bpf_linker__finalize(l), 0);
        assert_eq!(bpf_linker__finalize(l), -libc::EINVAL);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(
            bpf_linker__add_file(l, a_path.as_ptr(), std::ptr::null()),
            -libc::EINVAL
        );
        bpf_linker__free(l);
        let from_files = std::fs::read(dir.join("out.o")).unwrap();
        assert_eq!(&from_files[..4], b"\x7fELF");

        let name = CString::new("linked").unwrap();
        let memfd = libc::memfd_create(name.as_ptr(), 0);
        assert!(memfd >= 0);
        let l = bpf_linker__new_fd(memfd, std::ptr::null());
        assert!(!l.is_null());
        assert_eq!(
            bpf_linker__add_buf(l, a.as_ptr() as *mut c_void, a.len(), std::ptr::null()),
            0
        );
        for o in &objs[1..] {
            let f = std::fs::File::open(o).unwrap();
            use std::os::fd::AsRawFd;
            assert_eq!(bpf_linker__add_fd(l, f.as_raw_fd(), std::ptr::null()), 0);
        }
        assert_eq!(bpf_linker__finalize(l), 0);
        bpf_linker__free(l);
        // new_fd leaves the fd open.
        let size = libc::lseek(memfd, 0, libc::SEEK_END);
        assert_eq!(size as usize, from_files.len());
        let mut buf = vec![0u8; from_files.len()];
        assert_eq!(
            libc::pread(memfd, buf.as_mut_ptr().cast(), buf.len(), 0),
            buf.len() as isize
        );
        libc::close(memfd);
        assert!(
            buf == from_files,
            "fd/buffer link differs from the file link"
        );

        // Two strong definitions of the same symbols conflict.
        let l = bpf_linker__new(out.as_ptr(), std::ptr::null());
        assert_eq!(
            bpf_linker__add_file(l, a_path.as_ptr(), std::ptr::null()),
            0
        );
        assert_eq!(
            bpf_linker__add_file(l, a_path.as_ptr(), std::ptr::null()),
            -libc::EINVAL
        );
        bpf_linker__free(l);
    }
}

/// Conflicts libbpf refuses, with its messages (checked against libbpf
/// 1.7's linker built from source).
#[test]
fn conflicts_fail_with_libbpfs_messages() {
    let dir = work_dir("conflicts");
    let objs = compile(&dir, &["a", "b", "bad_map", "bad_func", "bad_license"]);
    let driver = build_driver(&dir);
    let o = |n: &str| {
        objs.iter()
            .find(|p| p.file_stem().unwrap() == n)
            .unwrap()
            .clone()
    };
    for (inputs, message) in [
        (
            ["a", "bad_map"],
            "libbpf: global 'counts': map max_entries mismatch",
        ),
        (
            ["bad_map", "a"],
            "libbpf: global 'counts': map max_entries mismatch",
        ),
        (
            ["b", "bad_func"],
            "libbpf: global 'add_b': incompatible number of func_proto params 1 and 2",
        ),
        (
            ["a", "a"],
            "libbpf: conflicting non-weak symbol #15 (prog_a) definition in '",
        ),
        (
            ["a", "bad_license"],
            "libbpf: non-identical contents of section 'license' are not supported",
        ),
    ] {
        let out = Command::new(&driver)
            .arg("link")
            .arg(dir.join("out.o"))
            .args(inputs.iter().map(|n| o(n)))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{inputs:?} linked");
        assert!(
            stderr.lines().any(|l| l.starts_with(message)),
            "{inputs:?}: no '{message}' in\n{stderr}"
        );
        assert!(stderr.contains("failed (errno 22)"), "{inputs:?}: {stderr}");
    }
}
