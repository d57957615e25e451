//! Differential test against the system's libbpf (libbpf-dev): a small C
//! program linked statically against libbpf.a (so it cannot pick up our own
//! libbpf.so.1) prints libbpf's answers for every type, and ours must match:
//! btf__type_cnt, btf__pointer_size, btf__resolve_size, btf__align_of,
//! btf__resolve_type, btf__find_by_name, btf__find_by_name_kind.
//! Skipped with a note when cc or libbpf.a is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{kitchen_sink, scratch, vmlinux_bytes, BtfWriter, VMLINUX};
use userbpf_btf_core::{Btf, BtfKind};

const ORACLE_C: &str = r#"
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return 0;
}

int main(int argc, char **argv)
{
	struct btf *base = NULL, *btf;
	int step = atoi(argv[2]);

	libbpf_set_print(quiet);
	if (argc > 3) {
		base = btf__parse_raw(argv[3]);
		if (!base) {
			printf("base-error %d\n", errno);
			return 0;
		}
	}
	btf = base ? btf__parse_raw_split(argv[1], base) : btf__parse_raw(argv[1]);
	if (!btf) {
		printf("error %d\n", errno);
		return 0;
	}
	unsigned int n = btf__type_cnt(btf);
	printf("count %u\nptrsz %zu\n", n, btf__pointer_size(btf));
	for (unsigned int id = 0; id < n; id++) {
		long long size = btf__resolve_size(btf, id);
		int align = btf__align_of(btf, id);
		int resolved = btf__resolve_type(btf, id);
		printf("type %u %lld %d %d\n", id, size, align, resolved);
	}
	for (unsigned int id = 1; id < n; id += step) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const char *name = btf__name_by_offset(btf, t->name_off);
		if (!name || !name[0])
			continue;
		printf("find %u %d %d\n", id, btf__find_by_name(btf, name),
		       btf__find_by_name_kind(btf, name, btf_kind(t)));
	}
	return 0;
}
"#;

/// Builds the oracle once per test binary.
fn oracle() -> Option<PathBuf> {
    static ORACLE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    ORACLE
        .get_or_init(|| {
            let dir = scratch("oracle");
            let (src, exe) = (dir.join("oracle.c"), dir.join("oracle"));
            std::fs::write(&src, ORACLE_C).unwrap();
            let built = Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&exe)
                .arg(&src)
                .args(["-l:libbpf.a", "-lelf", "-lz"])
                .output();
            match built {
                Ok(out) if out.status.success() => Some(exe),
                Ok(out) => {
                    eprintln!(
                        "skipping: cannot build the libbpf oracle (libbpf-dev missing?): {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    None
                }
                Err(err) => {
                    eprintln!("skipping: no C compiler: {err}");
                    None
                }
            }
        })
        .clone()
}

/// Runs the oracle on `path` (split on `base` if given) and compares every
/// line with our answers for `btf`.
fn compare(oracle: &Path, path: &Path, base: Option<&Path>, btf: &Btf, find_step: u32) {
    let mut cmd = Command::new(oracle);
    cmd.arg(path).arg(find_step.to_string());
    if let Some(base) = base {
        cmd.arg(base);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut types = 0;
    let mut finds = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f[i].parse::<i64>().unwrap();
        match f[0] {
            "count" => assert_eq!(num(1), i64::from(btf.type_count())),
            "ptrsz" => assert_eq!(num(1), i64::from(btf.pointer_size().unwrap_or(0))),
            "type" => {
                let id = num(1) as u32;
                let size = match btf.resolve_size(id) {
                    Ok(size) => i64::from(size),
                    Err(e) => -i64::from(e.errno()),
                };
                assert_eq!(size, num(2), "resolve_size [{id}] {:?}", btf.type_by_id(id));
                // libbpf reports alignment errors as 0.
                let align = btf.align_of(id).map_or(0, i64::from);
                assert_eq!(
                    align,
                    num(3).max(0),
                    "align_of [{id}] {:?}",
                    btf.type_by_id(id)
                );
                let resolved = btf.resolve_type(id).map_or(-1, i64::from);
                assert_eq!(resolved, num(4).max(-1), "resolve_type [{id}]");
                types += 1;
            }
            "find" => {
                let t = btf.type_by_id(num(1) as u32).unwrap();
                let name = t.name().unwrap();
                let by_name = btf.find_by_name(name).map_or(-2, i64::from);
                assert_eq!(by_name, num(2), "find_by_name({name})");
                let by_kind = btf.find_by_name_kind(name, t.kind()).map_or(-2, i64::from);
                assert_eq!(by_kind, num(3), "find_by_name_kind({name}, {})", t.kind());
                finds += 1;
            }
            other => panic!("libbpf could not parse {}: {other} {line}", path.display()),
        }
    }
    assert_eq!(types, btf.type_count());
    assert!(finds > 0);
    println!(
        "{}: {types} types and {finds} name lookups agree with libbpf",
        path.display()
    );
}

