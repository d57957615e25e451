//! CO-RE relocation on hand-built BTF: every relocation kind, flavors,
//! anonymous members, arrays and flexible arrays, bitfields, candidate
//! ambiguity and caching, module BTFs, instruction patching and poisoning,
//! and malformed records. Each scenario states the values it expects, and
//! is also run through the system libbpf's own relocation code (see
//! `core_support/oracle.c`; skipped with a note if libbpf-dev is missing),
//! which must agree on results, errnos, debug log and patched instructions.

mod common;
mod core_support;

use std::collections::BTreeMap;

use common::BtfWriter;
use core_support::*;
use userbpf_btf_core::co_re::{
    CoreError, PatchAction, PatchError, PoisonReason, SpecError, POISON_HELPER_ID,
};
use userbpf_btf_core::{Btf, BtfKind, CoreReloKind};

use CoreReloKind::*;

const SIGNED: u32 = 1;

fn target(w: &BtfWriter) -> Vec<(String, Vec<u8>)> {
    vec![("vmlinux".to_string(), w.build())]
}

fn program(insns: Vec<Slot>) -> BTreeMap<String, Vec<Slot>> {
    BTreeMap::from([("prog".to_string(), insns)])
}

fn scenario(
    local: &BtfWriter,
    targets: Vec<(String, Vec<u8>)>,
    insns: Vec<Slot>,
    records: Vec<Record>,
) -> Scenario {
    Scenario {
        local: local.build(),
        targets,
        sections: program(insns),
        records,
    }
}

fn rec(insn_index: usize, type_id: u32, access_str_off: u32, kind: CoreReloKind) -> Record {
    Record::new("prog", insn_index, type_id, access_str_off, kind)
}

#[test]
fn field_offsets_sizes_existence_and_signedness() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let uint = l.int("unsigned int", 4, 0, 32);
    let s = l.struct_("s", 8, &[("a", int, 0), ("b", uint, 32)]);
    let (a, b) = (l.str("0:0"), l.str("0:1"));

    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let tuint = t.int("unsigned int", 4, 0, 32);
    t.struct_(
        "s",
        12,
        &[("x", tint, 0), ("b", tuint, 32), ("a", tint, 64)],
    );

    let insns = vec![
        ldx(W, 1, 2, 0),
        add64_imm(2, 4),
        mov64_imm(3, 4),
        mov64_imm(3, 1),
        mov64_imm(3, 1),
        mov64_imm(3, 0),
        mov64_imm(3, 32),
        mov64_imm(3, 32),
        exit(),
    ];
    let records = vec![
        rec(0, s, a, FieldByteOffset),
        rec(1, s, b, FieldByteOffset),
        rec(2, s, a, FieldByteSize),
        rec(3, s, b, FieldExists),
        rec(4, s, a, FieldSigned),
        rec(5, s, b, FieldSigned),
        rec(6, s, a, FieldLshiftU64),
        rec(7, s, b, FieldRshiftU64),
    ];
    let run = run_and_compare(&scenario(&l, target(&t), insns, records), "fields");

    assert_eq!(run.slot("prog", 0), ldx(W, 1, 2, 8));
    assert_eq!(run.slot("prog", 1), add64_imm(2, 4));
    assert_eq!(imm_of(&run.slot("prog", 2)), 4);
    assert_eq!(imm_of(&run.slot("prog", 3)), 1);
    assert_eq!(imm_of(&run.slot("prog", 4)), 1);
    assert_eq!(imm_of(&run.slot("prog", 5)), 0);
    assert_eq!(imm_of(&run.slot("prog", 6)), 32);
    assert_eq!(imm_of(&run.slot("prog", 7)), 32);

    let first = run.outcome(0);
    assert_eq!(
        first.resolution.local_spec,
        "<byte_off> [3] struct s.a (0:0 @ offset 0)"
    );
    let target = first.resolution.target.as_ref().unwrap();
    assert_eq!(target.spec, "<byte_off> [3] struct s.a (0:2 @ offset 8)");
    assert_eq!(target.bit_offset, 64);
    assert_eq!(
        first.patch,
        PatchAction::Memory {
            insn_index: 0,
            old_off: 0,
            new_off: 8,
            size_change: None
        }
    );
    assert_eq!(
        first.log_lines("prog", 0),
        [
            "CO-RE relocating [3] struct s: found target candidate [3] struct s in [vmlinux]",
            "prog 'prog': relo #0: <byte_off> [3] struct s.a (0:0 @ offset 0)",
            "prog 'prog': relo #0: matching candidate #0 <byte_off> [3] struct s.a (0:2 @ offset 8)",
            "prog 'prog': relo #0: patched insn #0 (LDX/ST/STX) off 0 -> 8",
        ]
    );
    // The candidate search is cached per local type.
    assert!(run.outcome(1).resolution.candidates_found.is_empty());
}

