//! `include/`: our own C headers for libbpf's userspace API, `libbpf.pc`,
//! and `src/cabi.rs`, the Rust mirror of the headers' types:
//!
//! - `cabi_rs_is_generated_from_the_headers`: bindgen over `include/bpf`
//!   gives the committed `src/cabi.rs`; `UPDATE_CABI=1` rewrites it;
//! - `struct_layouts_match_libbpf`: size, alignment and field offsets and
//!   sizes of every struct in our headers equal those of Debian's
//!   libbpf-dev 1.1.2 headers for what 1.1.2 has, [`SINCE_1_1_2`] for the
//!   rest, and libbpf 1.7's own headers (libbpf-sys's copy in the cargo
//!   registry) for everything, when that copy is there;
//! - `prototypes_match_libbpf_1_7`: every symbol of `abi/symbols.tsv` is
//!   declared, with the function type libbpf 1.7's headers give it;
//! - `headers_compile_as_strict_c_and_cpp`: `-Wall -Wextra -Werror` as
//!   gnu11 (gcc and clang) and C++ (g++), macros and inline helpers used;
//! - `bpftool_skeleton_builds_against_ours`: an app around a
//!   `bpftool gen skeleton` header compiles with only our headers through
//!   `pkg-config libbpf` (PKG_CONFIG_PATH=target/<profile>), links against
//!   our libbpf.so and runs.

mod common;

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{profile_dir, run};

// --- paths and tools ----------------------------------------------------------

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn include_dir() -> PathBuf {
    repo().join("include")
}

const CABI_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cabi.rs");

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("libbpf-so-headers")
        .join(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn tool(var: &str, default: &str) -> String {
    env::var(var).unwrap_or_else(|_| default.to_string())
}

/// Fails (not skips) without a tool `scripts/setup.sh test` installs.
fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is missing: run `bash scripts/setup.sh test` (as root it installs it)"
    );
}

/// The three headers that declare functions, as apps include them.
const INCLUDES: &str = "#include <bpf/libbpf.h>\n#include <bpf/bpf.h>\n#include <bpf/btf.h>\n";

/// Structs and symbols that libbpf 1.7's headers do not have yet: the three
/// LIBBPF_1.8.0 functions we export, and their opts structs.
const LIBBPF_1_8_STRUCTS: &[&str] = &["bpf_tracing_multi_opts", "btf_new_opts"];
const LIBBPF_1_8_NODE: &str = "LIBBPF_1.8.0";

/// libbpf 1.7's public headers, from the libbpf-sys 1.7 crate that
/// compat-tests builds (its sources sit in the cargo registry), copied as
/// `<dir>/bpf/*.h` (a directory per caller: tests run in parallel). None
/// if that crate has not been fetched.
fn libbpf_1_7_headers(caller: &str) -> Option<PathBuf> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let mut found = None;
    for index in fs::read_dir(cargo_home.join("registry/src"))
        .ok()?
        .flatten()
    {
        for krate in fs::read_dir(index.path()).into_iter().flatten().flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            let src = krate.path().join("libbpf/src");
            if name.starts_with("libbpf-sys-1.7.") && src.join("libbpf.h").is_file() {
                found = Some(src);
            }
        }
    }
    let src = found?;
    let dir = out_dir(&format!("libbpf-1.7-{caller}"));
    fs::create_dir_all(dir.join("bpf")).unwrap();
    for h in [
        "libbpf.h",
        "bpf.h",
        "btf.h",
        "libbpf_common.h",
        "libbpf_legacy.h",
        "libbpf_version.h",
    ] {
        fs::copy(src.join(h), dir.join("bpf").join(h)).unwrap();
    }
    Some(dir)
}

/// Compiles `src` (C, or C++ if `cxx`) with `args`, runs it, returns stdout.
fn build_and_run(dir: &Path, name: &str, src: &str, cxx: bool, args: &[String]) -> String {
    let (ext, compiler) = if cxx { ("cc", "g++") } else { ("c", "cc") };
    let file = dir.join(format!("{name}.{ext}"));
    fs::write(&file, src).unwrap();
    let exe = dir.join(name);
    run(Command::new(compiler)
        .args(args)
        .arg(&file)
        .arg("-o")
        .arg(&exe));
    run(&mut Command::new(&exe))
}

// --- (a) src/cabi.rs ------------------------------------------------------------

const CABI_PREAMBLE: &str = "\
//! The C types of our libbpf headers (`include/bpf/libbpf.h`, `bpf.h`,
//! `btf.h`, with `libbpf_common.h`, `libbpf_legacy.h` and
//! `libbpf_version.h`): structs, unions, enum constants, typedefs and
//! macro constants; no functions.
//!
//! Generated by bindgen in `tests/headers.rs`; do not edit. After changing a
//! header, regenerate with
//! `UPDATE_CABI=1 cargo test --release -p userbpf-libbpf-so --test headers cabi`.
//!
//! C enums are integer type aliases with one constant per enumerator (no
//! enum prefix: `LIBBPF_WARN`), as C code spells them. Types the headers
//! take from `<linux/bpf.h>` are not mirrored: `bpf_attach_type` is a
//! plain integer and `bpf_iter_link_info` opaque. Layouts are x86_64 Linux;
//! the `const _` blocks check them at compile time.

