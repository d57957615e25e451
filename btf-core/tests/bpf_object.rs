//! `.BTF` and `.BTF.ext` of real BPF objects: tests/data/core_prog.bpf.c is
//! compiled with clang-16 (`$CLANG` if set) for both byte orders, the
//! sections are pulled out with the `object` crate, and the records are
//! checked. Skipped with a note when clang is missing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use object::{Object, ObjectSection};
use userbpf_btf_core::{Btf, BtfExt, BtfKind, CoreReloKind, Endianness, TypeView};

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/core_prog.bpf.c");

/// Compiles the test program for `target` ("bpfel" or "bpfeb"), once per
/// process: the tests run in parallel and would build the same file.
fn compile(target: &str) -> Option<PathBuf> {
    static BPFEL: OnceLock<Option<PathBuf>> = OnceLock::new();
    static BPFEB: OnceLock<Option<PathBuf>> = OnceLock::new();
    let built = match target {
        "bpfel" => &BPFEL,
        "bpfeb" => &BPFEB,
        _ => unreachable!("{target}"),
    };
    built.get_or_init(|| build(target)).clone()
}

fn build(target: &str) -> Option<PathBuf> {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-16".into());
    let out = common::scratch("bpf-object").join(format!("core_prog.{target}.o"));
    let result = Command::new(&clang)
        .args(["-g", "-O2", "-target", target, "-D__TARGET_ARCH_x86"])
        // linux/types.h needs asm/types.h from the multiarch directory.
        .arg("-I/usr/include/x86_64-linux-gnu")
        .args(["-c", SOURCE, "-o"])
        .arg(&out)
        .output();
    match result {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => panic!("{clang} failed:\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(err) => {
            eprintln!("skipping: cannot run {clang}: {err}");
            None
        }
    }
}

/// The `.BTF` and `.BTF.ext` section bytes of an object file.
fn btf_sections(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let section = |name| file.section_by_name(name).unwrap().data().unwrap().to_vec();
    (section(".BTF"), section(".BTF.ext"))
}

