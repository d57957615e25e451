//! The real corpus: every BPF object embedded in the libbpf-tools binaries
//! of /usr/sbin, opened and relocated against the running kernel's BTF.
//! Every relocated program must pass the runtime's validation.

use std::path::Path;

use userbpf_libbpf_compat::object::embedded::find_bpf_objects;
use userbpf_libbpf_compat::object::{Object, OpenOptions, TargetBtf};
use userbpf_runtime::program::Program;

const BIN_DIR: &str = "/usr/sbin";

struct Embedded {
    tool: String,
    bytes: Vec<u8>,
}

fn corpus() -> Vec<Embedded> {
    let Ok(entries) = std::fs::read_dir(BIN_DIR) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let tool = path.file_name().unwrap().to_string_lossy().into_owned();
        for obj in find_bpf_objects(&bytes) {
            out.push(Embedded {
                tool: tool.clone(),
                bytes: obj.bytes.to_vec(),
            });
        }
    }
    out
}

#[test]
fn corpus_opens_relocates_and_validates() {
    let objects = corpus();
    if objects.is_empty() {
        eprintln!("skipped: no BPF objects embedded in {BIN_DIR}/*");
        return;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: no /sys/kernel/btf/vmlinux");
        return;
    }
    let targets = TargetBtf::system().expect("vmlinux BTF");
    let (mut programs, mut core_relos, mut core_records, mut maps) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for Embedded { tool, bytes } in &objects {
        let opts = OpenOptions {
            // bpftool names skeleton objects <tool>_bpf.
            object_name: Some(format!("{tool}_bpf")),
            ..OpenOptions::default()
        };
        let mut obj = match Object::open(bytes, opts) {
            Ok(obj) => obj,
            Err(e) => {
                failures.push(format!("{tool}: open: {e} (errno {})", e.errno()));
                continue;
            }
        };
        if let Err(e) = obj.relocate(&targets) {
            failures.push(format!("{tool}: relocate: {e} (errno {})", e.errno()));
            continue;
        }
        core_records += obj.core_relo_records();
        core_relos += obj.core_relo_count();
        maps += obj.maps().len();
        for prog in obj.programs() {
            programs += 1;
            let insns = prog.insns().expect("relocated").to_vec();
            if let Err(e) = Program::new(insns) {
                failures.push(format!("{tool}: prog '{}': Program::new: {e}", prog.name()));
            }
        }
    }
    println!(
        "corpus: {} objects, {programs} programs, {maps} maps, {core_records} CO-RE records, {core_relos} CO-RE relocations applied, {} failures",
        objects.len(),
        failures.len()
    );
    for failure in &failures {
        println!("  FAIL {failure}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
}
