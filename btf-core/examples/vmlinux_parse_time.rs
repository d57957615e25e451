//! Prints how long parsing /sys/kernel/btf/vmlinux takes, for comparison
//! with libbpf's `btf__load_vmlinux_btf`:
//! `cargo run --release -p userbpf-btf-core --example vmlinux_parse_time`.

use std::time::Instant;

use userbpf_btf_core::Btf;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/sys/kernel/btf/vmlinux".to_string());
    let start = Instant::now();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("cannot read {path}: {err}");
            return;
        }
    };
    let read_ns = start.elapsed().as_nanos();
    let runs = 20;
    let (mut parse_ns, mut index_ns) = (u128::MAX, u128::MAX);
    let mut types = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let btf = match Btf::parse(&bytes) {
            Ok(btf) => btf,
            Err(err) => {
                eprintln!("{path}: {err}");
                std::process::exit(1);
            }
        };
        let parsed = start.elapsed().as_nanos();
        btf.build_name_index();
        parse_ns = parse_ns.min(parsed);
        index_ns = index_ns.min(start.elapsed().as_nanos() - parsed);
        types = btf.type_count();
    }
    // What libbpf's btf__load_vmlinux_btf does: read the file and parse.
    let mut load_ns = u128::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let loaded = std::fs::read(&path).ok().map(|b| Btf::parse(&b));
        load_ns = load_ns.min(start.elapsed().as_nanos());
        assert!(matches!(loaded, Some(Ok(_))));
    }
    println!("{path}: {} bytes, {types} types", bytes.len());
    println!("first read of the file:        {read_ns} ns");
    println!("read + parse (best of {runs}):     {load_ns} ns");
    println!("parse + validate + id index:   {parse_ns} ns (best of {runs})");
    println!("name index (lazy, first find): {index_ns} ns (best of {runs})");
}
