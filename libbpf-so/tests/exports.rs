//! The ABI of the built `libbpf.so`: SONAME, the exported symbol set and the
//! version node of each symbol, checked with `readelf` against
//! `abi/symbols.tsv` (libbpf's `libbpf.map`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::{expected_symbols, libbpf_so, profile_dir, run};

#[test]
fn soname_is_libbpf_so_1() {
    let so = libbpf_so();
    let dynamic = run(Command::new("readelf").arg("-d").arg(&so));
    assert!(
        dynamic.contains("Library soname: [libbpf.so.1]"),
        "{dynamic}"
    );
    let link = profile_dir().join("libbpf.so.1");
    assert_eq!(
        std::fs::canonicalize(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display())),
        std::fs::canonicalize(&so).unwrap()
    );
}

#[test]
fn exports_exactly_libbpf_symbols_at_their_nodes() {
    let so = libbpf_so();
    let dynsym = run(Command::new("readelf")
        .args(["--dyn-syms", "--wide"])
        .arg(&so));
    // "  186: 0000000000058660    26 FUNC    GLOBAL DEFAULT   16 bpf_object__open@@LIBBPF_0.0.1"
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for line in dynsym.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let numbered = fields
            .first()
            .and_then(|f| f.strip_suffix(':'))
            .is_some_and(|n| n.parse::<u32>().is_ok());
        if !numbered || fields.len() < 8 || fields[6] == "UND" {
            continue;
        }
        let name = fields[7];
        match name.split_once("@@") {
            Some((sym, node)) => {
                if fields[3] != "FUNC" || fields[4] != "GLOBAL" || fields[5] != "DEFAULT" {
                    problems.push(format!("{name}: {} {} {}", fields[3], fields[4], fields[5]));
                }
                exported.insert(sym.to_string(), node.to_string());
            }
            None => problems.push(format!("exported without a default version: {name}")),
        }
    }
    let expected = expected_symbols();
    let mut ok = 0;
    for (sym, node) in &expected {
        match exported.remove(sym) {
            Some(n) if n == *node => ok += 1,
            Some(n) => problems.push(format!("{sym}@@{n}, expected @@{node}")),
            None => problems.push(format!("{sym}@@{node} missing")),
        }
    }
    for (sym, node) in exported {
        problems.push(format!("unexpected export {sym}@@{node}"));
    }
    println!("{ok} of {} symbols at their version nodes", expected.len());
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(ok, 359);
}

#[test]
fn defines_the_26_version_nodes() {
    let so = libbpf_so();
    let versions = run(Command::new("readelf").arg("-V").arg(&so));
    let defined: BTreeSet<&str> = versions
        .lines()
        .skip_while(|l| !l.contains(".gnu.version_d"))
        .take_while(|l| !l.contains(".gnu.version_r"))
        .filter_map(|l| l.split("Name: ").nth(1))
        .collect();
    let mut expected: BTreeSet<String> = expected_symbols().into_iter().map(|(_, n)| n).collect();
    assert_eq!(expected.len(), 26);
    expected.insert("libbpf.so.1".to_string()); // the base definition
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(defined, expected, "{versions}");
}
