//! Builds every benchmark program in `programs/` three ways:
//!
//! - BPF: `clang-16 -target bpf -mcpu=v3 -O2 -c`, then the raw `.text`
//!   section is extracted with the `object` crate (the program must be one
//!   function, `bpf_main` at offset 0, with no relocations and no data);
//! - native `-O2`, and native "scalar" (`-O2 -fno-vectorize
//!   -fno-slp-vectorize -fno-builtin`), compiled with the same clang through
//!   the `cc` crate and linked into this crate, `bpf_main` renamed to
//!   `native_<name>` / `scalar_<name>`.
//!
//! `$OUT_DIR/programs.rs` describes the result. If clang is missing the
//! build still succeeds and `TOOLCHAIN_ERROR` says why, so the harness can
//! fail with that message and the tests can skip.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

/// The C sources, `programs/<name>.bpf.c`.
const SOURCES: &[&str] = &[
    "simple",
    "memory_a_plus_b",
    "log2_int",
    "prime",
    "memcpy",
    "strcmp",
    "switch",
    "crc32",
    "http_parse",
    "jhash_flows",
];

/// v3 (ALU32, JMP32) is the newest CPU clang-16 knows and rbpf 0.4 runs it;
/// v4 instructions (sign-extending loads, sdiv) would not be accepted by rbpf.
const BPF_FLAGS: &[&str] = &["-target", "bpf", "-mcpu=v3", "-O2", "-Wall", "-Wextra"];
const SCALAR_FLAGS: &[&str] = &["-fno-vectorize", "-fno-slp-vectorize", "-fno-builtin"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let programs = manifest.join("programs");
    println!("cargo:rerun-if-changed=programs");
    println!("cargo:rerun-if-env-changed=CLANG");

    // The Makefile exports CLANG=clang-16; a plain build uses the same name.
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-16".to_string());
    let code = match clang_version(&clang) {
        Ok(version) => build_all(&clang, &version, &programs, &out),
        Err(reason) => {
            println!("cargo:warning=userbpf-benches: {reason}; benchmark programs not built");
            missing_toolchain(&reason)
        }
    };
    fs::write(out.join("programs.rs"), code).expect("write programs.rs");
}

