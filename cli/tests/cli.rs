//! The `userbpf` command's subcommands that need no target.

use std::process::Command;

fn userbpf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_userbpf"))
}

#[test]
fn libdir_names_the_directory_of_libbpf_so_1() {
    let out = userbpf().arg("libdir").output().unwrap();
    if !out.status.success() {
        // Only when the cdylib was not built next to us (make test builds it).
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("holds no libbpf.so.1"), "{err}");
        panic!("build it first: cargo build --release -p userbpf-libbpf-so ({err})");
    }
    let dir = String::from_utf8(out.stdout).unwrap();
    let lib = std::path::Path::new(dir.trim()).join("libbpf.so.1");
    let bytes = std::fs::read(&lib).unwrap();
    assert_eq!(
        &bytes[..4],
        b"\x7fELF",
        "{} is a shared object",
        lib.display()
    );
}

#[test]
fn list_reports_an_empty_namespace() {
    let dir = std::env::temp_dir().join(format!("userbpf-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = userbpf()
        .arg("list")
        .env("USERBPF_DIR", &dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("no live loaders"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["libdir", "list", "trace-pipe"] {
        let out = userbpf().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(!out.stdout.is_empty());
    }
}
