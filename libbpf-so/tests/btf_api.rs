//! libbpf's BTF API (`btf__*`, `btf_ext__*`, `btf_dump__*`) on our
//! `libbpf.so.1` against libbpf itself.
//!
//! `tests/btf_api.c` is built once against the libbpf-dev headers and linked
//! with the system libbpf (Debian's 1.1.2); the same binary then runs on
//! that library, on libbpf 1.7 when `target/real-libbpf` has it
//! (`compat-tests/scripts/build-real-libbpf.sh`, or `$REAL_LIBBPF_DIR`),
//! and on ours (`LD_LIBRARY_PATH`). Its modes:
//!
//! - `api`: vmlinux BTF (load, lookups by id / name / kind, strings,
//!   sizes, alignment, raw data and byte swapping), the parse functions on
//!   raw BTF, a clang-built object and bad files (errno of each), split BTF,
//!   `btf__add_type` / `btf__add_btf`, `btf__load_from_kernel_by_id`;
//! - `build`: every `btf__add_*` 1.1 has, their errors, the raw bytes;
//! - `data`: `btf_dump__dump_type_data` on vmlinux types (task_struct, sk_buff,
//!   unions, bitfields, enums, pointers, char arrays, a VAR, the per-CPU
//!   DATASEC) and on built types (floats, `__int128`, ENUM64, enum
//!   bitfields, packed), filled with six patterns, under seven option sets,
//!   truncated and misaligned;
//! - `decl`: `btf_dump__dump_type` and `btf_dump__emit_type_decl`;
//! - `dumpall`: every vmlinux type as C (`bpftool btf dump format c`).
//!
//! Ours must print exactly what libbpf 1.7 prints. libbpf 1.1 differs in
//! places (1.7 fixed typed-dump bugs and prints `(void)` for empty
//! prototypes): against 1.1 the `api` and `build` modes must match
//! entirely; `data` and `decl` are compared case by case, on every case in
//! which 1.1 and 1.7 agree (or, without 1.7 at hand, every case outside the
//! known differences), and `dumpall` with `(void)` read as `()`.
//!
//! `tests/btf_api17.c`, built against libbpf 1.7's own headers (from the
//! libbpf-sys crate in cargo's registry), covers what changed after 1.1 or
//! is newer (`btf__new_split`, `btf_ext__raw_data`, `btf__add_type_attr`,
//! the `emit_strings` option, ...); it runs when libbpf 1.7 is at hand.
//!
//! Where libbpf reads past `data_sz` (zero checks of members that start
//! beyond the end), ours reads zeros: the truncated cases keep zeros there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{libbpf_so, profile_dir, run};

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libbpf-so-btf-api");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

const SYSTEM_LIBBPF: &str = "/usr/lib/x86_64-linux-gnu/libbpf.so.1";
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The directory holding libbpf 1.7's `libbpf.so.1`, if built.
fn real_libbpf_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("REAL_LIBBPF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().parent().unwrap().join("real-libbpf"));
    dir.join("libbpf.so.1").exists().then_some(dir)
}

/// The libbpf 1.7 tree inside the libbpf-sys crate, for its headers.
fn libbpf_17_source() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registry = cargo_home.join("registry/src");
    for index in std::fs::read_dir(registry).ok()?.flatten() {
        for krate in std::fs::read_dir(index.path()).ok()?.flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            let src = krate.path().join("libbpf");
            if name.starts_with("libbpf-sys-1.7.") && src.join("src/btf.h").exists() {
                return Some(src);
            }
        }
    }
    None
}

/// Skips (with a note) unless the tools and inputs are there.
fn prerequisites() -> bool {
    let missing: Vec<&str> = [
        ("cc", have("cc")),
        ("clang-16", have("clang-16")),
        (
            "libbpf-dev headers",
            Path::new("/usr/include/bpf/btf.h").exists(),
        ),
        ("system libbpf", Path::new(SYSTEM_LIBBPF).exists()),
        ("kernel BTF", Path::new(VMLINUX).exists()),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(what, _)| what)
    .collect();
    if !missing.is_empty() {
        eprintln!("skipped: missing {}", missing.join(", "));
        return false;
    }
    true
}