#[test]
fn bitfields() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let uint = l.int("unsigned int", 4, 0, 32);
    let bf = l.struct_bitfields(
        "bf",
        4,
        &[("x", uint, 0, 3), ("y", uint, 3, 5), ("z", int, 8, 4)],
    );
    let (x, y, z) = (l.str("0:0"), l.str("0:1"), l.str("0:2"));

    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let tuint = t.int("unsigned int", 4, 0, 32);
    // y straddles the first 4 bytes: only an 8-byte load covers it.
    t.struct_bitfields(
        "bf",
        8,
        &[("y", tuint, 28, 5), ("x", tuint, 36, 3), ("z", tint, 40, 4)],
    );

    let insns = vec![
        mov64_imm(1, 0),
        mov64_imm(1, 4),
        mov64_imm(1, 61),
        mov64_imm(1, 61),
        mov64_imm(1, 0),
        mov64_imm(1, 4),
        mov64_imm(1, 56),
        mov64_imm(1, 59),
        mov64_imm(1, 1),
        mov64_imm(1, 52),
        // Bitfield offsets are not checked against the instruction.
        mov64_imm(1, 12345),
        exit(),
    ];
    let records = vec![
        rec(0, bf, x, FieldByteOffset),
        rec(1, bf, x, FieldByteSize),
        rec(2, bf, x, FieldLshiftU64),
        rec(3, bf, x, FieldRshiftU64),
        rec(4, bf, y, FieldByteOffset),
        rec(5, bf, y, FieldByteSize),
        rec(6, bf, y, FieldLshiftU64),
        rec(7, bf, y, FieldRshiftU64),
        rec(8, bf, z, FieldSigned),
        rec(9, bf, z, FieldLshiftU64),
        rec(10, bf, x, FieldByteOffset),
    ];
    let run = run_and_compare(&scenario(&l, target(&t), insns, records), "bitfields");
    let imms: Vec<i32> = (0..11).map(|i| imm_of(&run.slot("prog", i))).collect();
    assert_eq!(imms, [4, 4, 57, 61, 0, 8, 31, 59, 1, 52, 4]);
    assert_eq!(
        run.outcome(2).resolution.target.as_ref().unwrap().spec,
        "<lshift_u64> [3] struct bf.x (0:1 @ offset 4.4)"
    );
}

#[test]
fn bitfield_beyond_a_64_bit_load_is_an_error() {
    let mut l = BtfWriter::new();
    let uint = l.int("unsigned int", 4, 0, 32);
    let bf = l.struct_bitfields("bf", 4, &[("y", uint, 0, 5)]);
    let y = l.str("0:0");
    let mut t = BtfWriter::new();
    let tuint = t.int("unsigned int", 4, 0, 32);
    t.struct_bitfields("bf", 16, &[("y", tuint, 60, 5)]);
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![mov64_imm(1, 0), exit()],
            vec![rec(0, bf, y, FieldByteOffset)],
        ),
        "bitfield-too-wide",
    );
    assert_eq!(run.error(0).errno(), 7); // E2BIG
}

/// Local `struct outer { int b; int arr[4]; struct inner in; }`; the target
/// hides `b` and `arr` in an anonymous struct inside an anonymous union.
fn nested_btfs() -> (BtfWriter, BtfWriter, u32) {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let arr = l.array(int, int, 4);
    let inner = l.struct_("inner", 4, &[("q", int, 0)]);
    let outer = l.struct_(
        "outer",
        24,
        &[("b", int, 0), ("arr", arr, 32), ("in", inner, 160)],
    );

    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let tlong = t.int("long", 8, SIGNED, 64);
    let tarr = t.array(tint, tint, 4);
    let tinner = t.struct_("inner", 8, &[("p", tint, 0), ("q", tint, 32)]);
    let anon_s = t.struct_("", 20, &[("b", tint, 0), ("arr", tarr, 32)]);
    let anon_u = t.composite(BtfKind::Union, "", 24, &[("", anon_s, 0), ("c", tlong, 0)]);
    t.struct_(
        "outer",
        40,
        &[("a", tint, 0), ("", anon_u, 64), ("in", tinner, 256)],
    );
    (l, t, outer)
}

#[test]
fn anonymous_members_nesting_and_arrays() {
    let (mut l, t, outer) = nested_btfs();
    let accesses = ["0:1:2", "0:2:0", "0:0", "1:0", "0:1:3", "0:1:2", "0:1"];
    let offs: Vec<u32> = accesses.iter().map(|a| l.str(a)).collect();
    let insns = vec![
        mov64_imm(1, 12),
        ldx(W, 1, 2, 20),
        mov64_imm(1, 0),
        mov64_imm(1, 24),
        ldx(W, 1, 2, 16),
        mov64_imm(1, 4),
        mov64_imm(1, 16),
        exit(),
    ];
    let records = vec![
        rec(0, outer, offs[0], FieldByteOffset),
        rec(1, outer, offs[1], FieldByteOffset),
        rec(2, outer, offs[2], FieldByteOffset),
        rec(3, outer, offs[3], FieldByteOffset),
        rec(4, outer, offs[4], FieldByteOffset),
        rec(5, outer, offs[5], FieldByteSize),
        rec(6, outer, offs[6], FieldByteSize),
    ];
    let run = run_and_compare(&scenario(&l, target(&t), insns, records), "nested");
    assert_eq!(imm_of(&run.slot("prog", 0)), 20);
    assert_eq!(off_of(&run.slot("prog", 1)), 36);
    assert_eq!(imm_of(&run.slot("prog", 2)), 8);
    assert_eq!(imm_of(&run.slot("prog", 3)), 48);
    assert_eq!(off_of(&run.slot("prog", 4)), 24);
    assert_eq!(imm_of(&run.slot("prog", 5)), 4);
    assert_eq!(imm_of(&run.slot("prog", 6)), 16);
    let r = &run.outcome(0).resolution;
    assert_eq!(
        r.local_spec,
        "<byte_off> [4] struct outer.arr[2] (0:1:2 @ offset 12)"
    );
    assert_eq!(
        r.target.as_ref().unwrap().spec,
        "<byte_off> [7] struct outer.arr[2] (0:1:0:1:2 @ offset 20)"
    );
    assert_eq!(
        run.outcome(3).resolution.local_spec,
        "<byte_off> [4] struct outer[1].b (1:0 @ offset 24)"
    );
}

