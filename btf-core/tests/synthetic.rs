//! Hand-written BTF and BTF.ext blobs: every kind's view, libbpf's lookup
//! and resolution rules, split BTF, byte-swapped blobs, the layout section,
//! and .BTF.ext record handling.

mod common;

use std::sync::Arc;

use common::{ext_blob, kitchen_sink, BtfWriter, ExtPart};
use userbpf_btf_core::*;

#[test]
fn parsed_data_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Btf>();
    shareable::<BtfExt>();
}

fn sink_btf() -> (Btf, common::Sink) {
    let (w, sink) = kitchen_sink();
    (Btf::parse(&w.build()).unwrap(), sink)
}

#[test]
fn every_kind_has_its_view() {
    let (btf, s) = sink_btf();
    let view = |id| btf.type_by_id(id).unwrap().view();
    assert!(matches!(btf.type_by_id(0).unwrap().view(), TypeView::Void));

    let TypeView::Int(int) = view(s.int) else {
        panic!()
    };
    assert_eq!(
        (int.size, int.bits, int.offset, int.is_signed()),
        (4, 32, 0, true)
    );
    let TypeView::Int(char_) = view(s.char_) else {
        panic!()
    };
    assert!(char_.is_char() && !char_.is_signed() && !char_.is_bool());
    assert!(matches!(view(s.ptr), TypeView::Ptr { target } if target == s.int));
    let TypeView::Array(array) = view(s.array) else {
        panic!()
    };
    assert_eq!(
        (array.elem_type, array.index_type, array.nelems),
        (s.int, s.int, 10)
    );

    let TypeView::Struct(point) = view(s.point) else {
        panic!()
    };
    assert_eq!((point.size, point.len(), point.kind_flag), (8, 2, false));
    let y = point.member(1).unwrap();
    assert_eq!(btf.name_by_offset(y.name_off()), Some("y"));
    assert_eq!(
        (y.type_id(), y.bit_offset(), y.bitfield_size()),
        (s.int, 32, 0)
    );
    let TypeView::Union(union_) = view(s.union_) else {
        panic!()
    };
    assert_eq!(
        union_.members().map(|m| m.bit_offset()).collect::<Vec<_>>(),
        [0, 0]
    );

    let TypeView::Enum(color) = view(s.color) else {
        panic!()
    };
    assert!(!color.is_signed);
    assert_eq!(
        color.value(2),
        Some(0xffff_ffff),
        "unsigned enum zero-extends"
    );
    assert_eq!(btf.name_by_offset(color.values[1].name_off), Some("GREEN"));

    assert!(matches!(view(s.fwd), TypeView::Fwd { is_union: false }));
    assert!(matches!(view(s.myint), TypeView::Typedef { target } if target == s.int));
    assert!(matches!(view(s.volatile), TypeView::Volatile { target } if target == s.myint));
    assert!(matches!(view(s.const_), TypeView::Const { target } if target == s.volatile));
    assert!(matches!(view(s.restrict), TypeView::Restrict { target } if target == s.ptr));

    let TypeView::FuncProto(proto) = view(s.proto) else {
        panic!()
    };
    assert_eq!(
        (proto.return_type, proto.params.len(), proto.is_variadic()),
        (s.int, 2, false)
    );
    assert_eq!(proto.params[1].type_id, s.ptr);
    assert!(matches!(
        view(s.func),
        TypeView::Func { proto, linkage: BTF_FUNC_GLOBAL } if proto == s.proto
    ));
    assert!(matches!(
        view(s.var),
        TypeView::Var { target, linkage: BTF_VAR_GLOBAL_ALLOCATED } if target == s.int
    ));
    let TypeView::Datasec(data) = view(s.datasec) else {
        panic!()
    };
    assert_eq!(
        (data.size, data.vars[0].type_id, data.vars[0].size),
        (4, s.var, 4)
    );
    assert!(matches!(view(s.double), TypeView::Float { size: 8 }));
    assert!(matches!(
        view(s.decl_tag),
        TypeView::DeclTag { target, component_idx: -1 } if target == s.func
    ));
    assert!(matches!(view(s.type_tag), TypeView::TypeTag { target } if target == s.int));
    let TypeView::Enum64(big) = view(s.big) else {
        panic!()
    };
    assert_eq!(
        (big.value(0), big.value(1)),
        (Some(1 << 40), Some(u64::MAX))
    );

    let TypeView::Struct(flags) = view(s.flags) else {
        panic!()
    };
    let bits: Vec<_> = flags
        .members()
        .map(|m| (m.bit_offset(), m.bitfield_size()))
        .collect();
    assert_eq!(bits, [(0, 3), (3, 5), (32, 0)]);

    // Head accessors agree with the views.
    let t = btf.type_by_id(s.point).unwrap();
    assert_eq!(
        (t.kind(), t.vlen(), t.size(), t.name()),
        (BtfKind::Struct, 2, Some(8), Some("point"))
    );
    assert_eq!(
        btf.type_by_id(s.const_).unwrap().referenced_type(),
        Some(s.volatile)
    );
    assert_eq!(t.record_bytes().len(), 12 + 2 * 12);
    assert_eq!(btf.type_by_id(s.anon).unwrap().name(), Some(""));
    assert!(btf.type_by_id(btf.type_count()).is_none());
    assert!(btf.type_by_id(u32::MAX).is_none());
}

