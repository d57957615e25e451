//! Builds what the harness needs besides Rust:
//!
//! - `csrc/oracle_log.c`, the va_list shim `libbpf-oracle` gives to
//!   `libbpf_set_print` (compiled with the `cc` crate; it references no
//!   libbpf symbol);
//! - the BPF objects of our own C tests, `bpf/*.bpf.c`, with
//!   `clang-16 -g -O2 -target bpf`, against the headers of the libbpf that
//!   `libbpf-sys` vendors (1.7, `DEP_BPF_INCLUDE`). `$OUT_DIR/c_objects.rs`
//!   embeds them. Without clang the build still succeeds: the list is empty
//!   and `C_OBJECTS_ERROR` says why, so the corpus just lacks them.
//!
//! A C source that does not compile fails the build.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BPF_FLAGS: &[&str] = &["-g", "-O2", "-target", "bpf", "-Wall", "-Werror"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=csrc/oracle_log.c");
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=CLANG");

    // Linked by libbpf-oracle alone (`#[link]` on its extern block), not by
    // the library: only the search path is announced.
    cc::Build::new()
        .file(manifest.join("csrc/oracle_log.c"))
        .warnings(true)
        .cargo_metadata(false)
        .compile("userbpf_oracle_log");
    println!("cargo:rustc-link-search=native={}", out.display());

    let code = match c_objects(&manifest.join("bpf"), &out) {
        Ok(code) => code,
        Err(reason) => {
            println!("cargo:warning=userbpf-compat-tests: {reason}; C test objects not built");
            format!(
                "/// The clang that built the C test objects.\n\
                 pub const C_OBJECTS_CLANG: &str = \"\";\n\
                 /// Why the C test objects could not be built.\n\
                 pub const C_OBJECTS_ERROR: Option<&str> = Some({reason:?});\n\
                 /// The C test objects: (name, source file, object bytes).\n\
                 pub static C_OBJECTS: &[(&str, &str, &[u8])] = &[];\n"
            )
        }
    };
    fs::write(out.join("c_objects.rs"), code).expect("write c_objects.rs");
}

fn c_objects(src_dir: &Path, out: &Path) -> Result<String, String> {
    // The Makefile exports CLANG=clang-16; a plain build uses the same name.
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-16".to_string());
    let version = Command::new(&clang)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .ok_or_else(|| {
            format!("`{clang}` was not found (apt-get install clang-16, or set CLANG)")
        })?;
    let bpf_include = env::var("DEP_BPF_INCLUDE")
        .map_err(|_| "libbpf-sys did not export its include directory".to_string())?;
    // <linux/bpf.h> includes <asm/types.h>, which Debian keeps in the
    // multiarch directory that `-target bpf` does not search.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let target_arch = match arch.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => other,
    };

    let mut sources: Vec<PathBuf> = fs::read_dir(src_dir)
        .map_err(|e| format!("reading {}: {e}", src_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();

    let mut code = String::new();
    writeln!(code, "/// The clang that built the C test objects.").unwrap();
    writeln!(code, "pub const C_OBJECTS_CLANG: &str = {version:?};").unwrap();
    writeln!(code, "/// Why the C test objects could not be built.").unwrap();
    writeln!(code, "pub const C_OBJECTS_ERROR: Option<&str> = None;").unwrap();
    writeln!(
        code,
        "/// The C test objects: (name, source file, object bytes)."
    )
    .unwrap();
    writeln!(code, "pub static C_OBJECTS: &[(&str, &str, &[u8])] = &[").unwrap();
    for src in &sources {
        let file = src.file_name().unwrap().to_string_lossy().to_string();
        let name = file.trim_end_matches(".bpf.c").to_string();
        let obj = out.join(format!("{name}.bpf.o"));
        let output = Command::new(&clang)
            .args(BPF_FLAGS)
            .arg(format!("-D__TARGET_ARCH_{target_arch}"))
            .arg(format!("-I{bpf_include}"))
            .arg(format!("-I{multiarch}"))
            .arg("-c")
            .arg(src)
            .arg("-o")
            .arg(&obj)
            .output()
            .map_err(|e| format!("running {clang}: {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            for line in stderr.lines() {
                println!("cargo:warning={line}");
            }
            panic!("{clang} failed on {}", src.display());
        }
        writeln!(code, "    ({name:?}, {file:?}, include_bytes!({obj:?})),").unwrap();
    }
    code.push_str("];\n");
    Ok(code)
}