#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all
)]

";

/// Rust for the types our structs use from `<linux/bpf.h>`, which bindgen
/// is told not to mirror (the kernel's UAPI, not libbpf's API).
const CABI_UAPI_STANDINS: &[&str] = &[
    "/// `enum bpf_attach_type` of `<linux/bpf.h>`.",
    "pub type bpf_attach_type = ::core::ffi::c_uint;",
    "/// `union bpf_iter_link_info` of `<linux/bpf.h>`, only pointed to.",
    "#[repr(C)]",
    "#[derive(Debug, Copy, Clone)]",
    "pub struct bpf_iter_link_info {",
    "    _unused: [u8; 0],",
    "}",
];

/// `re`-escapes a path for bindgen's file allowlist.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != '/' && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `src/cabi.rs` as it follows from the headers today.
fn generate_cabi() -> String {
    let include = include_dir();
    let mut builder = bindgen::Builder::default()
        .header_contents("userbpf-cabi.h", INCLUDES)
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_file(format!(
            "{}/bpf/[a-z_]+\\.h",
            regex_escape(&include.display().to_string())
        ))
        .blocklist_file(".*/linux/.*")
        .ignore_functions()
        .use_core()
        .ctypes_prefix("::core::ffi")
        .derive_default(true)
        .prepend_enum_name(false)
        .generate_comments(false)
        .formatter(bindgen::Formatter::None);
    for line in CABI_UAPI_STANDINS {
        builder = builder.raw_line(*line);
    }
    let bindings = builder.generate().unwrap_or_else(|e| {
        panic!(
            "bindgen over {}: {e}. It needs libclang (Debian: libclang1-16, \
             which `bash scripts/setup.sh test` installs); LIBCLANG_PATH picks another",
            include.display()
        )
    });
    rustfmt(&format!("{CABI_PREAMBLE}{bindings}"))
}

/// Formats as `cargo fmt` does (edition 2021, no rustfmt.toml).
fn rustfmt(src: &str) -> String {
    use std::io::Write as _;
    let rustfmt = tool("RUSTFMT", "rustfmt");
    let mut child = Command::new(&rustfmt)
        .args(["--edition", "2021", "--emit", "stdout"])
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{rustfmt}: {e} (rustup component add rustfmt)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = src.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "rustfmt failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cabi_rs_is_generated_from_the_headers() {
    let fresh = generate_cabi();
    let committed = fs::read_to_string(CABI_RS).unwrap_or_default();
    if fresh == committed {
        return;
    }
    if env::var_os("UPDATE_CABI").is_some() {
        fs::write(CABI_RS, &fresh).unwrap();
        eprintln!("rewrote {CABI_RS}");
        return;
    }
    let new = out_dir("cabi").join("cabi.rs");
    fs::write(&new, &fresh).unwrap();
    let diff = Command::new("diff")
        .arg("-u")
        .arg(CABI_RS)
        .arg(&new)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let head: Vec<&str> = diff.lines().take(80).collect();
    panic!(
        "src/cabi.rs does not follow from include/bpf/*.h (fresh copy: {}). Regenerate with\n  \
         UPDATE_CABI=1 cargo test --release -p userbpf-libbpf-so --test headers cabi\n\n{}",
        new.display(),
        head.join("\n")
    );
}

// --- (b) struct layouts ----------------------------------------------------------

/// Whether a [`SINCE_1_1_2`] struct is absent from libbpf 1.1.2 altogether
/// or only lacks some fields (and may have grown).
#[derive(PartialEq)]
enum Since {
    NewStruct,
    NewFields,
}
use Since::{NewFields, NewStruct};