#[test]
fn array_index_past_the_target_array_poisons() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let arr = l.array(int, int, 4);
    let s = l.struct_("s", 16, &[("arr", arr, 0)]);
    let access = l.str("0:0:3");
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let tarr = t.array(tint, tint, 2);
    t.struct_("s", 8, &[("arr", tarr, 0)]);
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![ldx(W, 1, 2, 12), mov64_imm(1, 1), exit()],
            vec![
                rec(0, s, access, FieldByteOffset),
                rec(1, s, access, FieldExists),
            ],
        ),
        "short-array",
    );
    assert_eq!(run.slot("prog", 0), poisoned());
    assert_eq!(imm_of(&run.slot("prog", 1)), 0);
    assert!(matches!(
        run.outcome(0).patch,
        PatchAction::Poisoned {
            reason: PoisonReason::NoTarget,
            ldimm64: false,
            ..
        }
    ));
}

#[test]
fn flexible_arrays_may_be_indexed_past_their_end() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let flex = l.array(int, int, 0);
    let s = l.struct_("flex", 4, &[("n", int, 0), ("data", flex, 32)]);
    let access = l.str("0:1:7");
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let tlong = t.int("long", 8, SIGNED, 64);
    let tflex = t.array(tint, tint, 0);
    t.struct_(
        "flex",
        16,
        &[("pad", tlong, 0), ("n", tint, 64), ("data", tflex, 96)],
    );
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![ldx(W, 1, 2, 32), exit()],
            vec![rec(0, s, access, FieldByteOffset)],
        ),
        "flex",
    );
    assert_eq!(off_of(&run.slot("prog", 0)), 40);

    // A zero-length array that is not the last member is not flexible.
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let empty = l.array(int, int, 0);
    let s = l.struct_("notflex", 8, &[("data", empty, 0), ("n", int, 0)]);
    let access = l.str("0:0:1");
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![mov64_imm(1, 4), exit()],
            vec![rec(0, s, access, FieldByteOffset)],
        ),
        "not-flex",
    );
    assert!(matches!(
        run.error(0),
        CoreError::BadSpec {
            reason: SpecError::ArrayIndexOutOfRange {
                index: 1,
                nelems: 0
            },
            ..
        }
    ));
}

#[test]
fn flavors_pick_candidates_by_essential_name() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let v1 = l.struct_("s___v1", 4, &[("a", int, 0)]);
    let v2 = l.struct_("s___v2", 4, &[("renamed", int, 0)]);
    let (field, root) = (l.str("0:0"), l.str("0"));
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    t.struct_("s", 8, &[("pad", tint, 0), ("a", tint, 32)]);
    let insns = vec![
        mov64_imm(1, 0),
        mov64_imm(1, 1),
        ldx(W, 1, 2, 0),
        mov64_imm(1, 1),
        exit(),
    ];
    let records = vec![
        rec(0, v1, field, FieldByteOffset),
        rec(1, v2, field, FieldExists),
        rec(2, v2, field, FieldByteOffset),
        rec(3, v2, root, TypeExists),
    ];
    let run = run_and_compare(&scenario(&l, target(&t), insns, records), "flavors");
    assert_eq!(imm_of(&run.slot("prog", 0)), 4);
    assert_eq!(imm_of(&run.slot("prog", 1)), 0);
    assert_eq!(run.slot("prog", 2), poisoned());
    assert_eq!(imm_of(&run.slot("prog", 3)), 1);
    assert_eq!(
        run.outcome(2).log_lines("prog", 2),
        [
            "prog 'prog': relo #2: <byte_off> [3] struct s___v2.renamed (0:0 @ offset 0)",
            "prog 'prog': relo #2: non-matching candidate #0 <byte_off> [2] struct s (0 @ offset 0)",
            "prog 'prog': relo #2: no matching targets found",
            "prog 'prog': relo #2: substituting insn #2 w/ invalid insn",
        ]
    );
}