#[test]
fn sizes_follow_libbpf() {
    let (btf, s) = sink_btf();
    assert_eq!(btf.resolve_size(s.array), Ok(40));
    assert_eq!(btf.resolve_size(s.ptr), Ok(8));
    assert_eq!(btf.resolve_size(s.const_), Ok(4));
    assert_eq!(btf.resolve_size(s.var), Ok(4));
    assert_eq!(btf.resolve_size(s.datasec), Ok(4));
    assert_eq!(btf.resolve_size(s.type_tag), Ok(4));
    assert_eq!(btf.resolve_size(s.big), Ok(8));
    assert_eq!(btf.resolve_size(s.double), Ok(8));
    for (id, kind) in [(s.func, BtfKind::Func), (s.proto, BtfKind::FuncProto)] {
        assert_eq!(
            btf.resolve_size(id),
            Err(TypeError::NoSize { type_id: id, kind })
        );
    }
    // A DECL_TAG is followed to what it tags, here a FUNC.
    assert!(matches!(
        btf.resolve_size(s.decl_tag),
        Err(TypeError::NoSize { .. })
    ));
    for id in [0, s.fwd] {
        assert_eq!(
            btf.resolve_size(id),
            Err(TypeError::ResolvesToVoid { type_id: id })
        );
    }
    let bad = btf.type_count();
    assert_eq!(
        btf.resolve_size(bad),
        Err(TypeError::InvalidTypeId { type_id: bad })
    );

    let mut w = BtfWriter::new();
    let int = w.int("int", 4, 1, 32);
    let huge = w.array(int, int, 1 << 30);
    let too_big = w.array(huge, int, 4);
    let empty = w.array(huge, int, 0);
    let btf = Btf::parse(&w.build()).unwrap();
    assert_eq!(
        btf.resolve_size(huge),
        Err(TypeError::SizeOverflow { type_id: huge })
    );
    assert_eq!(btf.resolve_size(too_big).unwrap_err().errno(), 7, "E2BIG");
    assert_eq!(btf.resolve_size(empty), Ok(0));
}

#[test]
fn alignment_follows_libbpf_including_packed_structs() {
    let (btf, s) = sink_btf();
    assert_eq!(btf.align_of(s.int), Ok(4));
    assert_eq!(btf.align_of(s.long), Ok(8));
    assert_eq!(btf.align_of(s.ptr), Ok(8));
    assert_eq!(btf.align_of(s.array), Ok(4));
    assert_eq!(btf.align_of(s.const_), Ok(4));
    assert_eq!(btf.align_of(s.point), Ok(4));
    assert_eq!(btf.align_of(s.union_), Ok(8));
    assert_eq!(btf.align_of(s.flags), Ok(4));
    assert_eq!(btf.align_of(s.big), Ok(8));
    assert_eq!(btf.align_of(s.char_), Ok(1));
    // `int i` at bit 8 and size 5: packed.
    assert_eq!(btf.align_of(s.packed), Ok(1));
    for id in [0, s.func, s.proto, s.var, s.datasec, s.fwd] {
        assert!(
            matches!(btf.align_of(id), Err(TypeError::NoAlignment { .. })),
            "{id}"
        );
    }

    // A struct whose size is not a multiple of its members' alignment is
    // packed too, even with every member aligned.
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, 1, 32);
    let tail = w.struct_("tail", 6, &[("i", int, 0)]);
    // A struct that contains itself must not recurse forever.
    let cyclic = w.next_id();
    w.struct_("cyclic", 4, &[("self", cyclic, 0)]);
    let btf = Btf::parse(&w.build()).unwrap();
    assert_eq!(btf.align_of(tail), Ok(1));
    assert!(matches!(
        btf.align_of(cyclic),
        Err(TypeError::TooDeep { .. })
    ));
}