fn clang_version(clang: &str) -> Result<String, String> {
    let missing = || {
        format!("`{clang}` was not found (install clang-16, e.g. `apt-get install clang-16`, or set CLANG)")
    };
    let output = Command::new(clang)
        .arg("--version")
        .output()
        .map_err(|_| missing())?;
    if !output.status.success() {
        return Err(missing());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

fn missing_toolchain(reason: &str) -> String {
    format!(
        "pub const TOOLCHAIN_ERROR: Option<&str> = Some({reason:?});\n\
         pub const CLANG_VERSION: &str = \"\";\n\
         pub const BPF_CFLAGS: &str = \"\";\n\
         pub const NATIVE_CFLAGS: &str = \"\";\n\
         pub const SCALAR_CFLAGS: &str = \"\";\n\
         pub static SOURCES: &[Source] = &[];\n"
    )
}

fn build_all(clang: &str, version: &str, programs: &Path, out: &Path) -> String {
    for name in SOURCES {
        let obj = out.join(format!("{name}.bpf.o"));
        compile_bpf(clang, &programs.join(format!("{name}.bpf.c")), &obj);
        let text = extract_text(&obj).unwrap_or_else(|e| panic!("{name}.bpf.o: {e}"));
        fs::write(out.join(format!("{name}.bpf.bin")), text).expect("write .bpf.bin");
    }
    let native = compile_native(clang, programs, out, "native", &[]);
    let scalar = compile_native(clang, programs, out, "scalar", SCALAR_FLAGS);

    let mut code = String::new();
    code.push_str("pub const TOOLCHAIN_ERROR: Option<&str> = None;\n");
    writeln!(code, "pub const CLANG_VERSION: &str = {version:?};").unwrap();
    writeln!(
        code,
        "pub const BPF_CFLAGS: &str = {:?};",
        BPF_FLAGS.join(" ")
    )
    .unwrap();
    writeln!(code, "pub const NATIVE_CFLAGS: &str = {native:?};").unwrap();
    writeln!(code, "pub const SCALAR_CFLAGS: &str = {scalar:?};").unwrap();
    code.push_str("extern \"C\" {\n");
    for name in SOURCES {
        writeln!(code, "    fn native_{name}(mem: *mut u8) -> u64;").unwrap();
        writeln!(code, "    fn scalar_{name}(mem: *mut u8) -> u64;").unwrap();
    }
    code.push_str("}\npub static SOURCES: &[Source] = &[\n");
    for name in SOURCES {
        let bin = out.join(format!("{name}.bpf.bin"));
        writeln!(
            code,
            "    Source {{ name: {name:?}, bpf: include_bytes!({bin:?}), \
             native: native_{name}, scalar: scalar_{name} }},"
        )
        .unwrap();
    }
    code.push_str("];\n");
    code
}

fn compile_bpf(clang: &str, src: &Path, obj: &Path) {
    let output = Command::new(clang)
        .args(BPF_FLAGS)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .unwrap_or_else(|e| panic!("running {clang}: {e}"));
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("cargo:warning={line}");
    }
    if !output.status.success() {
        panic!(
            "{clang} {} -c {} failed",
            BPF_FLAGS.join(" "),
            src.display()
        );
    }
}

/// The `.text` bytes of a BPF object, after checking that they are a
/// self-contained `bpf_main` (what the runtimes are given is just these bytes).
fn extract_text(obj: &Path) -> Result<Vec<u8>, String> {
    let data = fs::read(obj).map_err(|e| e.to_string())?;
    let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let text = file.section_by_name(".text").ok_or("no .text section")?;
    for section in file.sections() {
        let data_like = matches!(
            section.kind(),
            SectionKind::Data
                | SectionKind::ReadOnlyData
                | SectionKind::ReadOnlyString
                | SectionKind::UninitializedData
        );
        if data_like && section.size() > 0 {
            return Err(format!(
                "section {} holds data: programs must not use globals or rodata",
                section.name().unwrap_or("?")
            ));
        }
    }
    if text.relocations().next().is_some() {
        return Err(".text has relocations: programs must be self-contained".into());
    }
    let funcs: Vec<(String, u64)> = file
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.section_index() == Some(text.index()))
        .map(|s| (s.name().unwrap_or("?").to_string(), s.address()))
        .collect();
    if funcs != [("bpf_main".to_string(), 0)] {
        return Err(format!(
            ".text must hold bpf_main alone at offset 0 (helpers must be __always_inline), found {funcs:?}"
        ));
    }
    let bytes = text.data().map_err(|e| e.to_string())?.to_vec();
    if bytes.is_empty() || bytes.len() % 8 != 0 {
        return Err(format!(
            ".text is {} bytes, not a multiple of 8",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Compiles every program for the host with `bpf_main` renamed to
/// `<prefix>_<name>`; returns the flags used, for the report.
fn compile_native(
    clang: &str,
    programs: &Path,
    out: &Path,
    prefix: &str,
    extra: &[&str],
) -> String {
    let dir = out.join(prefix);
    fs::create_dir_all(&dir).expect("create native dir");
    let mut build = cc::Build::new();
    build
        .compiler(clang)
        .opt_level(2)
        .debug(false)
        .force_frame_pointer(false)
        .warnings(true)
        .extra_warnings(true)
        .include(programs)
        .out_dir(&dir);
    for flag in extra {
        build.flag(flag);
    }
    for name in SOURCES {
        // One wrapper per program so each gets its own rename.
        let wrapper = dir.join(format!("{prefix}_{name}.c"));
        let src = programs.join(format!("{name}.bpf.c"));
        let body = format!(
            "#define bpf_main {prefix}_{name}\n#include {:?}\n",
            src.display().to_string()
        );
        fs::write(&wrapper, body).expect("write wrapper");
        build.file(&wrapper);
    }
    let flags = build
        .get_compiler()
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    build.compile(&format!("userbpf_bench_{prefix}"));
    flags
}