#[test]
fn candidates_must_agree() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let s = l.struct_("s", 4, &[("a", int, 0)]);
    let field = l.str("0:0");

    // Same field at different offsets.
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    t.struct_("s", 4, &[("a", tint, 0)]);
    t.struct_("s___2", 8, &[("pad", tint, 0), ("a", tint, 32)]);
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![mov64_imm(1, 0), exit()],
            vec![rec(0, s, field, FieldByteOffset)],
        ),
        "offset-ambiguity",
    );
    assert_eq!(
        run.error(0),
        &CoreError::FieldOffsetAmbiguity {
            first: 0,
            candidate: 32
        }
    );
    assert_eq!(run.error(0).errno(), 22);

    // Same offset, different sizes.
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let tlong = t.int("long", 8, SIGNED, 64);
    t.struct_("s", 4, &[("a", tint, 0)]);
    t.struct_("s___2", 8, &[("a", tlong, 0)]);
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![mov64_imm(1, 4), exit()],
            vec![rec(0, s, field, FieldByteSize)],
        ),
        "size-ambiguity",
    );
    assert_eq!(
        run.error(0).to_string(),
        "relocation decision ambiguity: success 8 != success 4"
    );

    // Identical candidates agree.
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    t.struct_("s", 8, &[("pad", tint, 0), ("a", tint, 32)]);
    t.struct_("s___2", 8, &[("pad", tint, 0), ("a", tint, 32)]);
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![mov64_imm(1, 0), exit()],
            vec![rec(0, s, field, FieldByteOffset)],
        ),
        "agreeing",
    );
    assert_eq!(imm_of(&run.slot("prog", 0)), 4);
    assert_eq!(run.outcome(0).resolution.candidates_checked.len(), 2);

    // Matching prunes the cached candidates: once `s.b` matched only `s`,
    // TYPE_SIZE sees only `s` and is not ambiguous. In the other order it
    // is.
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let s = l.struct_("s", 8, &[("a", int, 0), ("b", int, 32)]);
    let (b, root) = (l.str("0:1"), l.str("0"));
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    t.struct_("s", 8, &[("a", tint, 0), ("b", tint, 32)]);
    t.struct_("s___2", 16, &[("a", tint, 0)]);
    let insns = vec![mov64_imm(1, 4), mov64_imm(1, 8), exit()];
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            insns.clone(),
            vec![rec(0, s, b, FieldByteOffset), rec(1, s, root, TypeSize)],
        ),
        "pruned",
    );
    assert_eq!(imm_of(&run.slot("prog", 1)), 8);
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            insns,
            vec![rec(1, s, root, TypeSize), rec(0, s, b, FieldByteOffset)],
        ),
        "unpruned",
    );
    assert!(matches!(run.error(0), CoreError::DecisionAmbiguity { .. }));
}

#[test]
fn type_relocations() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let long = l.int("long", 8, SIGNED, 64);
    let task = l.struct_("task", 4, &[("pid", int, 0)]);
    let task_t = l.typedef("task_t", task);
    let missing = l.struct_("missing", 4, &[("x", int, 0)]);
    let m = l.struct_("m", 16, &[("x", int, 0), ("y", long, 64)]);
    let k = l.struct_("k", 4, &[("x", int, 0)]);
    let root = l.str("0");

    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let ttask = t.struct_("task", 8, &[("pid", tint, 0), ("tgid", tint, 32)]);
    t.typedef("task_t", ttask);
    t.struct_("m", 8, &[("x", tint, 0), ("y", tint, 32)]);
    t.composite(BtfKind::Union, "k", 4, &[("x", tint, 0)]);

    let mut insns = vec![mov64_imm(1, 1), mov64_imm(1, 4)];
    insns.extend(ld_imm64(1, u64::from(task)));
    insns.extend(ld_imm64(1, u64::from(task)));
    insns.extend([
        mov64_imm(1, 1),
        mov64_imm(1, 1),
        mov64_imm(1, 4),
        mov64_imm(1, 4),
        mov64_imm(1, 1),
        mov64_imm(1, 1),
        mov64_imm(1, 1),
        mov64_imm(1, 1),
    ]);
    insns.extend(ld_imm64(1, u64::from(missing)));
    insns.push(exit());
    let records = vec![
        rec(0, task, root, TypeExists),
        rec(1, task, root, TypeSize),
        rec(2, task, root, TypeIdLocal),
        rec(4, task, root, TypeIdTarget),
        rec(6, task, root, TypeMatches),
        rec(7, missing, root, TypeExists),
        rec(8, missing, root, TypeSize),
        rec(9, task_t, root, TypeSize),
        rec(10, m, root, TypeExists),
        rec(11, m, root, TypeMatches),
        rec(12, k, root, TypeExists),
        rec(13, missing, root, TypeMatches),
        rec(14, missing, root, TypeIdTarget),
    ];
    let run = run_and_compare(&scenario(&l, target(&t), insns, records), "types");
    let imm = |i| imm_of(&run.slot("prog", i));
    assert_eq!(imm(0), 1);
    assert_eq!(imm(1), 8);
    assert_eq!(imm(2) as u32, task);
    assert_eq!(imm(4) as u32, ttask);
    assert_eq!(imm(6), 1);
    assert_eq!(imm(7), 0);
    assert_eq!(imm(8), 0);
    assert_eq!(imm(9), 8);
    assert_eq!(
        imm(10),
        1,
        "compatible: names below the root are not compared"
    );
    assert_eq!(imm(11), 0, "y is long locally, int in the target");
    assert_eq!(
        imm(12),
        0,
        "struct k has no candidate: the target's k is a union"
    );
    assert_eq!(imm(13), 0);
    // A missing type's id is 0, not a poisoned instruction.
    assert_eq!(run.slot("prog", 14), ld_imm64(1, 0)[0]);
    assert_eq!(run.slot("prog", 15), ld_imm64(1, 0)[1]);
    assert!(run.outcome(2).resolution.candidates_checked.is_empty());
    let _ = long;
}

