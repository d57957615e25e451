//! Malformed input gives a typed error, never a panic or an out-of-bounds
//! read: one test per check of libbpf's, then truncations and seeded random
//! corruption of valid blobs (whatever still parses is queried in every
//! way, to show that accessors cope with odd but accepted data).

mod common;

use std::sync::Arc;

use common::{ext_blob, kitchen_sink, vmlinux_bytes, BtfWriter, ExtPart, Rng};
use userbpf_btf_core::*;

const HDR: usize = 24;

fn sink_bytes() -> Vec<u8> {
    kitchen_sink().0.build()
}

fn put(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn get(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Queries everything a parsed BTF offers; must not panic.
fn exercise(btf: &Btf) {
    for id in 0..btf.type_count().saturating_add(2) {
        let _ = btf.resolve_size(id);
        let _ = btf.align_of(id);
        let _ = btf.resolve_type(id);
        let _ = btf.skip_mods_and_typedefs(id);
        let Some(t) = btf.type_by_id(id) else {
            continue;
        };
        let _ = (
            t.name(),
            t.size(),
            t.referenced_type(),
            t.record_bytes(),
            format!("{t:?}"),
        );
        match t.view() {
            TypeView::Struct(c) | TypeView::Union(c) => {
                for m in c.members() {
                    let _ = (
                        m.bit_offset(),
                        m.bitfield_size(),
                        btf.str_by_offset(m.name_off()),
                    );
                }
            }
            TypeView::Enum(e) => (0..=e.values.len())
                .for_each(|i| assert_eq!(e.value(i).is_some(), i < e.values.len())),
            TypeView::Enum64(e) => (0..=e.values.len())
                .for_each(|i| assert_eq!(e.value(i).is_some(), i < e.values.len())),
            TypeView::FuncProto(p) => {
                let _ = p.is_variadic();
            }
            _ => {}
        }
        if let Some(name) = t.name().filter(|_| id != 0) {
            // The first type of that name comes no later than this one.
            assert!(btf.find_by_name(name).is_some_and(|found| found <= id));
            let _ = btf.find_all_by_name(name, Some(t.kind()));
        }
    }
    let _ = btf.find_by_name("");
    let _ = btf.raw_data_in(Endianness::Big);
    let _ = btf.raw_data_in(Endianness::Little);
}

fn exercise_ext(ext: &BtfExt) {
    fn walk<R: KernelRecord>(info: Option<ExtInfo<'_, R>>) {
        let Some(info) = info else { return };
        let _ = (info.record_size(), info.record_count(), info.raw_bytes());
        for sec in info.sections() {
            assert_eq!(sec.records().count(), sec.len());
            let _ = (sec.sec_name_off(), sec.raw_records(), sec.get(sec.len()));
        }
    }
    walk(ext.func_info());
    walk(ext.line_info());
    walk(ext.core_relo());
    let _ = ext.raw_data_in(Endianness::Big);
}

fn err(bytes: &[u8]) -> BtfError {
    Btf::parse(bytes).expect_err("malformed BTF was accepted")
}

#[test]
fn header_checks() {
    let good = sink_bytes();
    assert_eq!(err(&good[..10]), BtfError::HeaderTruncated { len: 10 });
    assert_eq!(err(&[]), BtfError::HeaderTruncated { len: 0 });

    let mut bad = good.clone();
    bad[0] = 0x12;
    assert!(matches!(err(&bad), BtfError::BadMagic { .. }));

    let mut bad = good.clone();
    put(&mut bad, 4, good.len() as u32 + 1);
    assert!(matches!(err(&bad), BtfError::HeaderLenTooLarge { .. }));

    let mut bad = good.clone();
    put(&mut bad, 20, get(&good, 20) + 1); // str_len
    assert!(matches!(
        err(&bad),
        BtfError::SectionOutOfBounds {
            section: BtfSection::Strings,
            ..
        }
    ));

    let mut bad = good.clone();
    put(&mut bad, 16, get(&good, 16) - 4); // str_off inside the types
    assert!(matches!(err(&bad), BtfError::SectionsOverlap { .. }));

    let mut bad = good.clone();
    put(&mut bad, 8, 2); // type_off
    put(&mut bad, 12, get(&good, 12) - 4);
    assert_eq!(
        err(&bad),
        BtfError::SectionMisaligned {
            section: BtfSection::Types,
            off: 2
        }
    );

    // An all-offsets-in-range header with type_off + type_len wrapping u32.
    let mut bad = good.clone();
    put(&mut bad, 8, 0xffff_fff0);
    put(&mut bad, 12, 0x20);
    assert!(err(&bad).to_string().contains("overlaps"));
}

#[test]
fn string_section_checks() {
    let good = sink_bytes();
    let str_at = HDR + get(&good, 16) as usize;

    let mut bad = good.clone();
    put(&mut bad, 20, 0);
    assert_eq!(err(&bad), BtfError::StringSectionEmpty);

    let mut bad = good.clone();
    *bad.last_mut().unwrap() = b'x';
    assert_eq!(err(&bad), BtfError::StringSectionNotTerminated);

    let mut bad = good.clone();
    bad[str_at] = b'x';
    assert_eq!(err(&bad), BtfError::StringSectionNoEmptyString);
    assert!(err(&bad).to_string().contains("base BTF"));
}

#[test]
fn type_section_checks() {
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, 1, 32);
    let good = w.build();

    // Unknown kind.
    let mut bad = good.clone();
    put(&mut bad, HDR + 4, 25 << 24);
    assert_eq!(
        err(&bad),
        BtfError::UnknownKind {
            type_id: int,
            kind: 25
        }
    );
    // Kind 0 other than void.
    put(&mut bad, HDR + 4, 0);
    assert_eq!(
        err(&bad),
        BtfError::UnknownKind {
            type_id: int,
            kind: 0
        }
    );

    // vlen far past the end (24-bit vlen of 12-byte members).
    let mut w = BtfWriter::new();
    let s = w.struct_("s", 4, &[("a", 0, 0)]);
    let good = w.build();
    let mut bad = good.clone();
    put(
        &mut bad,
        HDR + 4,
        BtfType::info_of(BtfKind::Struct, false, BTF_MAX_VLEN),
    );
    assert!(matches!(err(&bad), BtfError::TypeTruncated { type_id, .. } if type_id == s));

    // A record cut short by type_len.
    let mut bad = good.clone();
    put(&mut bad, 12, get(&good, 12) - 4);
    assert!(matches!(err(&bad), BtfError::TypeTruncated { .. }));

    // Bytes after the last record that are no record.
    let mut w = BtfWriter::new();
    w.int("int", 4, 1, 32);
    w.raw(0, 0, 0, &[]); // becomes trailing junk once type_len is cut
    let mut bad = w.build();
    put(&mut bad, 12, 16 + 8);
    assert_eq!(err(&bad), BtfError::TrailingTypeData { trailing: 8 });
    put(&mut bad, 12, 16 + 2);
    assert_eq!(err(&bad), BtfError::TrailingTypeData { trailing: 2 });
}

#[test]
fn sanity_checks_report_the_first_bad_type() {
    let check = |build: &dyn Fn(&mut BtfWriter)| {
        let mut w = BtfWriter::new();
        w.int("int", 4, 1, 32);
        build(&mut w);
        err(&w.build())
    };
    assert_eq!(
        check(&|w| {
            w.ptr(99);
        }),
        BtfError::InvalidTypeReference {
            type_id: 2,
            referenced: 99
        }
    );
    assert_eq!(
        check(&|w| {
            w.array(1, 42, 3);
        }),
        BtfError::InvalidTypeReference {
            type_id: 2,
            referenced: 42
        }
    );
    assert_eq!(
        check(&|w| {
            w.struct_("s", 4, &[("a", 7, 0)]);
        }),
        BtfError::InvalidTypeReference {
            type_id: 2,
            referenced: 7
        }
    );
    assert_eq!(
        check(&|w| {
            w.func("f", 1, 0);
        }),
        BtfError::FuncWithoutProto {
            type_id: 2,
            referenced: 1
        }
    );
    assert_eq!(
        check(&|w| {
            w.datasec(".data", 4, &[(9, 0, 4)]);
        }),
        BtfError::InvalidTypeReference {
            type_id: 2,
            referenced: 9
        }
    );
    assert_eq!(
        check(&|w| {
            w.raw(1000, BtfType::info_of(BtfKind::Ptr, false, 0), 1, &[]);
        }),
        BtfError::InvalidStringOffset {
            type_id: 2,
            what: "type name",
            off: 1000
        }
    );
    assert_eq!(
        check(&|w| {
            w.raw(0, BtfType::info_of(BtfKind::Enum, false, 1), 4, &[500, 0]);
        }),
        BtfError::InvalidStringOffset {
            type_id: 2,
            what: "enum name",
            off: 500
        }
    );
    assert_eq!(
        check(&|w| {
            w.raw(
                0,
                BtfType::info_of(BtfKind::FuncProto, false, 1),
                1,
                &[0, 77],
            );
        }),
        BtfError::InvalidTypeReference {
            type_id: 2,
            referenced: 77
        }
    );
    // The first offender wins, as in libbpf's in-order check.
    assert_eq!(
        check(&|w| {
            w.ptr(50);
            w.ptr(40);
        }),
        BtfError::InvalidTypeReference {
            type_id: 2,
            referenced: 50
        }
    );
    // libbpf does not check a FUNC_PROTO's return type; neither do we.
    let mut w = BtfWriter::new();
    w.func_proto(12345, &[]);
    assert!(Btf::parse(&w.build()).is_ok());
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let good = sink_bytes();
    for len in 0..good.len() {
        assert!(
            Btf::parse(&good[..len]).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
    // Cut the type section (header adjusted) at every byte.
    let type_len = get(&good, 12);
    for cut in 0..type_len {
        let mut bad = good.clone();
        put(&mut bad, 12, cut);
        if let Ok(btf) = Btf::parse(&bad) {
            exercise(&btf);
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    let (w, _) = kitchen_sink();
    let good = w.build();
    let base = Arc::new(Btf::parse(&good).unwrap());
    let mut split = BtfWriter::split(&base);
    let node = split.next_id();
    split.struct_("node", 16, &[("next", node + 1, 0), ("v", 1, 64)]);
    split.ptr(node);
    let good_split = split.build();

    let mut rng = Rng::new(0x5eed_b7f0);
    let (mut parsed, iterations) = (0, 20_000);
    for i in 0..iterations {
        let mut bytes = if i % 4 == 3 {
            good_split.clone()
        } else {
            good.clone()
        };
        if i % 2 == 0 {
            // Flip 1-4 random bytes.
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        } else {
            // Overwrite a word of the type section with a plausible value:
            // small ids, kinds with odd vlens, boundaries.
            let at = HDR + 4 * rng.below((bytes.len() - HDR) / 4);
            let kind = rng.below(22) as u32;
            let interesting = [
                0,
                1,
                rng.below(40) as u32,
                (kind << 24) | rng.below(4) as u32,
                (1 << 31) | (kind << 24) | 1,
                u32::MAX,
                0x00ff_ffff,
                rng.next() as u32,
            ];
            put(&mut bytes, at, interesting[rng.below(interesting.len())]);
        }
        let result = if i % 4 == 3 {
            Btf::parse_split(&bytes, base.clone())
        } else {
            Btf::parse(&bytes)
        };
        if let Ok(btf) = result {
            exercise(&btf);
            parsed += 1;
        }
    }
    println!("{parsed} of {iterations} corrupted blobs still parsed and were queried");
    assert!(
        parsed > 100,
        "corruption too destructive to reach the accessors"
    );
}

#[test]
fn corrupted_vmlinux_never_panics() {
    let Some(good) = vmlinux_bytes() else { return };
    let iterations = if cfg!(debug_assertions) { 10 } else { 100 };
    let mut rng = Rng::new(42);
    for _ in 0..iterations {
        let mut bytes = good.clone();
        for _ in 0..8 {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        let cut = if rng.below(2) == 0 {
            bytes.len()
        } else {
            rng.below(bytes.len())
        };
        if let Ok(btf) = Btf::parse(&bytes[..cut]) {
            let _ = btf.find_by_name("task_struct");
            for id in (0..btf.type_count()).step_by(61) {
                let _ = (btf.resolve_size(id), btf.align_of(id), btf.resolve_type(id));
            }
        }
    }
}

fn ext_err(bytes: &[u8]) -> BtfExtError {
    BtfExt::parse(bytes).expect_err("malformed BTF.ext was accepted")
}

fn good_ext() -> Vec<u8> {
    let funcs = ExtPart {
        rec_size: 8,
        sections: vec![(1, vec![vec![0, 1], vec![8, 2]])],
    };
    let lines = ExtPart {
        rec_size: 16,
        sections: vec![(1, vec![vec![0, 1, 1, 1 << 10]])],
    };
    let relos = ExtPart {
        rec_size: 16,
        sections: vec![(1, vec![vec![0, 1, 1, 0]])],
    };
    ext_blob(
        32,
        Endianness::Little,
        Some(&funcs),
        Some(&lines),
        Some(&relos),
    )
}

#[test]
fn btf_ext_checks() {
    use ExtSubsection::*;
    let good = good_ext();
    assert!(BtfExt::parse(&good).is_ok());
    assert_eq!(ext_err(&good[..7]), BtfExtError::HeaderTruncated { len: 7 });

    let mut bad = good.clone();
    bad[1] = 0;
    assert!(matches!(ext_err(&bad), BtfExtError::BadMagic { .. }));
    let mut bad = good.clone();
    bad[2] = 2;
    assert_eq!(
        ext_err(&bad),
        BtfExtError::UnsupportedVersion { version: 2 }
    );
    assert_eq!(ext_err(&bad).errno(), 95);
    let mut bad = good.clone();
    bad[3] = 1;
    assert_eq!(ext_err(&bad), BtfExtError::UnsupportedFlags { flags: 1 });
    assert_eq!(
        ext_err(&good[..31]),
        BtfExtError::HeaderLenTooLarge {
            hdr_len: 32,
            len: 31
        }
    );
    assert_eq!(ext_err(&good[..32]), BtfExtError::NoData);
    let mut bad = good.clone();
    put(&mut bad, 4, 16);
    assert_eq!(
        ext_err(&bad),
        BtfExtError::HeaderMissingInfo { hdr_len: 16 }
    );

    let mut bad = good.clone();
    put(&mut bad, 8, 2);
    assert_eq!(
        ext_err(&bad),
        BtfExtError::SubsectionMisaligned {
            subsection: FuncInfo,
            off: 2
        }
    );
    let mut bad = good.clone();
    put(&mut bad, 28, get(&good, 28) + 4);
    assert!(matches!(
        ext_err(&bad),
        BtfExtError::SubsectionOutOfBounds {
            subsection: CoreRelo,
            ..
        }
    ));
    let mut bad = good.clone();
    put(&mut bad, 12, 2);
    assert_eq!(
        ext_err(&bad),
        BtfExtError::RecordSizeMissing {
            subsection: FuncInfo
        }
    );
    let func_rec_size = 32 + get(&good, 8) as usize;
    for rec_size in [4, 10] {
        let mut bad = good.clone();
        put(&mut bad, func_rec_size, rec_size);
        assert_eq!(
            ext_err(&bad),
            BtfExtError::BadRecordSize {
                subsection: FuncInfo,
                rec_size
            }
        );
    }
    let mut bad = good.clone();
    put(&mut bad, 12, 4);
    assert_eq!(
        ext_err(&bad),
        BtfExtError::NoRecords {
            subsection: FuncInfo
        }
    );
    let mut bad = good.clone();
    put(&mut bad, 12, 8);
    assert_eq!(
        ext_err(&bad),
        BtfExtError::SectionHeaderTruncated {
            subsection: FuncInfo
        }
    );
    for num_info in [0, 3, u32::MAX] {
        let mut bad = good.clone();
        put(&mut bad, func_rec_size + 8, num_info);
        assert_eq!(
            ext_err(&bad),
            BtfExtError::BadRecordCount {
                subsection: FuncInfo,
                num_info
            }
        );
    }
}

#[test]
fn btf_ext_truncation_and_corruption_never_panic() {
    let good = good_ext();
    for len in 0..good.len() {
        assert!(
            BtfExt::parse(&good[..len]).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
    let mut rng = Rng::new(7);
    let mut parsed = 0;
    for i in 0..20_000 {
        let mut bytes = good.clone();
        if i % 2 == 0 {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        } else {
            let at = 4 * rng.below(bytes.len() / 4);
            let values = [0, 4, 8, 16, 24, 32, rng.below(64) as u32, u32::MAX];
            put(&mut bytes, at, values[rng.below(values.len())]);
        }
        if let Ok(ext) = BtfExt::parse(&bytes) {
            exercise_ext(&ext);
            parsed += 1;
        }
    }
    assert!(parsed > 100);
}