/// The inputs of `api`: a clang-built object, an object without `.BTF`, a
/// text file and an empty one.
struct Inputs {
    bpf_o: PathBuf,
    nobtf_o: PathBuf,
    text: PathBuf,
    empty: PathBuf,
}

const BPF_PROG: &str = r#"
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct event { int pid; char comm[16]; unsigned int flags:3, mode:5; };
__u64 hits = 1;
struct event last;

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	__u32 key = ctx->ingress_ifindex;
	__u64 *v = bpf_map_lookup_elem(&counts, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
	last.pid = key;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"#;

/// Built once per process: tests run in parallel threads, and one
/// rewriting a file another is reading would race.
fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(build_inputs)
}

fn build_inputs() -> Inputs {
    let dir = out_dir();
    let src = dir.join("prog.bpf.c");
    std::fs::write(&src, BPF_PROG).unwrap();
    let bpf_o = dir.join("prog.bpf.o");
    let mut clang = Command::new("clang-16");
    clang.args(["-g", "-O2", "-target", "bpf", "-c"]);
    for multiarch in [
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu",
    ] {
        if Path::new(multiarch).exists() {
            clang.arg(format!("-I{multiarch}"));
        }
    }
    run(clang.arg(&src).arg("-o").arg(&bpf_o));
    let nobtf_c = dir.join("nobtf.c");
    std::fs::write(&nobtf_c, "int f(void) { return 1; }\n").unwrap();
    let nobtf_o = dir.join("nobtf.o");
    run(Command::new("cc")
        .arg("-c")
        .arg(&nobtf_c)
        .arg("-o")
        .arg(&nobtf_o));
    let text = dir.join("text.txt");
    std::fs::write(&text, "hello world\n").unwrap();
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    Inputs {
        bpf_o,
        nobtf_o,
        text,
        empty,
    }
}

/// Compiles `tests/<name>.c`.
fn compile(name: &str, flags: &[String]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/{name}.c"));
    let exe = out_dir().join(name);
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-Wl,-z,now", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(flags)
        .arg("-lbpf"));
    exe
}

/// Which library a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lib {
    System,
    Real17,
    Ours,
}