#[test]
fn enumerators() {
    let mut l = BtfWriter::new();
    let e = l.enum_("e", 4, false, &[("A", 0), ("B___flav", 1), ("C", 2)]);
    let e64 = l.enum64("e64", 8, false, &[("BIG", 1 << 40)]);
    let small = l.enum_("grows", 4, false, &[("X", 1)]);
    let neg = l.enum_("neg", 4, false, &[("N", 5)]);
    let (i0, i1, i2) = (l.str("0"), l.str("1"), l.str("2"));

    let mut t = BtfWriter::new();
    t.enum_("e", 4, true, &[("B", 10), ("A", 20)]);
    t.enum64("e64", 8, false, &[("BIG", 1 << 41)]);
    t.enum64("grows", 8, false, &[("X", 1 << 33)]);
    t.enum_("neg", 4, false, &[("N", i32::MIN)]);

    let mut insns = vec![
        mov64_imm(1, 1),
        mov64_imm(1, 0),
        mov64_imm(1, 1),
        mov64_imm(1, 1),
    ];
    insns.extend(ld_imm64(1, 2)); // 4: e.C's value, missing in the target
    insns.extend(ld_imm64(1, 1 << 40)); // 6
    insns.extend(ld_imm64(1, 1)); // 8
    insns.extend(ld_imm64(1, 5)); // 10
    insns.push(mov32_imm(1, 5)); // 12
    insns.push(exit());
    let records = vec![
        rec(0, e, i0, EnumvalExists),
        rec(1, e, i0, EnumvalValue),
        rec(2, e, i1, EnumvalValue),
        rec(3, e, i2, EnumvalExists),
        rec(4, e, i2, EnumvalValue),
        rec(6, e64, i0, EnumvalValue),
        rec(8, small, i0, EnumvalValue),
        rec(10, neg, i0, EnumvalValue),
        rec(12, neg, i0, EnumvalValue),
    ];
    let run = run_and_compare(&scenario(&l, target(&t), insns, records), "enums");
    let imm = |i| imm_of(&run.slot("prog", i));
    assert_eq!(imm(0), 1);
    assert_eq!(imm(1), 20);
    assert_eq!(imm(2), 10, "B___flav matches B");
    assert_eq!(imm(3), 0);
    // A 64-bit load is poisoned in both slots.
    assert_eq!(run.slot("prog", 4), poisoned());
    assert_eq!(run.slot("prog", 5), poisoned());
    assert_eq!(
        run.outcome(4).patch,
        PatchAction::Poisoned {
            insn_index: 4,
            ldimm64: true,
            reason: PoisonReason::NoTarget
        }
    );
    assert_eq!(&run.slot("prog", 6)[..], &ld_imm64(1, 1 << 41)[0][..]);
    assert_eq!(run.slot("prog", 7), ld_imm64(1, 1 << 41)[1]);
    assert_eq!(run.slot("prog", 8), ld_imm64(1, 1 << 33)[0]);
    assert_eq!(run.slot("prog", 9), ld_imm64(1, 1 << 33)[1]);
    // libbpf sign-extends 32-bit enumerator values, even unsigned ones.
    assert_eq!(run.slot("prog", 11), ld_imm64(1, 0xffff_ffff_8000_0000)[1]);
    assert_eq!(imm(12), i32::MIN);
    assert_eq!(
        run.outcome(1).resolution.target.as_ref().unwrap().spec,
        "<enumval_value> [1] enum e::A = 20"
    );
    assert_eq!(
        run.outcome(7).resolution.target.as_ref().unwrap().spec,
        "<enumval_value> [4] enum neg::N = 2147483648"
    );
}

/// Local `struct p { u64 u; s64 s; struct p *ptr; char name[8]; }`; the
/// target narrowed `u` and `s` to 32 bits and widened `name`.
fn memory_btfs() -> (BtfWriter, BtfWriter, u32) {
    let mut l = BtfWriter::new();
    let u64_ = l.int("unsigned long long", 8, 0, 64);
    let s64 = l.int("long long", 8, SIGNED, 64);
    let chr = l.int("char", 1, SIGNED, 8);
    let p = l.next_id() + 2;
    let ptr = l.ptr(p);
    let name = l.array(chr, u64_, 8);
    let p2 = l.struct_(
        "p",
        32,
        &[
            ("u", u64_, 0),
            ("s", s64, 64),
            ("ptr", ptr, 128),
            ("name", name, 192),
        ],
    );
    assert_eq!(p, p2);

    let mut t = BtfWriter::new();
    let tu32 = t.int("unsigned int", 4, 0, 32);
    let ts32 = t.int("int", 4, SIGNED, 32);
    let tchr = t.int("char", 1, SIGNED, 8);
    let tp = t.next_id() + 2;
    let tptr = t.ptr(tp);
    let tname = t.array(tchr, tu32, 16);
    t.struct_(
        "p",
        32,
        &[
            ("u", tu32, 0),
            ("s", ts32, 32),
            ("ptr", tptr, 64),
            ("name", tname, 128),
        ],
    );
    (l, t, p)
}