fn named(btf: &Btf, name: &str, kind: BtfKind) -> u32 {
    btf.find_by_name_kind(name, kind)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Checks one object and summarizes its records (without instruction
/// offsets, which differ between byte orders) to compare byte orders.
fn check_object(btf: &Btf, ext: &BtfExt) -> BTreeSet<String> {
    let mut summary = BTreeSet::new();

    let task = named(btf, "task_struct", BtfKind::Struct);
    let TypeView::Struct(task_view) = btf.type_by_id(task).unwrap().view() else {
        panic!()
    };
    assert_eq!(task_view.len(), 4);
    assert!(task_view.kind_flag, "bitfield struct carries the kind flag");
    let flags = task_view.member(2).unwrap();
    assert_eq!(btf.name_by_offset(flags.name_off()), Some("flags"));
    assert_eq!((flags.bit_offset(), flags.bitfield_size()), (64, 3));
    assert_eq!(btf.resolve_size(task), Ok(24));
    assert_eq!(btf.align_of(task), Ok(8));
    let pid = task_view.member(0).unwrap();
    assert_eq!(btf.type_by_id(pid.type_id()).unwrap().name(), Some("pid_t"));
    assert_eq!(btf.resolve_size(pid.type_id()), Ok(4));

    let probe = named(btf, "probe", BtfKind::Func);
    named(btf, "helper", BtfKind::Func);
    named(btf, "task_state", BtfKind::Enum);
    for section in [".bss", ".rodata", "license"] {
        let id = named(btf, section, BtfKind::Datasec);
        // The compiler leaves DATASEC sizes to the loader.
        assert_eq!(btf.resolve_size(id), Ok(0));
    }

    let func_info = ext.func_info().expect("func_info");
    assert_eq!(func_info.record_size(), 8);
    let mut funcs = Vec::new();
    for section in func_info.sections() {
        let sec = section.sec_name(btf).unwrap().to_string();
        for rec in section.records() {
            let name = btf.type_by_id(rec.type_id).unwrap().name().unwrap();
            funcs.push(format!("{sec}+{}: {name}", rec.insn_off));
        }
    }
    assert!(
        funcs.contains(&"kprobe/do_nothing+0: probe".to_string()),
        "{funcs:?}"
    );
    assert!(funcs.contains(&".text+0: helper".to_string()), "{funcs:?}");
    assert_eq!(btf.type_by_id(probe).unwrap().kind(), BtfKind::Func);
    summary.extend(funcs);

    let line_info = ext.line_info().expect("line_info");
    assert_eq!(line_info.record_size(), 16);
    assert!(line_info.record_count() >= 5);
    for section in line_info.sections() {
        for rec in section.records() {
            let file = btf.name_by_offset(rec.file_name_off).unwrap();
            assert!(file.ends_with("core_prog.bpf.c"), "{file}");
            // The source line's text; clang adds some line-0 records.
            let text = btf.name_by_offset(rec.line_off).unwrap();
            assert_eq!(rec.line() == 0, text.is_empty(), "{text}");
            summary.insert(format!("line {} col {}", rec.line(), rec.column()));
        }
        assert_eq!(section.raw_records().len(), section.len() * 16);
    }

    let core_relo = ext.core_relo().expect("core_relo");
    assert_eq!(core_relo.record_size(), 16);
    let mut kinds = BTreeSet::new();
    let mut pid_read = false;
    for section in core_relo.sections() {
        assert_eq!(section.sec_name(btf), Some("kprobe/do_nothing"));
        for rec in section.records() {
            let kind = rec.kind().expect("known relocation kind");
            let root = btf.type_by_id(rec.type_id).unwrap();
            let access = btf.name_by_offset(rec.access_str_off).unwrap();
            if kind == CoreReloKind::FieldByteOffset && access == "0:0" {
                assert_eq!(root.id(), task);
                pid_read = true;
            }
            if kind.is_field_based() {
                assert_eq!(root.id(), task, "{access}");
            }
            summary.insert(format!("{} {:?} {access}", kind.name(), root));
            kinds.insert(kind as u32);
        }
    }
    assert!(pid_read, "BPF_CORE_READ(task, pid) gives byte_off 0:0");
    // One of each kind the program asks for (TYPE_MATCHES needs newer clang
    // than some distributions ship, so it is not required).
    for kind in [
        CoreReloKind::FieldByteOffset,
        CoreReloKind::FieldByteSize,
        CoreReloKind::FieldExists,
        CoreReloKind::FieldSigned,
        CoreReloKind::FieldLshiftU64,
        CoreReloKind::FieldRshiftU64,
        CoreReloKind::TypeIdLocal,
        CoreReloKind::TypeIdTarget,
        CoreReloKind::TypeExists,
        CoreReloKind::TypeSize,
        CoreReloKind::EnumvalExists,
        CoreReloKind::EnumvalValue,
    ] {
        assert!(
            kinds.contains(&(kind as u32)),
            "no {} relocation",
            kind.name()
        );
    }
    summary
}

#[test]
fn clang_object_btf_and_ext_parse() {
    let Some(obj) = compile("bpfel") else { return };
    let (btf_bytes, ext_bytes) = btf_sections(&obj);
    let btf = Btf::parse(&btf_bytes).unwrap();
    let ext = BtfExt::parse(&ext_bytes).unwrap();
    assert_eq!(btf.endianness(), Endianness::Little);
    assert_eq!(ext.header().hdr_len, 32);
    assert_eq!(btf.raw_data(), &btf_bytes[..]);
    assert_eq!(ext.raw_data(), &ext_bytes[..]);
    for line in check_object(&btf, &ext) {
        println!("{line}");
    }
}

#[test]
fn big_endian_object_reads_the_same_as_little_endian() {
    let (Some(el), Some(eb)) = (compile("bpfel"), compile("bpfeb")) else {
        return;
    };
    let (el_btf, el_ext) = btf_sections(&el);
    let (eb_btf, eb_ext) = btf_sections(&eb);
    let (btf_le, ext_le) = (
        Btf::parse(&el_btf).unwrap(),
        BtfExt::parse(&el_ext).unwrap(),
    );
    let (btf_be, ext_be) = (
        Btf::parse(&eb_btf).unwrap(),
        BtfExt::parse(&eb_ext).unwrap(),
    );
    assert_eq!(btf_be.endianness(), Endianness::Big);
    assert_eq!(ext_be.endianness(), Endianness::Big);
    // Converted to native order, the types are the same bytes.
    assert_eq!(btf_be.types_section(), btf_le.types_section());
    assert_eq!(btf_be.strings_section(), btf_le.strings_section());
    assert_eq!(
        check_object(&btf_be, &ext_be),
        check_object(&btf_le, &ext_le)
    );
    // And back in stored order they are the section bytes again.
    assert_eq!(&*btf_be.raw_data_in(Endianness::Big), &eb_btf[..]);
    assert_eq!(&*ext_be.raw_data_in(Endianness::Big), &eb_ext[..]);
    assert_eq!(&*btf_le.raw_data_in(Endianness::Big), &eb_btf[..]);
}

#[test]
fn loader_can_fix_up_datasec_sizes_in_place() {
    let Some(obj) = compile("bpfel") else { return };
    let (btf_bytes, _) = btf_sections(&obj);
    let mut btf = Btf::parse(&btf_bytes).unwrap();
    let bss = named(&btf, ".bss", BtfKind::Datasec);
    btf.modify_type(bss, |words| words[2] = 4).unwrap();
    assert_eq!(btf.resolve_size(bss), Ok(4));
    // Growing vlen would change the record size: refused, nothing changed.
    let err = btf.modify_type(bss, |words| words[1] += 1).unwrap_err();
    assert_eq!(err.errno(), 22);
    assert_eq!(btf.type_by_id(bss).unwrap().vlen(), 1);
    assert_eq!(btf.find_by_name_kind(".bss", BtfKind::Datasec), Some(bss));
}