/// Runs `exe args` on `lib`; its stdout.
fn run_on(exe: &Path, args: &[&str], lib: Lib) -> String {
    let mut cmd = Command::new(exe);
    // The userspace backend is under test (as root, `auto` would load
    // kernel-type programs into the kernel).
    cmd.args(args)
        .env_remove("LIBBPF_LOG_LEVEL")
        .env("USERBPF_BACKEND", "user");
    match lib {
        Lib::System => cmd.env_remove("LD_LIBRARY_PATH"),
        Lib::Real17 => cmd.env("LD_LIBRARY_PATH", real_libbpf_dir().unwrap()),
        Lib::Ours => cmd.env("LD_LIBRARY_PATH", libbpf_so().parent().unwrap()),
    };
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} on {lib:?} failed ({}):\n{}\n{}",
        exe.display(),
        out.status,
        tail(&stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Fails with the first differing line and some context.
fn assert_same(what: &str, got: &str, want: &str) {
    if got == want {
        return;
    }
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let at = g
        .iter()
        .zip(&w)
        .position(|(a, b)| a != b)
        .unwrap_or(g.len().min(w.len()));
    let show = |lines: &[&str]| {
        lines[at.saturating_sub(5)..(at + 5).min(lines.len())]
            .iter()
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{what}: first difference at line {} ({} vs {} lines)\n--- ours:\n{}\n--- libbpf:\n{}",
        at + 1,
        g.len(),
        w.len(),
        show(&g),
        show(&w)
    );
}

/// Splits output into cases: a case starts at a line beginning with `== `
/// or `decl `. Returns (header, text) in order.
fn cases(s: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in s.split_inclusive('\n') {
        if line.starts_with("== ") || line.starts_with("decl ") || out.is_empty() {
            let header = line.split(':').next().unwrap_or("").to_string();
            out.push((header, String::new()));
        }
        out.last_mut().unwrap().1.push_str(line);
    }
    out
}

/// Ours against libbpf 1.1 case by case: every case in which 1.1 agrees
/// with 1.7 (when 1.7 ran), else every case `comparable` keeps. Returns
/// (compared, skipped).
fn compare_cases(
    mode: &str,
    ours: &str,
    system: &str,
    real17: Option<&str>,
    comparable: impl Fn(&str) -> bool,
) -> (usize, usize) {
    let ours_cases = cases(ours);
    let sys = cases(system);
    let r17 = real17.map(cases);
    assert_eq!(ours_cases.len(), sys.len(), "{mode}: case count");
    let (mut compared, mut skipped) = (0, 0);
    for (i, (header, text)) in ours_cases.iter().enumerate() {
        let (sys_header, want) = &sys[i];
        assert_eq!(header, sys_header, "{mode}: case {i}");
        let agree = match &r17 {
            Some(r17) => r17.get(i).map(|(_, t)| t) == Some(want),
            None => comparable(header),
        };
        if agree {
            assert_same(&format!("{mode} vs libbpf 1.1: {header}"), text, want);
            compared += 1;
        } else {
            skipped += 1;
        }
    }
    (compared, skipped)
}

/// Runs `mode` on the three libraries; ours must equal libbpf 1.7.
/// Returns (ours, system, 1.7).
fn three_runs(exe: &Path, args: &[&str]) -> (String, String, Option<String>) {
    let ours = run_on(exe, args, Lib::Ours);
    let system = run_on(exe, args, Lib::System);
    let real17 = real_libbpf_dir().map(|_| run_on(exe, args, Lib::Real17));
    if let Some(real17) = &real17 {
        assert_same(&format!("{} vs libbpf 1.7", args[0]), &ours, real17);
    }
    (ours, system, real17)
}

fn note_real17() {
    if real_libbpf_dir().is_none() {
        eprintln!(
            "note: libbpf 1.7 is not built (compat-tests/scripts/build-real-libbpf.sh): \
             compared with libbpf 1.1 only"
        );
    }
}

/// Built once per process: a test re-linking it while another runs it
/// would fail the run with ETXTBSY.
fn btf_api_exe() -> Option<PathBuf> {
    static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
    EXE.get_or_init(|| {
        // Built against the system headers and library; the library is
        // chosen at run time.
        prerequisites().then(|| compile("btf_api", &[]))
    })
    .clone()
}

#[test]
fn api_matches_libbpf() {
    let Some(exe) = btf_api_exe() else {
        return;
    };
    note_real17();
    let inputs = inputs();
    let args = [
        "api",
        inputs.bpf_o.to_str().unwrap(),
        inputs.nobtf_o.to_str().unwrap(),
        inputs.text.to_str().unwrap(),
        inputs.empty.to_str().unwrap(),
    ];
    let (ours, system, _) = three_runs(&exe, &args);
    assert!(ours.ends_with("api done\n"), "{}", tail(&ours));
    assert_same("api vs libbpf 1.1", &ours, &system);
    println!("api: {} lines identical", ours.lines().count());
}

#[test]
fn build_matches_libbpf() {
    let Some(exe) = btf_api_exe() else {
        return;
    };
    note_real17();
    let (ours, system, _) = three_runs(&exe, &["build"]);
    assert!(ours.ends_with("build done\n"), "{}", tail(&ours));
    assert_same("build vs libbpf 1.1", &ours, &system);
    println!("build: {} lines identical", ours.lines().count());
}

#[test]
fn typed_data_dump_matches_libbpf() {
    let Some(exe) = btf_api_exe() else {
        return;
    };
    note_real17();
    let (ours, system, real17) = three_runs(&exe, &["data"]);
    assert!(ours.ends_with("data done\n"), "{}", tail(&ours));
    // Without 1.7: what 1.7 fixed (zero members under emit_zeroes, bitfields
    // at the end of pt_regs, char members of the per-CPU section).
    let (compared, skipped) = compare_cases("data", &ours, &system, real17.as_deref(), |header| {
        !(header.contains("zeroes") || header.contains("pt_regs") || header.contains("percpu"))
    });
    assert!(compared > 1000, "only {compared} cases compared");
    println!(
        "data: {} bytes, {} cases; {compared} identical to libbpf 1.1 ({skipped} not compared: \
         1.1 and 1.7 differ){}",
        ours.len(),
        compared + skipped,
        if real17.is_some() {
            "; all identical to libbpf 1.7"
        } else {
            ""
        }
    );
}

#[test]
fn c_declarations_match_libbpf() {
    let Some(exe) = btf_api_exe() else {
        return;
    };
    note_real17();
    let (ours, system, real17) = three_runs(&exe, &["decl"]);
    assert!(ours.ends_with("decl done\n"), "{}", tail(&ours));
    // 1.1 prints `()` where 1.7 prints `(void)`: without 1.7, only the
    // comparison with `(void)` read as `()` below.
    let (compared, skipped) = compare_cases("decl", &ours, &system, real17.as_deref(), |_| false);
    let normalize = |s: &str| s.replace("(void)", "()");
    assert_same(
        "decl vs libbpf 1.1, (void) as ()",
        &normalize(&ours),
        &normalize(&system),
    );
    println!(
        "decl: {compared} cases identical to libbpf 1.1 ({skipped} not compared as they are), \
         all identical with (void) read as (){}",
        if real17.is_some() {
            "; all identical to libbpf 1.7"
        } else {
            ""
        }
    );

    let (ours, system, real17) = three_runs(&exe, &["dumpall"]);
    assert!(ours.ends_with("dumpall done\n"), "{}", tail(&ours));
    assert_same(
        "dumpall vs libbpf 1.1, (void) as ()",
        &normalize(&ours),
        &normalize(&system),
    );
    println!(
        "dumpall: {} bytes of C{}",
        ours.len(),
        if real17.is_some() {
            ", identical to libbpf 1.7"
        } else {
            ""
        }
    );
}

#[test]
fn libbpf_17_additions_match_libbpf_17() {
    if !prerequisites() {
        return;
    }
    let (Some(real17), Some(src)) = (real_libbpf_dir(), libbpf_17_source()) else {
        eprintln!("skipped: needs libbpf 1.7 (target/real-libbpf) and the libbpf-sys sources");
        return;
    };
    // libbpf 1.7's headers as <bpf/...>.
    let include = out_dir().join("include17");
    std::fs::create_dir_all(include.join("bpf")).unwrap();
    for h in [
        "btf.h",
        "libbpf.h",
        "libbpf_common.h",
        "libbpf_legacy.h",
        "libbpf_version.h",
        "bpf.h",
    ] {
        std::fs::copy(src.join("src").join(h), include.join("bpf").join(h)).unwrap();
    }
    // Linked against ours, which exports every 1.7 symbol at its node.
    let exe = compile(
        "btf_api17",
        &[
            format!("-I{}", include.display()),
            format!("-I{}", src.join("include/uapi").display()),
            format!("-L{}", real17.display()),
        ],
    );
    let inputs = inputs();
    let args = [
        inputs.bpf_o.to_str().unwrap(),
        inputs.nobtf_o.to_str().unwrap(),
    ];
    let ours = run_on(&exe, &args, Lib::Ours);
    let want = run_on(&exe, &args, Lib::Real17);
    assert!(ours.ends_with("done\n"), "{}", tail(&ours));
    assert_same("btf_api17 vs libbpf 1.7", &ours, &want);
    println!(
        "libbpf 1.7 additions: {} lines identical",
        ours.lines().count()
    );
}