#[test]
fn loads_and_stores_follow_the_field() {
    let (mut l, t, p) = memory_btfs();
    let a: Vec<u32> = ["0:0", "0:1", "0:2", "0:3:1"]
        .iter()
        .map(|s| l.str(s))
        .collect();
    let insns = vec![
        ldx(DW, 1, 2, 0),
        ldx(DW, 1, 2, 8),
        ldx(DW, 1, 2, 16),
        ldx(B, 1, 2, 25),
        stx(DW, 2, 1, 0),
        st(DW, 2, 16, 0),
        exit(),
    ];
    let records = vec![
        rec(0, p, a[0], FieldByteOffset),
        rec(1, p, a[1], FieldByteOffset),
        rec(2, p, a[2], FieldByteOffset),
        rec(3, p, a[3], FieldByteOffset),
        rec(4, p, a[0], FieldByteOffset),
        rec(5, p, a[2], FieldByteOffset),
    ];
    let run = run_and_compare(&scenario(&l, target(&t), insns, records), "memory");
    // An unsigned field shrank: the load shrinks with it.
    assert_eq!(run.slot("prog", 0), ldx(W, 1, 2, 0));
    assert_eq!(
        run.outcome(0).patch,
        PatchAction::Memory {
            insn_index: 0,
            old_off: 0,
            new_off: 0,
            size_change: Some((8, 4))
        }
    );
    // A signed one cannot be read narrower: poisoned.
    assert_eq!(run.slot("prog", 1), poisoned());
    assert!(matches!(
        run.outcome(1).patch,
        PatchAction::Poisoned {
            reason: PoisonReason::FieldSizeMismatch,
            ..
        }
    ));
    assert_eq!(run.slot("prog", 2), ldx(DW, 1, 2, 8));
    assert_eq!(run.slot("prog", 3), ldx(B, 1, 2, 17));
    assert_eq!(run.slot("prog", 4), stx(W, 2, 1, 0));
    assert_eq!(run.slot("prog", 5), st(DW, 2, 8, 0));
}

/// A load of a whole array field whose length changed relocates by element
/// size (libbpf since 1.2). libbpf 1.1 compared whole-array sizes and
/// poisoned this load, so it is not compared with the system libbpf 1.1.
#[test]
fn array_field_loads_use_the_element_size() {
    let (mut l, t, p) = memory_btfs();
    let name = l.str("0:3");
    let run = run_ours(&scenario(
        &l,
        target(&t),
        vec![ldx(B, 1, 2, 24), exit()],
        vec![rec(0, p, name, FieldByteOffset)],
    ));
    assert_eq!(run.slot("prog", 0), ldx(B, 1, 2, 16));
}

/// Runs a one-relocation scenario (both ways) and returns its error.
fn single_error(
    l: &BtfWriter,
    t: &BtfWriter,
    insns: Vec<Slot>,
    record: Record,
    name: &str,
) -> CoreError {
    let run = run_and_compare(&scenario(l, target(t), insns, vec![record]), name);
    run.error(0).clone()
}

#[test]
fn instructions_that_cannot_be_patched() {
    let (mut l, t, p) = memory_btfs();
    let (u, name1) = (l.str("0:0"), l.str("0:3:1"));

    let e = single_error(
        &l,
        &t,
        vec![ldx(DW, 1, 2, 4), exit()],
        rec(0, p, u, FieldByteOffset),
        "unexpected-off",
    );
    assert_eq!(
        e,
        CoreError::Patch(PatchError::UnexpectedValue {
            insn_index: 0,
            class: "LDX/ST/STX",
            got: 4,
            expected: 0,
            new: 0
        })
    );
    let e = single_error(
        &l,
        &t,
        vec![mov64_imm(1, 3), exit()],
        rec(0, p, u, FieldByteOffset),
        "unexpected-imm",
    );
    assert!(matches!(
        e,
        CoreError::Patch(PatchError::UnexpectedValue {
            class: "ALU/ALU64",
            ..
        })
    ));
    let e = single_error(
        &l,
        &t,
        vec![add64_reg(1, 2), exit()],
        rec(0, p, u, FieldByteOffset),
        "alu-x",
    );
    assert_eq!(
        e,
        CoreError::Patch(PatchError::AluNotImmediate { insn_index: 0 })
    );
    let e = single_error(
        &l,
        &t,
        vec![exit(), exit()],
        rec(0, p, u, FieldByteOffset),
        "jmp",
    );
    assert!(matches!(
        e,
        CoreError::Patch(PatchError::UnrecognizedInsn { code: 0x95, .. })
    ));
    // The load's size must be the local field's for a size change.
    let e = single_error(
        &l,
        &t,
        vec![ldx(W, 1, 2, 0), exit()],
        rec(0, p, u, FieldByteOffset),
        "mem-size",
    );
    assert!(matches!(
        e,
        CoreError::Patch(PatchError::UnexpectedMemSize {
            got: 4,
            expected: 8,
            ..
        })
    ));
    let mut bad = ld_imm64(1, 25).to_vec();
    bad[0][1] = 0x10; // src_reg 1: a map reference, not a plain constant
    bad.push(exit());
    let e = single_error(
        &l,
        &t,
        bad,
        rec(0, p, name1, FieldByteOffset),
        "ldimm64-form",
    );
    assert_eq!(
        e,
        CoreError::Patch(PatchError::BadLdimm64 { insn_index: 0 })
    );
    let e = single_error(
        &l,
        &t,
        vec![ldx(B, 1, 2, 25)],
        rec(3, p, name1, FieldByteOffset),
        "insn-index",
    );
    assert!(matches!(
        e,
        CoreError::Patch(PatchError::InsnOutOfRange { .. })
    ));
    assert_eq!(e.errno(), 22);

    // Offsets past 32767 do not fit a load's offset (an ALU immediate is
    // fine).
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let s = l.struct_("big", 4, &[("f", int, 0)]);
    let f = l.str("0:0");
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    let pad = t.array(tint, tint, 10_000);
    t.struct_("big", 40_004, &[("pad", pad, 0), ("f", tint, 320_000)]);
    let e = single_error(
        &l,
        &t,
        vec![ldx(W, 1, 2, 0), exit()],
        rec(0, s, f, FieldByteOffset),
        "erange",
    );
    assert_eq!(
        e,
        CoreError::Patch(PatchError::OffsetTooBig {
            insn_index: 0,
            value: 40_000
        })
    );
    assert_eq!(e.errno(), 34);
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            vec![mov64_imm(1, 0), exit()],
            vec![rec(0, s, f, FieldByteOffset)],
        ),
        "big-imm",
    );
    assert_eq!(imm_of(&run.slot("prog", 0)), 40_000);

    // A field that grew to 16 bytes has no load size.
    let mut l = BtfWriter::new();
    let u64_ = l.int("unsigned long long", 8, 0, 64);
    let s = l.struct_("wide", 8, &[("f", u64_, 0)]);
    let f = l.str("0:0");
    let mut t = BtfWriter::new();
    let u128_ = t.int("unsigned __int128", 16, 0, 128);
    t.struct_("wide", 16, &[("f", u128_, 0)]);
    let e = single_error(
        &l,
        &t,
        vec![ldx(DW, 1, 2, 0), exit()],
        rec(0, s, f, FieldByteOffset),
        "mem-size-16",
    );
    assert_eq!(
        e,
        CoreError::Patch(PatchError::InvalidMemSize {
            insn_index: 0,
            size: 16
        })
    );
}