/// A [`SINCE_1_1_2`] entry: struct, [`Since`], size, `(field, offset)`s.
type Newer = (&'static str, Since, usize, &'static [(&'static str, usize)]);

/// What libbpf 1.1.2 (Debian's libbpf-dev) does not have, with the layout
/// it must have (x86_64): struct, how, its size, and the new fields with
/// their offsets (all fields for a new struct). Values marked §3.2/§3.5
/// are the layouts listed in shared/research/libbpf-abi.md (which shows
/// HEAD: there `bpf_map_create_opts` has 1.8's `log_opts@72` and is 80
/// bytes, 72 in 1.7); the others are libbpf 1.7's (1.8's for the two
/// LIBBPF_1_8_STRUCTS), also checked against 1.7's headers below when
/// they are there.
#[rustfmt::skip]
const SINCE_1_1_2: &[Newer] = &[
    // §3.2
    ("bpf_object_open_opts", NewFields, 88, &[("bpf_token_path", 80)]),
    ("perf_buffer_opts", NewFields, 16, &[("sample_period", 8)]),
    ("bpf_perf_event_opts", NewFields, 24, &[("force_ioctl_attach", 16), ("dont_enable", 17)]),
    ("bpf_kprobe_opts", NewFields, 32, &[("attach_mode", 28)]),
    ("bpf_uprobe_opts", NewFields, 48, &[("attach_mode", 40)]),
    ("bpf_raw_tracepoint_opts", NewStruct, 16, &[("sz", 0), ("cookie", 8)]),
    ("bpf_kprobe_multi_opts", NewFields, 48, &[("session", 41), ("unique_match", 42)]),
    ("bpf_uprobe_multi_opts", NewStruct, 56, &[
        ("sz", 0), ("syms", 8), ("offsets", 16), ("ref_ctr_offsets", 24), ("cookies", 32),
        ("cnt", 40), ("retprobe", 48), ("session", 49),
    ]),
    ("bpf_map_create_opts", NewFields, 72, &[
        ("value_type_btf_obj_fd", 48), ("token_fd", 52), ("excl_prog_hash", 56),
        ("excl_prog_hash_size", 64),
    ]),
    ("bpf_prog_load_opts", NewFields, 120, &[
        ("log_true_size", 104), ("token_fd", 108), ("fd_array_cnt", 112),
    ]),
    // §3.5
    ("bpf_map_skeleton", NewFields, 32, &[("link", 24)]),
    // libbpf 1.7
    ("bpf_netfilter_opts", NewStruct, 24, &[
        ("sz", 0), ("pf", 8), ("hooknum", 12), ("priority", 16), ("flags", 20),
    ]),
    ("bpf_tcx_opts", NewStruct, 32, &[
        ("sz", 0), ("flags", 8), ("relative_fd", 12), ("relative_id", 16), ("expected_revision", 24),
    ]),
    ("bpf_netkit_opts", NewStruct, 32, &[
        ("sz", 0), ("flags", 8), ("relative_fd", 12), ("relative_id", 16), ("expected_revision", 24),
    ]),
    ("bpf_cgroup_opts", NewStruct, 32, &[
        ("sz", 0), ("flags", 8), ("relative_fd", 12), ("relative_id", 16), ("expected_revision", 24),
    ]),
    ("bpf_xdp_query_opts", NewFields, 48, &[("feature_flags", 32), ("xdp_zc_max_segs", 40)]),
    ("bpf_tc_hook", NewFields, 32, &[("handle", 20), ("qdisc", 24)]),
    ("gen_loader_opts", NewFields, 40, &[("gen_hash", 32)]),
    ("bpf_btf_load_opts", NewFields, 40, &[("log_true_size", 24), ("btf_flags", 28), ("token_fd", 32)]),
    ("bpf_obj_pin_opts", NewStruct, 16, &[("sz", 0), ("file_flags", 8), ("path_fd", 12)]),
    ("bpf_obj_get_opts", NewFields, 16, &[("path_fd", 12)]),
    ("bpf_prog_attach_opts", NewFields, 32, &[
        ("replace_fd", 12), ("relative_fd", 16), ("relative_id", 20), ("expected_revision", 24),
    ]),
    ("bpf_prog_detach_opts", NewStruct, 32, &[
        ("sz", 0), ("flags", 8), ("relative_fd", 12), ("relative_id", 16), ("expected_revision", 24),
    ]),
    ("bpf_link_create_opts", NewFields, 80, &[
        ("uprobe_multi", 32), ("uprobe_multi.flags", 32), ("uprobe_multi.cnt", 36),
        ("uprobe_multi.path", 40), ("uprobe_multi.offsets", 48),
        ("uprobe_multi.ref_ctr_offsets", 56), ("uprobe_multi.cookies", 64),
        ("uprobe_multi.pid", 72),
        ("netfilter", 32), ("netfilter.pf", 32), ("netfilter.hooknum", 36),
        ("netfilter.priority", 40), ("netfilter.flags", 44),
        ("tcx", 32), ("tcx.relative_fd", 32), ("tcx.relative_id", 36), ("tcx.expected_revision", 40),
        ("netkit", 32), ("netkit.relative_fd", 32), ("netkit.relative_id", 36),
        ("netkit.expected_revision", 40),
        ("cgroup", 32), ("cgroup.relative_fd", 32), ("cgroup.relative_id", 36),
        ("cgroup.expected_revision", 40),
    ]),
    ("bpf_link_update_opts", NewFields, 24, &[("old_map_fd", 16)]),
    ("bpf_get_fd_by_id_opts", NewFields, 16, &[("token_fd", 12)]),
    ("bpf_prog_query_opts", NewFields, 64, &[
        ("count", 24), ("link_ids", 40), ("link_attach_flags", 48), ("revision", 56),
    ]),
    ("bpf_raw_tp_opts", NewStruct, 24, &[("sz", 0), ("tp_name", 8), ("cookie", 16)]),
    ("bpf_token_create_opts", NewStruct, 16, &[("sz", 0), ("flags", 8)]),
    ("bpf_prog_stream_read_opts", NewStruct, 8, &[("sz", 0)]),
    ("bpf_prog_assoc_struct_ops_opts", NewStruct, 16, &[("sz", 0), ("flags", 8)]),
    ("btf_permute_opts", NewStruct, 16, &[("sz", 0), ("btf_ext", 8)]),
    ("btf_dump_type_data_opts", NewFields, 24, &[("emit_strings", 23)]),
    // libbpf 1.8
    ("bpf_tracing_multi_opts", NewStruct, 32, &[("sz", 0), ("ids", 8), ("cookies", 16), ("cnt", 24)]),
    ("btf_new_opts", NewStruct, 24, &[("sz", 0), ("base_btf", 8), ("add_layout", 16)]),
];

/// The structs defined in one of our headers and their named fields
/// (members of nested named aggregates as `outer.inner`, of anonymous ones
/// under the outer struct). Relies on our headers' layout: `struct x {` and
/// `};` at column 0, one member per line, no multi-line comments inside.
fn header_structs(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("struct ")
            .and_then(|l| l.strip_suffix(" {"))
        else {
            continue;
        };
        // One Vec per open aggregate; the outermost is the struct itself.
        let mut stack: Vec<Vec<String>> = vec![Vec::new()];
        let mut fields = Vec::new();
        for line in lines.by_ref() {
            let code = match line.find("/*") {
                Some(i) => &line[..i],
                None => line,
            }
            .trim();
            if code.is_empty() {
                continue;
            }
            if code.ends_with('{') {
                stack.push(Vec::new());
            } else if let Some(rest) = code.strip_prefix('}') {
                let member = rest.trim_end_matches(';').trim();
                let inner = stack.pop().expect("balanced braces");
                let Some(outer) = stack.last_mut() else {
                    fields = inner; // the struct's own `};`
                    break;
                };
                if member.is_empty() {
                    outer.extend(inner);
                } else {
                    outer.push(member.to_string());
                    outer.extend(inner.into_iter().map(|f| format!("{member}.{f}")));
                }
            } else if let Some(decl) = code.strip_suffix(';') {
                // `type :N` is padding; `type name[:N]` a member.
                let decl = decl.split(':').next().unwrap().trim_end();
                let decl = decl.split('[').next().unwrap();
                let ident: String = decl
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let is_type_only = decl.trim() == ident; // `size_t :0`
                if !ident.is_empty() && !is_type_only {
                    stack.last_mut().unwrap().push(ident);
                }
            }
        }
        out.push((name.to_string(), fields));
    }
    out
}

fn our_structs() -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    for h in [
        "libbpf.h",
        "bpf.h",
        "btf.h",
        "libbpf_legacy.h",
        "libbpf_common.h",
    ] {
        let text = fs::read_to_string(include_dir().join("bpf").join(h)).unwrap();
        all.extend(header_structs(&text));
    }
    all
}

/// A C program printing `name size align` for each struct and
/// `name.field offset size` for each field; `skip` leaves entries out.
fn layout_program(
    structs: &[(String, Vec<String>)],
    skip: impl Fn(&str, Option<&str>) -> bool,
) -> String {
    let mut c = String::from("#include <stddef.h>\n#include <stdio.h>\n");
    c.push_str(INCLUDES);
    c.push_str(concat!(
        "#define S(t) printf(\"%s %zu %zu\\n\", #t, sizeof(struct t), _Alignof(struct t));\n",
        "#define F(t, f) printf(\"%s.%s %zu %zu\\n\", #t, #f, offsetof(struct t, f), ",
        "sizeof(((struct t *)0)->f));\n",
        "int main(void)\n{\n",
    ));
    for (name, fields) in structs {
        if !skip(name, None) {
            c.push_str(&format!("\tS({name})\n"));
        }
        for f in fields {
            if !skip(name, Some(f)) {
                c.push_str(&format!("\tF({name}, {f})\n"));
            }
        }
    }
    c.push_str("\treturn 0;\n}\n");
    c
}

/// `key -> (offset or size, size or align)` from a layout program's output.
fn parse_layout(out: &str) -> BTreeMap<String, (usize, usize)> {
    out.lines()
        .map(|l| {
            let mut it = l.split(' ');
            let key = it.next().unwrap().to_string();
            let a = it.next().unwrap().parse().unwrap();
            let b = it.next().unwrap().parse().unwrap();
            (key, (a, b))
        })
        .collect()
}

fn mismatches(
    ours: &BTreeMap<String, (usize, usize)>,
    theirs: &BTreeMap<String, (usize, usize)>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, v) in ours {
        match theirs.get(k) {
            Some(t) if t == v => {}
            t => bad.push(format!("{k}: ours {v:?}, theirs {t:?}")),
        }
    }
    bad.extend(
        theirs
            .keys()
            .filter(|k| !ours.contains_key(*k))
            .map(|k| format!("{k}: only theirs")),
    );
    bad
}