#[test]
fn resolution_skips_modifiers_typedefs_and_vars() {
    let (btf, s) = sink_btf();
    assert_eq!(btf.resolve_type(s.const_), Ok(s.int));
    assert_eq!(btf.resolve_type(s.var), Ok(s.int));
    assert_eq!(btf.resolve_type(s.type_tag), Ok(s.int));
    assert_eq!(btf.resolve_type(s.point_typedef), Ok(s.point));
    assert_eq!(btf.resolve_type(s.ptr), Ok(s.ptr));
    assert!(btf.resolve_type(s.fwd).is_err());
    assert!(btf.resolve_type(0).is_err());
    assert_eq!(btf.skip_mods_and_typedefs(s.const_).unwrap().id(), s.int);
    assert_eq!(btf.skip_mods_and_typedefs(s.var).unwrap().id(), s.var);

    // A typedef loop ends with an error, not a hang.
    let mut w = BtfWriter::new();
    let first = w.next_id();
    w.typedef("a", first + 1);
    w.typedef("b", first);
    let btf = Btf::parse(&w.build()).unwrap();
    assert!(matches!(
        btf.resolve_type(first),
        Err(TypeError::TooDeep { .. })
    ));
    assert!(btf.resolve_size(first).is_err());
    assert!(btf.align_of(first).is_err());
    assert!(btf.skip_mods_and_typedefs(first).is_none());
}

#[test]
fn name_lookups_follow_libbpf() {
    let (btf, s) = sink_btf();
    assert_eq!(btf.find_by_name("int"), Some(s.int));
    assert_eq!(
        btf.find_by_name("point"),
        Some(s.point),
        "first of two 'point's"
    );
    assert_eq!(
        btf.find_by_name_kind("point", BtfKind::Typedef),
        Some(s.point_typedef)
    );
    assert_eq!(btf.find_by_name_kind("point", BtfKind::Union), None);
    assert_eq!(
        btf.find_all_by_name("point", None),
        [s.point, s.point_typedef]
    );
    assert_eq!(btf.find_by_name("void"), Some(0));
    assert_eq!(btf.find_by_name_kind("void", BtfKind::Struct), Some(0));
    assert_eq!(btf.find_by_name_kind("anything", BtfKind::Unkn), Some(0));
    assert_eq!(btf.find_by_name(""), Some(s.ptr), "first anonymous type");
    assert_eq!(btf.find_by_name_kind("", BtfKind::Struct), Some(s.anon));
    assert_eq!(btf.find_by_name("missing"), None);
    assert_eq!(btf.find_by_name(b"int".as_slice()), Some(s.int));
    assert_eq!(btf.pointer_size(), Some(8), "from 'long int'");
}