#[test]
fn module_btfs_are_searched_only_without_vmlinux_candidates() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let modtype = l.struct_("modtype", 4, &[("y", int, 0)]);
    let a = l.struct_("a", 4, &[("x", int, 0)]);
    let (field, root) = (l.str("0:0"), l.str("0"));

    let mut main = BtfWriter::new();
    let mint = main.int("int", 4, SIGNED, 32);
    main.struct_("a", 4, &[("x", mint, 0)]);
    let main_bytes = main.build();
    let main_btf = Btf::parse(&main_bytes).unwrap();
    let mut m1 = BtfWriter::split(&main_btf);
    let m1_type = m1.struct_("modtype", 8, &[("pad", mint, 0), ("y", mint, 32)]);
    m1.struct_("a", 8, &[("pad", mint, 0), ("x", mint, 32)]);
    let mut m2 = BtfWriter::split(&main_btf);
    m2.struct_("modtype", 8, &[("pad", mint, 0), ("y", mint, 32)]);

    let mut insns = vec![mov64_imm(1, 0), mov64_imm(1, 0)];
    insns.extend(ld_imm64(1, u64::from(modtype)));
    insns.push(exit());
    let s = Scenario {
        local: l.build(),
        targets: vec![
            ("vmlinux".to_string(), main_bytes.clone()),
            ("mod1".to_string(), m1.build()),
            ("mod2".to_string(), m2.build()),
        ],
        sections: program(insns),
        records: vec![
            rec(0, modtype, field, FieldByteOffset),
            rec(1, a, field, FieldByteOffset),
            rec(2, modtype, root, TypeIdTarget),
        ],
    };
    let run = run_and_compare(&s, "modules");
    assert_eq!(imm_of(&run.slot("prog", 0)), 4);
    assert_eq!(imm_of(&run.slot("prog", 1)), 0, "vmlinux's a, not mod1's");
    assert_eq!(imm_of(&run.slot("prog", 2)) as u32, m1_type);
    let found: Vec<String> = run
        .outcome(0)
        .resolution
        .candidates_found
        .iter()
        .map(|c| c.log_line())
        .collect();
    assert_eq!(
        found,
        [
            format!("CO-RE relocating [{modtype}] struct modtype: found target candidate [{m1_type}] struct modtype in [mod1]"),
            format!("CO-RE relocating [{modtype}] struct modtype: found target candidate [{m1_type}] struct modtype in [mod2]"),
        ]
    );
    let target = run.outcome(2).resolution.target.as_ref().unwrap();
    assert_eq!(
        (target.candidate.target, target.candidate.type_id),
        (1, m1_type)
    );
}