#[test]
fn struct_layouts_match_libbpf() {
    require("cc");
    let structs = our_structs();
    assert!(structs.len() >= 60, "parsed only {} structs", structs.len());
    let ours_inc = format!("-I{}", include_dir().display());
    let dir = out_dir("layouts");

    // Everything libbpf 1.1.2 has, compared with its headers.
    let since = |s: &str| SINCE_1_1_2.iter().find(|e| e.0 == s);
    let newer = |s: &str, f: Option<&str>| match (since(s), f) {
        (None, _) => false,
        (Some(e), _) if e.1 == NewStruct => true,
        (Some(_), None) => true, // a grown struct's size
        (Some(e), Some(f)) => e.3.iter().any(|(n, _)| *n == f),
    };
    let common = layout_program(&structs, newer);
    assert!(
        Path::new("/usr/include/bpf/libbpf.h").exists(),
        "Debian's libbpf-dev headers are missing: run `bash scripts/setup.sh test`"
    );
    let system = parse_layout(&build_and_run(&dir, "common_system", &common, false, &[]));
    let ours = parse_layout(&build_and_run(
        &dir,
        "common_ours",
        &common,
        false,
        std::slice::from_ref(&ours_inc),
    ));
    let bad = mismatches(&ours, &system);
    assert!(
        bad.is_empty(),
        "layouts differ from libbpf 1.1.2:\n{}",
        bad.join("\n")
    );
    eprintln!("{} entries equal to libbpf 1.1.2", ours.len());

    // What 1.1.2 lacks, against the table.
    let full = layout_program(&structs, |_, _| false);
    let all = parse_layout(&build_and_run(&dir, "full_ours", &full, false, &[ours_inc]));
    let mut bad = Vec::new();
    for (name, _, size, fields) in SINCE_1_1_2 {
        match all.get(*name) {
            Some((got, _)) if got == size => {}
            got => bad.push(format!("sizeof {name}: {got:?}, want {size}")),
        }
        for (f, off) in *fields {
            match all.get(&format!("{name}.{f}")) {
                Some((got, _)) if got == off => {}
                got => bad.push(format!("{name}.{f}: {got:?}, want offset {off}")),
            }
        }
    }
    assert!(
        bad.is_empty(),
        "layouts differ from libbpf 1.7:\n{}",
        bad.join("\n")
    );

    // Everything but 1.8's structs, against libbpf 1.7's own headers.
    let Some(v17) = libbpf_1_7_headers("layouts") else {
        eprintln!("note: libbpf-sys 1.7 sources not in the cargo registry; skipped the 1.7 header comparison");
        return;
    };
    let in_1_8 = |s: &str, _: Option<&str>| LIBBPF_1_8_STRUCTS.contains(&s);
    let full_1_7 = layout_program(&structs, in_1_8);
    let reference = parse_layout(&build_and_run(
        &dir,
        "full_libbpf_1_7",
        &full_1_7,
        false,
        &[format!("-I{}", v17.display())],
    ));
    let ours_1_7: BTreeMap<_, _> = all
        .into_iter()
        .filter(|(k, _)| !in_1_8(k.split('.').next().unwrap(), None))
        .collect();
    let bad = mismatches(&ours_1_7, &reference);
    assert!(
        bad.is_empty(),
        "layouts differ from libbpf 1.7's headers:\n{}",
        bad.join("\n")
    );
    eprintln!("{} entries equal to libbpf 1.7", reference.len());
}

