//! `docs/compatibility.md` must match the symbol table.

#[test]
fn compatibility_doc_is_current() {
    let path = bpf::compat_doc::path();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == bpf::compat_doc::render(),
        "{} is stale: run `cargo run -p userbpf-libbpf-so --bin gen-compat`",
        path.display()
    );
}