#[test]
fn split_btf_continues_ids_and_string_offsets() {
    let (w, s) = kitchen_sink();
    let base = Arc::new(Btf::parse(&w.build()).unwrap());
    let mut m = BtfWriter::split(&base);
    let first = m.struct_("mod_state", 16, &[("point", s.point, 0), ("x", s.int, 64)]);
    let int_again = m.int("int", 4, 1, 32);
    // A typedef named with the base's string for "point".
    let base_name = base.type_by_id(s.point).unwrap().name_off();
    let alias = m.raw(
        base_name,
        BtfType::info_of(BtfKind::Typedef, false, 0),
        first,
        &[],
    );
    let module = Btf::parse_split(&m.build(), base.clone()).unwrap();

    assert_eq!(first, base.type_count());
    assert_eq!(module.start_id(), base.type_count());
    assert_eq!(module.own_type_count(), 3);
    assert_eq!(module.type_count(), base.type_count() + 3);
    assert_eq!(module.start_str_offset(), base.header().str_len);
    // Base types, and base strings, through the split BTF.
    assert_eq!(module.type_by_id(s.point).unwrap().name(), Some("point"));
    assert_eq!(module.str_by_offset(1), base.str_by_offset(1));
    assert!(module.type_by_id(first).unwrap().name_off() >= module.start_str_offset());
    assert_eq!(module.type_by_id(alias).unwrap().name(), Some("point"));
    assert_eq!(
        module.find_by_name_kind_own("point", BtfKind::Typedef),
        Some(alias)
    );
    assert_eq!(module.resolve_size(first), Ok(16));
    assert_eq!(module.align_of(first), Ok(4));
    // Lookups see base types first.
    assert_eq!(module.find_by_name("int"), Some(s.int));
    assert_eq!(
        module.find_by_name_kind_own("int", BtfKind::Int),
        Some(int_again)
    );
    assert_eq!(
        module.find_all_by_name("int", Some(BtfKind::Int)),
        [s.int, int_again]
    );
    assert_eq!(
        module.own_types().map(|t| t.id()).collect::<Vec<_>>(),
        [first, int_again, alias]
    );
    assert_eq!(module.pointer_size(), Some(8));

    // Split on split.
    let module = Arc::new(module);
    let mut m2 = BtfWriter::split(&module);
    let ptr = m2.ptr(first);
    let top = Btf::parse_split(&m2.build(), module.clone()).unwrap();
    assert_eq!(ptr, module.type_count());
    assert_eq!(top.resolve_size(ptr), Ok(8));
    assert_eq!(top.type_by_id(first).unwrap().name(), Some("mod_state"));
    assert_eq!(top.type_by_id(s.int).unwrap().name(), Some("int"));

    // A split blob without its own strings is fine; its base must be given.
    let mut bare = BtfWriter::split(&base);
    bare.ptr(s.int);
    let bytes = bare.build();
    assert!(Btf::parse_split(&bytes, base.clone()).is_ok());
    assert!(Btf::parse(&bytes).is_err());
}

#[test]
fn split_btf_references_are_checked_against_the_whole_chain() {
    let (w, s) = kitchen_sink();
    let base = Arc::new(Btf::parse(&w.build()).unwrap());
    let mut m = BtfWriter::split(&base);
    let next = m.next_id();
    m.ptr(next + 5);
    assert_eq!(
        Btf::parse_split(&m.build(), base.clone()).unwrap_err(),
        BtfError::InvalidTypeReference {
            type_id: next,
            referenced: next + 5
        }
    );
    let mut m = BtfWriter::split(&base);
    let past = base.header().str_len + 100;
    m.raw(past, BtfType::info_of(BtfKind::Ptr, false, 0), s.int, &[]);
    assert!(matches!(
        Btf::parse_split(&m.build(), base).unwrap_err(),
        BtfError::InvalidStringOffset { .. }
    ));
}

#[test]
fn byte_swapped_btf_reads_like_native() {
    let (w, s) = kitchen_sink();
    let little = w.build_in(Endianness::Little);
    let big = w.build_in(Endianness::Big);
    let native = Btf::parse(&little).unwrap();
    let swapped = Btf::parse(&big).unwrap();
    assert_eq!(swapped.endianness(), Endianness::Big);
    assert_eq!(swapped.raw_data(), &little[..], "converted to native order");
    assert_eq!(&*swapped.raw_data_in(Endianness::Big), &big[..]);
    assert_eq!(&*native.raw_data_in(Endianness::Big), &big[..]);
    assert_eq!(swapped.header(), native.header());
    for id in 0..native.type_count() {
        let (a, b) = (
            native.type_by_id(id).unwrap(),
            swapped.type_by_id(id).unwrap(),
        );
        assert_eq!(a.record_words(), b.record_words());
        assert_eq!(native.resolve_size(id), swapped.resolve_size(id));
    }
    assert_eq!(swapped.find_by_name("point"), Some(s.point));

    // Split BTF in the other byte order than its base also works.
    let base = Arc::new(native);
    let mut m = BtfWriter::split(&base);
    let id = m.struct_("m", 4, &[("v", s.int, 0)]);
    let split = Btf::parse_split(&m.build_in(Endianness::Big), base).unwrap();
    assert_eq!(split.resolve_size(id), Ok(4));

    // A swapped header must at least cover the string section fields.
    let mut short = big.clone();
    short[4..8].copy_from_slice(&20u32.to_be_bytes());
    assert_eq!(
        Btf::parse(&short).unwrap_err(),
        BtfError::SwappedHeaderTooShort { hdr_len: 20 }
    );
    assert_eq!(BtfError::SwappedHeaderTooShort { hdr_len: 20 }.errno(), 95);
}

