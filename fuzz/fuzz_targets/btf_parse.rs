//! `Btf::parse` on arbitrary bytes; whatever parses is walked through every
//! typed view and lookup, re-parsed in the other byte order and as split BTF
//! on top of itself, and the same bytes are also tried as `.BTF.ext`.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use userbpf_btf_core::{Btf, BtfExt, BtfKind, Endianness, TypeView};

fn walk(btf: &Btf) {
    for t in btf.own_types() {
        let id = t.id();
        let _ = (
            t.kind(),
            t.vlen(),
            t.kind_flag(),
            t.size(),
            t.referenced_type(),
        );
        let _ = (
            t.is_void(),
            t.is_modifier(),
            t.is_composite(),
            t.is_any_enum(),
        );
        let _ = t.record_bytes();
        match t.view() {
            TypeView::Struct(c) | TypeView::Union(c) => {
                for m in c.members() {
                    let _ = (m.name_off(), m.type_id(), m.bit_offset(), m.bitfield_size());
                }
                let _ = c.member(c.len());
            }
            TypeView::Enum(e) => {
                for i in 0..=e.values.len() {
                    let _ = e.value(i);
                }
            }
            TypeView::Enum64(e) => {
                for i in 0..=e.values.len() {
                    let _ = e.value(i);
                }
            }
            TypeView::FuncProto(p) => {
                let _ = p.is_variadic();
            }
            TypeView::Int(i) => {
                let _ = (i.is_signed(), i.is_char(), i.is_bool());
            }
            _ => {}
        }
        let _ = btf.resolve_type(id);
        let _ = btf.resolve_size(id);
        let _ = btf.align_of(id);
        let _ = btf.skip_mods_and_typedefs(id);
        if let Some(name) = t.name() {
            let _ = btf.find_by_name(name);
            let _ = btf.find_by_name_kind(name, t.kind());
            let _ = btf.find_all_by_name(name, Some(t.kind()));
            let _ = btf.find_all_by_essential_name(name);
        }
    }
    let count = btf.type_count();
    let _ = btf.type_by_id(count);
    let _ = btf.find_by_name_kind("", BtfKind::Struct);
    let _ = btf.layout_section();
    let _ = btf.pointer_size();
}

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    walk(&btf);
    // The same types in the other byte order must parse again.
    let other = match btf.endianness() {
        Endianness::Little => Endianness::Big,
        Endianness::Big => Endianness::Little,
    };
    let swapped = btf.raw_data_in(other);
    if let Ok(again) = Btf::parse(&swapped) {
        assert_eq!(again.type_count(), btf.type_count());
    }
    let base = Arc::new(btf);
    if let Ok(split) = Btf::parse_split(data, base.clone()) {
        walk(&split);
    }
    let _ = BtfExt::parse(data);
});