#[test]
fn header_struct_parser_handles_nesting() {
    let text = "struct a {\n\tsize_t sz; /* x */\n\t__u32 :32;\n\tunion {\n\t\tint p;\n\t\tint q;\n\t};\n\
                \tunion {\n\t\tstruct {\n\t\t\t__u64 c;\n\t\t} pe;\n\t};\n\tlong :0;\n\tchar n[4];\n\tsize_t :0;\n};\n\
                struct b;\nstruct c {\n\tconst char **syms;\n};\n";
    let got = header_structs(text);
    assert_eq!(
        got,
        vec![
            (
                "a".to_string(),
                ["sz", "p", "q", "pe", "pe.c", "n"]
                    .map(String::from)
                    .to_vec()
            ),
            ("c".to_string(), vec!["syms".to_string()]),
        ]
    );
}

// --- prototypes ----------------------------------------------------------------------

/// A C++ program printing each symbol's function type (`decltype(&f)` as
/// g++ spells it in `__PRETTY_FUNCTION__`).
fn prototype_program(symbols: &[String]) -> String {
    let mut c = String::from(INCLUDES);
    c.push_str(concat!(
        "#include <cstdio>\n",
        "template <typename T> static const char *type_of() { return __PRETTY_FUNCTION__; }\n",
        "#define P(f) std::printf(\"%s %s\\n\", #f, type_of<decltype(&f)>());\n",
        "int main()\n{\n",
    ));
    for s in symbols {
        c.push_str(&format!("\tP({s})\n"));
    }
    c.push_str("\treturn 0;\n}\n");
    c
}