/// Layout entries for kinds 0..=20; kind 20 is unknown to this crate and
/// has one 4-byte info and 8-byte elements.
fn layout_through_kind_20(info_sz: u8, elem_sz: u8) -> Vec<[u8; 4]> {
    let mut layout = vec![[0u8; 4]; 21];
    layout[BtfKind::Int.to_raw() as usize] = [4, 0, 0, 0];
    layout[BtfKind::Struct.to_raw() as usize] = [0, 12, 0, 0];
    layout[20] = [info_sz, elem_sz, 0, 0];
    layout
}

#[test]
fn layout_section_lets_unknown_kinds_through() {
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, 1, 32);
    let name = w.str("future");
    let future = w.raw(name, (20 << 24) | 2, int, &[7, 1, 2, 3, 4]);
    let after = w.ptr(future);
    w.layout = Some(layout_through_kind_20(4, 8));
    let bytes = w.build();
    let btf = Btf::parse(&bytes).unwrap();
    assert_eq!(btf.header().hdr_len, 32);
    assert_eq!(btf.layout_section().unwrap()[20].elem_sz, 8);
    let t = btf.type_by_id(future).unwrap();
    assert_eq!(t.kind(), BtfKind::Other(20));
    assert!(matches!(t.view(), TypeView::Unknown { kind: 20, extra } if extra == [7, 1, 2, 3, 4]));
    assert_eq!(btf.type_by_id(after).unwrap().kind(), BtfKind::Ptr);
    assert!(btf.resolve_size(future).is_err());

    // Split BTF uses its base's layout.
    let base = Arc::new(btf);
    let mut m = BtfWriter::split(&base);
    let id = m.raw(0, 20 << 24, int, &[9]);
    let split = Btf::parse_split(&m.build(), base).unwrap();
    assert_eq!(split.type_by_id(id).unwrap().kind(), BtfKind::Other(20));

    // Without a layout, or with one that does not cover the kind, refused.
    w.layout = None;
    assert_eq!(
        Btf::parse(&w.build()).unwrap_err(),
        BtfError::UnknownKind {
            type_id: future,
            kind: 20
        }
    );
    w.layout = Some(layout_through_kind_20(3, 8));
    assert!(matches!(
        Btf::parse(&w.build()).unwrap_err(),
        BtfError::UnsupportedKindLayout {
            kind: 20,
            info_sz: 3,
            ..
        }
    ));
    // Swapped BTF cannot have unknown kinds: their fields can't be swapped.
    w.layout = Some(layout_through_kind_20(4, 8));
    assert_eq!(
        Btf::parse(&w.build_in(Endianness::Big)).unwrap_err(),
        BtfError::UnknownKind {
            type_id: future,
            kind: 20
        }
    );
}