#[test]
fn malformed_records_are_errors() {
    let mut l = BtfWriter::new();
    let int = l.int("int", 4, SIGNED, 32);
    let s = l.struct_("s", 4, &[("a", int, 0)]);
    let anon = l.struct_("", 4, &[("a", int, 0)]);
    let e = l.enum_("e", 4, false, &[("A", 0)]);
    let access: Vec<u32> = ["0:0", "0:1", "0", "0:0:0", "0:x", "1", ""]
        .iter()
        .map(|a| l.str(a))
        .collect();
    let mut t = BtfWriter::new();
    let tint = t.int("int", 4, SIGNED, 32);
    t.struct_("s", 4, &[("a", tint, 0)]);
    t.enum_("e", 4, false, &[("A", 0)]);
    let insns = || vec![mov64_imm(1, 0), exit()];
    let spec_error = |e: &CoreError| match e {
        CoreError::BadSpec { reason, .. } => reason.clone(),
        other => panic!("not a spec error: {other}"),
    };

    let cases: Vec<(&str, Record)> = vec![
        ("bad-type-id", rec(0, 999, access[0], FieldByteOffset)),
        ("bad-access-offset", rec(0, s, 99_999, FieldByteOffset)),
        ("member-out-of-range", rec(0, s, access[1], FieldByteOffset)),
        ("type-based-not-zero", rec(0, s, access[0], TypeSize)),
        ("into-an-int", rec(0, s, access[3], FieldByteOffset)),
        ("not-a-number", rec(0, s, access[4], FieldByteOffset)),
        ("enum-on-struct", rec(0, s, access[2], EnumvalValue)),
        ("enum-index", rec(0, e, access[5], EnumvalExists)),
        ("empty-access", rec(0, s, access[6], FieldExists)),
        ("anonymous", rec(0, anon, access[0], FieldByteOffset)),
        ("array-signed", rec(0, s, access[2], FieldSigned)),
    ];
    let mut errors = Vec::new();
    for (name, record) in cases {
        errors.push(single_error(&l, &t, insns(), record, name));
    }
    assert_eq!(errors[0], CoreError::InvalidLocalType { type_id: 999 });
    assert_eq!(spec_error(&errors[1]), SpecError::AccessStringMissing);
    assert_eq!(
        spec_error(&errors[2]),
        SpecError::MemberIndexOutOfRange { index: 1, count: 1 }
    );
    assert_eq!(spec_error(&errors[3]), SpecError::TypeBasedAccessNotZero);
    assert!(matches!(
        spec_error(&errors[4]),
        SpecError::UnexpectedKind {
            kind: BtfKind::Int,
            ..
        }
    ));
    assert_eq!(spec_error(&errors[5]), SpecError::NotANumber { at: 2 });
    assert!(matches!(
        spec_error(&errors[6]),
        SpecError::NotAnEnum { .. }
    ));
    assert!(matches!(
        spec_error(&errors[7]),
        SpecError::EnumIndexOutOfRange { index: 1, .. }
    ));
    assert_eq!(spec_error(&errors[8]), SpecError::EmptyAccessString);
    assert!(matches!(
        errors[9],
        CoreError::AnonymousCandidateSearch { .. }
    ));
    assert!(matches!(errors[10], CoreError::Calc(_)));
    assert!(errors.iter().all(|e| e.errno() == 22), "{errors:?}");

    // An unknown kind.
    let mut record = rec(0, s, access[0], FieldByteOffset);
    record.relo.kind = 42;
    let e = single_error(&l, &t, insns(), record, "unknown-kind");
    assert_eq!(spec_error(&e), SpecError::UnknownKind { raw: 42 });

    // TYPE_ID_LOCAL needs no candidate, so anonymous types are fine.
    let mut insns = ld_imm64(1, u64::from(anon)).to_vec();
    insns.push(exit());
    let run = run_and_compare(
        &scenario(
            &l,
            target(&t),
            insns,
            vec![rec(0, anon, access[2], TypeIdLocal)],
        ),
        "anonymous-local-id",
    );
    assert_eq!(imm_of(&run.slot("prog", 0)) as u32, anon);
}

#[test]
fn poisoned_instructions_call_the_bad_relo_helper() {
    assert_eq!(POISON_HELPER_ID, 195_896_080);
    assert_eq!(imm_of(&poisoned()), POISON_HELPER_ID);
}

/// Random records (type ids, access strings, kinds) and random instruction
/// bytes give results or errors, never panics or hangs; modifier loops
/// included.
#[test]
fn garbage_records_never_panic() {
    use userbpf_btf_core::co_re::CoreRelocator;
    use userbpf_btf_core::BpfCoreRelo;

    let (mut w, _) = common::kitchen_sink();
    // typedef loop -> const -> typedef loop.
    let looped = w.next_id();
    w.typedef("loop", looped + 1);
    w.modifier(BtfKind::Const, looped);
    let looped_struct = w.struct_("looped", 4, &[("x", looped, 0)]);
    let strings: Vec<u32> = [
        "0",
        "0:0",
        "0:1",
        "0:0:0",
        "1:2:3",
        "0:99999",
        "7",
        "-1",
        ":",
        "0:",
        "x",
        "0:0:0:0:0:0:0",
        "4294967295",
        "2147483647:0",
    ]
    .iter()
    .map(|s| w.str(s))
    .collect();
    let bytes = w.build();
    let Ok(local) = Btf::parse(&bytes) else {
        panic!("kitchen sink with a modifier loop parses");
    };
    let target = Btf::parse(&bytes).unwrap();
    let count = local.type_count();
    let mut rng = common::Rng::new(7);
    let mut relocator = CoreRelocator::new(&local, &[&target]);
    let (mut ok, mut failed) = (0, 0);
    for round in 0..20_000 {
        if round % 1000 == 0 {
            // A fresh cache now and then.
            relocator = CoreRelocator::new(&local, &[&target]);
        }
        let type_id = match rng.below(10) {
            0 => looped_struct,
            1 => looped,
            _ => rng.below(count as usize + 3) as u32,
        };
        let access_str_off = if rng.below(20) == 0 {
            rng.next() as u32
        } else {
            strings[rng.below(strings.len())]
        };
        let relo = BpfCoreRelo {
            insn_off: 0,
            type_id,
            access_str_off,
            kind: rng.below(15) as u32,
        };
        let mut insns: Vec<[u8; 8]> = (0..rng.below(3))
            .map(|_| rng.next().to_le_bytes())
            .collect();
        let index = rng.below(3);
        match relocator.relocate(&mut insns, &relo, index) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!([7, 22, 34, 95].contains(&e.errno()), "{e}");
                failed += 1;
            }
        }
    }
    // Random instruction bytes rarely hold the expected value.
    assert_eq!(ok + failed, 20_000);
    assert!(ok > 0, "{ok} ok, {failed} failed");
}