#[test]
fn prototypes_match_libbpf_1_7() {
    require("g++");
    let dir = out_dir("prototypes");
    let symbols = common::expected_symbols();
    let all: Vec<String> = symbols.iter().map(|(s, _)| s.clone()).collect();
    // Compiling at all proves every exported function is declared.
    let ours = build_and_run(
        &dir,
        "ours",
        &prototype_program(&all),
        true,
        &[format!("-I{}", include_dir().display())],
    );
    assert_eq!(ours.lines().count(), all.len());
    let Some(v17) = libbpf_1_7_headers("prototypes") else {
        eprintln!("note: libbpf-sys 1.7 sources not in the cargo registry; only checked that all are declared");
        return;
    };
    let in_1_7: Vec<String> = symbols
        .iter()
        .filter(|(_, node)| node != LIBBPF_1_8_NODE)
        .map(|(s, _)| s.clone())
        .collect();
    let reference = build_and_run(
        &dir,
        "libbpf_1_7",
        &prototype_program(&in_1_7),
        true,
        &[format!("-I{}", v17.display())],
    );
    let ours: BTreeMap<&str, &str> = ours.lines().filter_map(|l| l.split_once(' ')).collect();
    let mut bad = Vec::new();
    for line in reference.lines() {
        let (sym, ty) = line.split_once(' ').unwrap();
        if ours.get(sym) != Some(&ty) {
            bad.push(format!("{sym}:\n  ours  {:?}\n  1.7   {ty}", ours.get(sym)));
        }
    }
    assert!(
        bad.is_empty(),
        "prototypes differ from libbpf 1.7:\n{}",
        bad.join("\n")
    );
    eprintln!("{} prototypes equal to libbpf 1.7's", in_1_7.len());
}

// --- (c) strict C and C++ --------------------------------------------------------------

/// Uses every macro and inline helper, so that their bodies are compiled
/// with the warnings on too.
const STRICT_C: &str = r#"
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf_common.h>
#include <bpf/libbpf_legacy.h>
#include <bpf/libbpf_version.h>

#if LIBBPF_MAJOR_VERSION != 1 || LIBBPF_MINOR_VERSION != 7
#error "expected libbpf 1.7 headers"
#endif
#if !__LIBBPF_CURRENT_VERSION_GEQ(1, 0) || __LIBBPF_CURRENT_VERSION_GEQ(1, 8)
#error "__LIBBPF_CURRENT_VERSION_GEQ"
#endif

LIBBPF_DEPRECATED_SINCE(1, 0, "test") int old_api(void);
LIBBPF_API int exported_helper(void);

static int count(const struct bpf_object *obj)
{
	struct bpf_program *prog;
	struct bpf_map *map;
	int n = 0;

	bpf_object__for_each_program(prog, obj)
		n++;
	bpf_object__for_each_map(map, obj)
		n++;
	bpf_map__for_each(map, obj)
		n++;
	return n;
}

static unsigned long long btf_sum(const struct btf_type *t)
{
	unsigned long long s = btf_kind(t) + btf_vlen(t) + btf_kflag(t);

	s += btf_is_void(t) + btf_is_int(t) + btf_is_ptr(t) + btf_is_array(t);
	s += btf_is_struct(t) + btf_is_union(t) + btf_is_composite(t) + btf_is_enum(t);
	s += btf_is_enum64(t) + btf_is_fwd(t) + btf_is_typedef(t) + btf_is_volatile(t);
	s += btf_is_const(t) + btf_is_restrict(t) + btf_is_mod(t) + btf_is_func(t);
	s += btf_is_func_proto(t) + btf_is_var(t) + btf_is_datasec(t) + btf_is_float(t);
	s += btf_is_decl_tag(t) + btf_is_type_tag(t) + btf_is_any_enum(t);
	s += btf_kind_core_compat(t, t);
	s += btf_int_encoding(t) + btf_int_offset(t) + btf_int_bits(t);
	s += btf_array(t)->nelems + btf_enum(t)->val + btf_enum64_value(btf_enum64(t));
	s += btf_members(t)->type + btf_member_bit_offset(t, 0) + btf_member_bitfield_size(t, 0);
	s += btf_params(t)->type + btf_var(t)->linkage + btf_var_secinfos(t)->size;
	s += (unsigned long long)(size_t)btf_decl_tag(t);
	return s;
}