#[test]
fn modify_type_keeps_records_consistent() {
    let (w, s) = kitchen_sink();
    let mut btf = Btf::parse(&w.build()).unwrap();
    btf.modify_type(s.datasec, |words| words[2] = 64).unwrap();
    assert_eq!(btf.resolve_size(s.datasec), Ok(64));
    // FUNC -> TYPEDEF keeps the size: allowed (libbpf sanitizes so).
    btf.modify_type(s.func, |words| {
        words[1] = BtfType::info_of(BtfKind::Typedef, false, 0)
    })
    .unwrap();
    assert_eq!(btf.type_by_id(s.func).unwrap().kind(), BtfKind::Typedef);
    // Renaming is seen by name lookups.
    let y = btf.find_by_name("y").is_some();
    assert!(!y);
    let color_name = btf.type_by_id(s.color).unwrap().name_off();
    btf.modify_type(s.point, |words| words[0] = color_name)
        .unwrap();
    assert_eq!(btf.find_all_by_name("color", None), [s.point, s.color]);
    assert_eq!(
        btf.modify_type(s.point, |words| words[1] += 1),
        Err(BtfError::RecordSizeChanged {
            type_id: s.point,
            before: 36,
            after: 48
        })
    );
    assert_eq!(
        btf.modify_type(0, |_| ()),
        Err(BtfError::NotOwnType { type_id: 0 })
    );
    let past = btf.type_count();
    assert_eq!(
        btf.modify_type(past, |_| ()),
        Err(BtfError::NotOwnType { type_id: past })
    );
}

fn func(insn_off: u32, type_id: u32, extra: &[u32]) -> Vec<u32> {
    [insn_off, type_id].iter().chain(extra).copied().collect()
}

#[test]
fn btf_ext_sections_and_records() {
    let funcs = ExtPart {
        rec_size: 8,
        sections: vec![
            (1, vec![func(0, 5, &[]), func(64, 6, &[])]),
            (9, vec![func(0, 7, &[])]),
        ],
    };
    let lines = ExtPart {
        rec_size: 16,
        sections: vec![(1, vec![vec![0, 2, 3, (12 << 10) | 5]])],
    };
    let relos = ExtPart {
        rec_size: 16,
        sections: vec![(
            1,
            vec![vec![8, 5, 4, 0], vec![16, 5, 4, 12], vec![24, 5, 4, 99]],
        )],
    };
    let bytes = ext_blob(
        32,
        Endianness::Little,
        Some(&funcs),
        Some(&lines),
        Some(&relos),
    );
    let ext = BtfExt::parse(&bytes).unwrap();
    assert_eq!(ext.header().hdr_len, 32);
    let fi = ext.func_info().unwrap();
    assert_eq!(
        (fi.record_size(), fi.record_count(), fi.sections().len()),
        (8, 3, 2)
    );
    let secs: Vec<_> = fi.sections().collect();
    assert_eq!((secs[0].sec_name_off(), secs[0].len()), (1, 2));
    assert_eq!(
        secs[0].get(1),
        Some(&BpfFuncInfo {
            insn_off: 64,
            type_id: 6
        })
    );
    assert_eq!(secs[0].get(2), None);
    assert_eq!(
        secs[1].records().map(|r| r.type_id).collect::<Vec<_>>(),
        [7]
    );
    assert_eq!(fi.raw_bytes().len(), 2 * 8 + 8 + 8 + 8);
    let line = *ext
        .line_info()
        .unwrap()
        .sections()
        .next()
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!((line.line(), line.column()), (12, 5));
    let relos: Vec<_> = ext
        .core_relo()
        .unwrap()
        .sections()
        .next()
        .unwrap()
        .records()
        .copied()
        .collect();
    assert_eq!(relos[0].kind(), Some(CoreReloKind::FieldByteOffset));
    assert_eq!(relos[1].kind(), Some(CoreReloKind::TypeMatches));
    assert_eq!(
        relos[2].kind(),
        None,
        "unknown kinds are kept for the relocator to refuse"
    );
    assert_eq!(ext.raw_data(), &bytes[..]);

    // Byte-swapped .BTF.ext reads the same and converts back.
    let big = ext_blob(
        32,
        Endianness::Big,
        Some(&funcs),
        Some(&lines),
        Some(&relos_sub()),
    );
    let swapped = BtfExt::parse(&big).unwrap();
    assert_eq!(swapped.endianness(), Endianness::Big);
    assert_eq!(swapped.func_info().unwrap().record_count(), 3);
    assert_eq!(
        swapped
            .func_info()
            .unwrap()
            .sections()
            .next()
            .unwrap()
            .get(1),
        Some(&BpfFuncInfo {
            insn_off: 64,
            type_id: 6
        })
    );
    assert_eq!(&*swapped.raw_data_in(Endianness::Big), &big[..]);
}

