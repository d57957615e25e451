//! Writes `docs/compatibility.md` from the symbol table (`--check`: only
//! compare, exit 1 when stale).

use std::process::ExitCode;

fn main() -> ExitCode {
    let path = bpf::compat_doc::path();
    let doc = bpf::compat_doc::render();
    if std::env::args().any(|a| a == "--check") {
        return match std::fs::read_to_string(&path) {
            Ok(current) if current == doc => ExitCode::SUCCESS,
            _ => {
                eprintln!(
                    "{} is stale: run `cargo run -p userbpf-libbpf-so --bin gen-compat`",
                    path.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = std::fs::write(&path, doc) {
        eprintln!("cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", path.display());
    ExitCode::SUCCESS
}