static int print_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)fmt;
	(void)ap;
	return level == LIBBPF_DEBUG;
}

static int sample(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	return (int)size;
}

int strict(struct bpf_object *obj, const struct btf_type *t);
int strict(struct bpf_object *obj, const struct btf_type *t)
{
	LIBBPF_OPTS(bpf_object_open_opts, open_opts, .object_name = "x", .relaxed_maps = true);
	DECLARE_LIBBPF_OPTS(bpf_uprobe_opts, uprobe_opts, .func_name = "malloc", .retprobe = true);
	LIBBPF_OPTS(bpf_link_create_opts, link_opts, .kprobe_multi.cnt = 1);
	LIBBPF_OPTS(bpf_prog_attach_opts, attach_opts, .replace_fd = 3);
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = 1, .attach_point = BPF_TC_INGRESS,
		    .parent = BPF_TC_PARENT(1, 2));
	libbpf_print_fn_t old = libbpf_set_print(print_cb);
	ring_buffer_sample_fn fn = sample;

	LIBBPF_OPTS_RESET(open_opts, .btf_custom_path = "/sys/kernel/btf/vmlinux");
	LIBBPF_OPTS_RESET(hook);
	libbpf_set_print(old);
	return count(obj) + (int)btf_sum(t) + (int)open_opts.sz + (int)uprobe_opts.sz +
	       (int)link_opts.sz + (int)attach_opts.sz + (int)hook.sz + (fn != NULL) +
	       LIBBPF_ERRNO__VERIFY + BPF_TC_F_REPLACE + LIBBPF_PERF_EVENT_CONT + TRI_MODULE +
	       PROBE_ATTACH_MODE_LINK + BTF_FWD_ENUM + BTF_LITTLE_ENDIAN + LIBBPF_STRICT_ALL +
	       MAPS_RELAX_COMPAT + (int)(BPF_LOG_BUF_SIZE > 0) + (int)sizeof(BTF_ELF_SEC);
}
"#;

const STRICT_CXX: &str = r#"
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf_common.h>
#include <bpf/libbpf_legacy.h>
#include <bpf/libbpf_version.h>

int strict(const struct bpf_object *obj, const struct btf_type *t)
{
	struct bpf_program *prog;
	struct bpf_object_skeleton skel = {};
	int n = 0;

	bpf_object__for_each_program(prog, obj)
		n++;
	return n + btf_vlen(t) + btf_is_mod(t) + (int)btf_enum(t)->val +
	       (int)btf_member_bit_offset(t, 0) + (int)skel.sz + bpf_enable_stats(0);
}
"#;

#[test]
fn headers_compile_as_strict_c_and_cpp() {
    let dir = out_dir("strict");
    let c = dir.join("strict.c");
    fs::write(&c, STRICT_C).unwrap();
    let cxx = dir.join("strict.cc");
    fs::write(&cxx, STRICT_CXX).unwrap();
    let inc = format!("-I{}", include_dir().display());
    let warn = ["-Wall", "-Wextra", "-Werror"];
    let clang = tool("CLANG", "clang-16");
    for cc in ["gcc", clang.as_str()] {
        require(cc);
        run(Command::new(cc)
            .args(warn)
            .args(["-std=gnu11", "-c", "-o"])
            .arg(dir.join(format!("strict-{cc}.o")))
            .arg(&inc)
            .arg(&c));
    }
    require("g++");
    for std in ["-std=c++11", "-std=gnu++17"] {
        run(Command::new("g++")
            .args(warn)
            .args(["-fsyntax-only", std])
            .arg(&inc)
            .arg(&cxx));
    }
    // The strict C program must also see our headers, not the system's.
    let deps = run(Command::new("gcc").arg("-M").arg(&inc).arg(&c));
    assert_ours_only(
        &deps,
        &[
            "libbpf.h",
            "bpf.h",
            "btf.h",
            "libbpf_common.h",
            "libbpf_legacy.h",
            "libbpf_version.h",
        ],
    );
}

/// `cc -M` output: these headers of ours, none of /usr/include/bpf.
fn assert_ours_only(deps: &str, headers: &[&str]) {
    let ours = include_dir().join("bpf");
    for h in headers {
        let path = ours.join(h).display().to_string();
        assert!(deps.contains(&path), "{path} not used:\n{deps}");
    }
    assert!(
        !deps.contains("/usr/include/bpf/"),
        "the system's libbpf headers were used:\n{deps}"
    );
}

// --- (d) a bpftool skeleton through pkg-config ---------------------------------------------

/// A BPF object with maps, global data and a program, written without
/// libbpf's BPF-side headers.
const TINY_BPF: &str = r#"
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