fn relos_sub() -> ExtPart {
    ExtPart {
        rec_size: 16,
        sections: vec![(1, vec![vec![8, 5, 4, 0]])],
    }
}

#[test]
fn btf_ext_reads_the_known_prefix_of_longer_records() {
    let funcs = ExtPart {
        rec_size: 16,
        sections: vec![(1, vec![func(0, 5, &[0xaaaa, 0xbbbb]), func(8, 6, &[1, 2])])],
    };
    let bytes = ext_blob(32, Endianness::Little, Some(&funcs), None, None);
    let ext = BtfExt::parse(&bytes).unwrap();
    let fi = ext.func_info().unwrap();
    assert_eq!(fi.record_size(), 16);
    let sec = fi.sections().next().unwrap();
    assert_eq!(
        sec.get(1),
        Some(&BpfFuncInfo {
            insn_off: 8,
            type_id: 6
        })
    );
    assert_eq!(
        sec.raw_records().len(),
        32,
        "extra fields kept for the kernel"
    );
    assert!(ext.line_info().is_none() && ext.core_relo().is_none());

    // Swapped data must have exactly the known record size.
    let big = ext_blob(32, Endianness::Big, Some(&funcs), None, None);
    assert_eq!(
        BtfExt::parse(&big).unwrap_err(),
        BtfExtError::BadRecordSize {
            subsection: ExtSubsection::FuncInfo,
            rec_size: 16
        }
    );
}

#[test]
fn btf_ext_old_header_has_no_core_relo() {
    let funcs = ExtPart {
        rec_size: 8,
        sections: vec![(1, vec![func(0, 5, &[])])],
    };
    let bytes = ext_blob(
        24,
        Endianness::Little,
        Some(&funcs),
        None,
        Some(&relos_sub()),
    );
    let ext = BtfExt::parse(&bytes).unwrap();
    assert_eq!((ext.header().hdr_len, ext.header().core_relo_len), (24, 0));
    assert!(ext.core_relo().is_none());
    assert_eq!(ext.func_info().unwrap().record_count(), 1);
    let big = ext_blob(24, Endianness::Big, Some(&funcs), None, None);
    assert_eq!(
        &*BtfExt::parse(&big).unwrap().raw_data_in(Endianness::Big),
        &big[..]
    );
}

#[test]
fn essential_name_lookups_follow_flavor_rules_in_id_order() {
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, 1, 32);
    let a = w.struct_("task", 4, &[("x", int, 0)]);
    let b = w.struct_("task___old", 4, &[("x", int, 0)]);
    let c = w.typedef("task", int);
    let d = w.struct_("task___a___b", 4, &[("x", int, 0)]);
    let e = w.struct_("task___a", 4, &[("x", int, 0)]);
    let _other = w.struct_("tas", 4, &[("x", int, 0)]);
    let btf = Btf::parse(&w.build()).unwrap();
    // "task", "task___old", "task___new": essential name "task".
    for local in ["task", "task___new", "task___old"] {
        assert_eq!(
            btf.find_all_by_essential_name(local),
            [a, b, c, e],
            "{local}"
        );
    }
    // "task___a___b" drops only its last flavor: "task___a"; "task___a"
    // itself is essentially "task".
    assert_eq!(btf.find_all_by_essential_name("task___a___x"), [d]);
    assert_eq!(btf.find_all_by_essential_name("task___a"), [a, b, c, e]);
    assert_eq!(btf.find_all_by_essential_name(""), Vec::<u32>::new());
    // Exact-name lookups are unaffected by sharing the index.
    assert_eq!(btf.find_all_by_name("task___a", None), [e]);
    assert_eq!(btf.find_all_by_name("task", None), [a, c]);
    assert_eq!(
        btf.find_by_name_kind("task___old", BtfKind::Struct),
        Some(b)
    );
    // Split BTF: base matches first.
    let base = Arc::new(btf);
    let mut m = BtfWriter::split(&base);
    let f = m.struct_("task___mod", 4, &[("x", int, 0)]);
    let split = Btf::parse_split(&m.build(), base.clone()).unwrap();
    assert_eq!(split.find_all_by_essential_name("task"), [a, b, c, e, f]);
}
