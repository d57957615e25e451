//! The running kernel's BTF: /sys/kernel/btf/vmlinux and every module's
//! split BTF in /sys/kernel/btf/. Skipped (with a note) when absent.

mod common;

use std::ffi::CStr;
use std::sync::Arc;
use std::time::Instant;

use common::{vmlinux, vmlinux_bytes, BtfWriter};
use userbpf_btf_core::{Btf, BtfKind, BtfMember, TypeView};

#[test]
fn load_file_maps_vmlinux_and_agrees_with_parse() {
    let Some(bytes) = vmlinux_bytes() else { return };
    let loaded = Btf::load_file("/sys/kernel/btf/vmlinux").expect("load_file");
    let parsed = Btf::parse(&bytes).unwrap();
    assert_eq!(loaded.raw_data(), parsed.raw_data());
    assert_eq!(loaded.type_count(), parsed.type_count());
    assert_eq!(loaded.pointer_size(), parsed.pointer_size());
    // Every type's essential-name lookup finds it, in id order, as a scan
    // would (libbpf's candidate search scans).
    let step = (loaded.own_type_count() as usize / 25).max(1);
    for t in loaded.own_types().step_by(step) {
        let Some(name) = t.name_c_str().map(CStr::to_bytes) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let essential = userbpf_btf_core::co_re::essential_name(name);
        let scan: Vec<u32> = loaded
            .own_types()
            .filter(|u| {
                u.name_c_str().is_some_and(|n| {
                    userbpf_btf_core::co_re::essential_name(n.to_bytes()) == essential
                })
            })
            .map(|u| u.id())
            .collect();
        assert_eq!(loaded.find_all_by_essential_name(name), scan);
    }
    // A missing file is an I/O error with its errno.
    let err = Btf::load_file("/sys/kernel/btf/no such module").unwrap_err();
    assert_eq!(err.errno(), 2, "{err}");
    // Files elsewhere are read, not mapped.
    let dir = common::scratch("load_file_vmlinux");
    let copy = dir.join("vmlinux.btf");
    std::fs::write(&copy, &bytes).unwrap();
    let read = Btf::load_file(&copy).unwrap();
    assert_eq!(read.raw_data(), parsed.raw_data());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vmlinux_known_facts() {
    let Some(btf) = vmlinux() else { return };
    assert!(btf.type_count() > 10_000, "only {} types", btf.type_count());
    assert_eq!(btf.start_id(), 1);
    assert!(btf.base().is_none());
    assert_eq!(btf.pointer_size(), Some(8));

    let task = btf
        .find_by_name_kind("task_struct", BtfKind::Struct)
        .expect("task_struct");
    let task = btf.type_by_id(task).unwrap();
    assert_eq!(task.kind(), BtfKind::Struct);
    assert_eq!(task.name(), Some("task_struct"));
    let TypeView::Struct(members) = task.view() else {
        panic!("not a struct")
    };
    let pid = members
        .members()
        .find(|m| btf.name_by_offset(m.name_off()) == Some("pid"))
        .expect("task_struct::pid");
    let pid_type = btf.type_by_id(pid.type_id()).unwrap();
    assert_eq!(pid_type.kind(), BtfKind::Typedef);
    assert_eq!(pid_type.name(), Some("pid_t"));
    let resolved = btf
        .type_by_id(btf.resolve_type(pid.type_id()).unwrap())
        .unwrap();
    assert_eq!(resolved.kind(), BtfKind::Int);
    assert_eq!(resolved.size(), Some(4));
    assert_eq!(btf.resolve_size(pid.type_id()), Ok(4));
    assert_eq!(pid.bit_offset() % 32, 0);
    assert_eq!(btf.resolve_size(task.id()), Ok(task.size().unwrap()));

    let list_head = btf.find_by_name_kind("list_head", BtfKind::Struct).unwrap();
    let list_head = btf.type_by_id(list_head).unwrap();
    assert_eq!(list_head.vlen(), 2);
    assert_eq!(list_head.size(), Some(16));
    assert_eq!(btf.align_of(list_head.id()), Ok(8));

    // Every kind the kernel emits parses into its view.
    let mut seen = std::collections::BTreeSet::new();
    for t in btf.own_types() {
        seen.insert(t.kind().to_raw());
        assert!(!matches!(t.view(), TypeView::Unknown { .. }), "{t:?}");
    }
    for kind in [
        BtfKind::Int,
        BtfKind::Ptr,
        BtfKind::Array,
        BtfKind::Struct,
        BtfKind::Union,
        BtfKind::Enum,
        BtfKind::Fwd,
        BtfKind::Typedef,
        BtfKind::Volatile,
        BtfKind::Const,
        BtfKind::Func,
        BtfKind::FuncProto,
        BtfKind::Var,
        BtfKind::Datasec,
    ] {
        assert!(seen.contains(&kind.to_raw()), "vmlinux has no {kind}");
    }
}

#[test]
fn vmlinux_name_lookups_agree_with_a_linear_scan() {
    let Some(btf) = vmlinux() else { return };
    // Every 251st named type: the first type of that name and kind found by
    // scanning must be what the index returns.
    for t in btf.own_types().step_by(251) {
        let Some(name) = t.name().filter(|n| !n.is_empty()) else {
            continue;
        };
        let first = btf
            .own_types()
            .find(|u| u.kind() == t.kind() && u.name() == Some(name))
            .unwrap()
            .id();
        assert_eq!(btf.find_by_name_kind(name, t.kind()), Some(first), "{name}");
        assert!(btf.find_by_name(name).unwrap() <= first);
        assert!(btf.find_all_by_name(name, Some(t.kind())).contains(&t.id()));
    }
    assert_eq!(btf.find_by_name("void"), Some(0));
    assert_eq!(btf.find_by_name("no such type, surely"), None);
}

#[test]
fn vmlinux_every_type_resolves_without_panicking() {
    let Some(btf) = vmlinux() else { return };
    let mut sized = 0;
    for id in 0..btf.type_count() {
        sized += btf.resolve_size(id).is_ok() as u32;
        let _ = btf.align_of(id);
        let _ = btf.resolve_type(id);
        let _ = btf.skip_mods_and_typedefs(id);
    }
    // FUNC and FUNC_PROTO (most of vmlinux) have no size; the rest do.
    assert!(sized > 10_000, "only {sized} sized types");
}

#[test]
fn vmlinux_pointers_for_c_callers_read_like_the_kernel_format() {
    let Some(btf) = vmlinux() else { return };
    let id = btf.find_by_name_kind("list_head", BtfKind::Struct).unwrap();
    let t = btf.type_by_id(id).unwrap();
    let head = t.as_ptr();
    assert_eq!(head as usize % 4, 0);
    // SAFETY: a STRUCT head is followed by `vlen` btf_member records in the
    // same buffer, exactly as `btf_members(t)` assumes in C.
    let second = unsafe { *head.add(1).cast::<BtfMember>().add(1) };
    assert_eq!(btf.name_by_offset(second.name_off), Some("prev"));
    let name = btf.str_by_offset(t.name_off()).unwrap().as_ptr();
    // SAFETY: str_by_offset returns a NUL-terminated string that lives as
    // long as `btf`.
    assert_eq!(unsafe { CStr::from_ptr(name) }.to_bytes(), b"list_head");
}

#[test]
fn module_btf_parses_as_split_on_vmlinux() {
    let Some(base) = vmlinux() else { return };
    let mut modules = 0;
    for entry in std::fs::read_dir("/sys/kernel/btf").unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "vmlinux") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let module = Btf::parse_split(&bytes, base.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(module.start_id(), base.type_count());
        assert_eq!(module.start_str_offset(), base.header().str_len);
        for t in module.own_types() {
            assert!(t.name().is_some(), "{}: {t:?}", path.display());
            let _ = module.resolve_size(t.id());
        }
        modules += 1;
    }
    if modules == 0 {
        eprintln!(
            "note: no module BTF in /sys/kernel/btf (built-in kernel); using a synthetic module"
        );
    }
    // Always also check a module-like split BTF that refers to vmlinux types.
    let pid_t = base.find_by_name_kind("pid_t", BtfKind::Typedef).unwrap();
    let list_head = base
        .find_by_name_kind("list_head", BtfKind::Struct)
        .unwrap();
    let mut w = BtfWriter::split(&base);
    let s = w.struct_(
        "my_module_state",
        24,
        &[("owner", pid_t, 0), ("node", list_head, 64)],
    );
    let module = Btf::parse_split(&w.build(), Arc::clone(&base)).unwrap();
    assert_eq!(s, base.type_count());
    assert_eq!(module.resolve_size(s), Ok(24));
    assert_eq!(module.align_of(s), Ok(8));
    assert_eq!(
        module.find_by_name_kind("my_module_state", BtfKind::Struct),
        Some(s)
    );
    assert_eq!(
        module.find_by_name_kind("task_struct", BtfKind::Struct),
        base.find_by_name_kind("task_struct", BtfKind::Struct)
    );
    assert_eq!(
        module.find_by_name_kind_own("task_struct", BtfKind::Struct),
        None
    );
    assert_eq!(module.pointer_size(), Some(8));
}

#[test]
fn vmlinux_parse_time() {
    let Some(bytes) = vmlinux_bytes() else { return };
    let runs = 5;
    let mut best = u128::MAX;
    let mut best_indexed = u128::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let btf = Btf::parse(&bytes).unwrap();
        best = best.min(start.elapsed().as_nanos());
        btf.build_name_index();
        best_indexed = best_indexed.min(start.elapsed().as_nanos());
    }
    println!(
        "vmlinux BTF ({} bytes): parse+validate+id index {best} ns; including the name index {best_indexed} ns (best of {runs}, {} build; other tests run alongside, see examples/vmlinux_parse_time.rs for a quiet number)",
        bytes.len(),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
}