struct {
	__uint(type, 2); /* BPF_MAP_TYPE_ARRAY */
	__uint(max_entries, 4);
	__type(key, int);
	__type(value, long);
} counts SEC(".maps");

const volatile int target_pid = 0;
long hits = 0;
int enabled = 1;

static void *(*map_lookup)(void *map, const void *key) = (void *)1;

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	int key = 0;
	long *v;

	if (!enabled)
		return 0;
	hits++;
	v = map_lookup(&counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"#;

const TINY_APP: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "tiny.skel.h"

int main(void)
{
	struct tiny *skel;

	printf("libbpf %s\n", libbpf_version_string());
	skel = tiny__open();
	if (!skel) {
		printf("open: %s\n", strerror(errno));
	} else {
		skel->rodata->target_pid = 42;
		printf("opened %s, %s\n", bpf_object__name(skel->obj), bpf_map__name(skel->maps.counts));
		tiny__destroy(skel);
	}
	printf("done\n");
	return 0;
}
"#;

const TINY_APP_CXX: &str = r#"
#include "tiny.skel.h"

int main()
{
	struct tiny *skel = tiny::open();

	if (skel && tiny::load(skel) == 0)
		skel->bss->hits = 0;
	tiny::destroy(skel);
	return 0;
}
"#;

#[test]
fn bpftool_skeleton_builds_against_ours() {
    let profile = profile_dir();
    let so = profile.join("libbpf.so");
    let pc = profile.join("libbpf.pc");
    let release = if profile.ends_with("release") {
        " --release"
    } else {
        ""
    };
    // `cargo test` builds this package's library as an rlib only: the
    // cdylib comes from `cargo build` (`make test` runs it first).
    assert!(
        so.is_file() && pc.is_file(),
        "{} or {} is missing: build them with `cargo build{release} -p userbpf-libbpf-so`",
        so.display(),
        pc.display()
    );
    let clang = tool("CLANG", "clang-16");
    let bpftool = tool("BPFTOOL", "bpftool");
    for t in [clang.as_str(), "cc", "pkg-config"] {
        require(t);
    }
    let bpftool_ok = Command::new(&bpftool)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        bpftool_ok,
        "`{bpftool} version` failed: run `bash scripts/setup.sh test`"
    );

    let dir = out_dir("skeleton");
    let bpf_c = dir.join("tiny.bpf.c");
    fs::write(&bpf_c, TINY_BPF).unwrap();
    let obj = dir.join("tiny.bpf.o");
    run(Command::new(&clang)
        .args(["-g", "-O2", "-target", "bpf", "-c"])
        .arg(&bpf_c)
        .arg("-o")
        .arg(&obj));
    let skel = run(Command::new(&bpftool)
        .args(["gen", "skeleton"])
        .arg(&obj)
        .args(["name", "tiny"]));
    fs::write(dir.join("tiny.skel.h"), &skel).unwrap();

    let pkg_config = |args: &[&str]| {
        run(Command::new("pkg-config")
            .args(args)
            .arg("libbpf")
            .env("PKG_CONFIG_PATH", &profile))
    };
    assert_eq!(pkg_config(&["--modversion"]).trim(), "1.7.0");
    let flags = pkg_config(&["--cflags", "--libs"]);
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let inc = format!("-I{}", include_dir().display());
    assert!(flags.contains(&inc.as_str()), "pkg-config gave {flags:?}");
    let lib = format!("-L{}", profile.display());
    assert!(flags.contains(&lib.as_str()), "pkg-config gave {flags:?}");

    let app_c = dir.join("app.c");
    fs::write(&app_c, TINY_APP).unwrap();
    let deps = run(Command::new("cc")
        .arg("-M")
        .args(&flags)
        .arg(&app_c)
        .current_dir(&dir));
    assert_ours_only(&deps, &["libbpf.h", "libbpf_common.h", "libbpf_legacy.h"]);
    let app = dir.join("app");
    run(Command::new("cc")
        .args(["-Wall", "-Werror", "-O1", "-Wl,-z,now", "-o"])
        .arg(&app)
        .arg(&app_c)
        .args(&flags)
        .current_dir(&dir));
    // bpftool's skeletons also have a C++ face.
    let app_cc = dir.join("app.cc");
    fs::write(&app_cc, TINY_APP_CXX).unwrap();
    run(Command::new("g++")
        .args(["-Wall", "-Werror", "-fsyntax-only"])
        .arg(&app_cc)
        .args(&flags)
        .current_dir(&dir));

    let out = run(Command::new(&app).env("LD_LIBRARY_PATH", &profile));
    eprint!("{out}");
    assert!(
        out.starts_with("libbpf v1.7\n"),
        "not our libbpf.so.1:\n{out}"
    );
    assert!(out.ends_with("done\n"), "{out}");
}