#[test]
fn vmlinux_matches_libbpf() {
    let Some(oracle) = oracle() else { return };
    let Some(bytes) = vmlinux_bytes() else { return };
    let btf = Btf::parse(&bytes).unwrap();
    // libbpf's name lookups are linear: sample one type in 101.
    compare(&oracle, Path::new(VMLINUX), None, &btf, 101);
}

#[test]
fn synthetic_btf_and_split_btf_match_libbpf() {
    let Some(oracle) = oracle() else { return };
    let dir = scratch("oracle-synthetic");
    let (mut w, sink) = kitchen_sink();
    // Deep chains around libbpf's MAX_RESOLVE_DEPTH (32).
    for depth in [30, 31, 32, 33] {
        let mut id = sink.int;
        for _ in 0..depth {
            id = w.typedef("", id);
        }
        w.array(id, sink.int, 2);
    }
    // Arrays whose size overflows 32 bits, and a zero-length one.
    let wide = w.array(sink.long, sink.int, 1 << 29);
    w.array(wide, sink.int, 2);
    w.array(sink.int, sink.int, 0);
    // Pointer to a forward declaration, typedef of FUNC_PROTO.
    w.ptr(sink.fwd);
    w.typedef("handler", sink.proto);
    let base_path = dir.join("base.btf");
    let base_bytes = w.build();
    std::fs::write(&base_path, &base_bytes).unwrap();
    let base = Arc::new(Btf::parse(&base_bytes).unwrap());
    compare(&oracle, &base_path, None, &base, 1);

    let mut split = BtfWriter::split(&base);
    let node = split.struct_("node", 16, &[("next", 0, 0), ("value", sink.int, 64)]);
    let node_ptr = split.ptr(node);
    split.modifier(BtfKind::Const, node_ptr);
    split.typedef("point", sink.point); // a third "point"
    split.struct_("point", 8, &[("x", sink.int, 0), ("y", sink.int, 32)]);
    split.array(node, sink.int, 3);
    let split_path = dir.join("split.btf");
    let split_bytes = split.build();
    std::fs::write(&split_path, &split_bytes).unwrap();
    let split_btf = Btf::parse_split(&split_bytes, base).unwrap();
    compare(&oracle, &split_path, Some(&base_path), &split_btf, 1);
}

#[test]
fn btf_without_long_has_no_pointer_size_like_libbpf() {
    let Some(oracle) = oracle() else { return };
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, 1, 32);
    let ptr = w.ptr(int);
    w.struct_("s", 16, &[("p", ptr, 0), ("i", int, 64)]);
    let path = scratch("oracle-nolong").join("nolong.btf");
    std::fs::write(&path, w.build()).unwrap();
    let btf = Btf::parse(&w.build()).unwrap();
    assert_eq!(btf.pointer_size(), None);
    compare(&oracle, &path, None, &btf, 1);
}
