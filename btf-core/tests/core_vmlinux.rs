//! CO-RE relocation of a clang-built object (tests/data/core_relocs.bpf.c)
//! against the running kernel's BTF (/sys/kernel/btf/vmlinux). Every
//! patched value is checked against facts looked up independently in the
//! kernel's BTF here (a plain member walk, not the CO-RE engine).
//! Skipped with a note when clang-16 or the kernel's BTF is missing.

mod core_support;

use core_support::*;
use userbpf_btf_core::co_re::{CoreOutcome, PatchAction, PoisonReason};
use userbpf_btf_core::{Btf, BtfKind, CoreReloKind, TypeView};

const SOURCE: &str = include_str!("data/core_relocs.bpf.c");

/// A member found by name, through anonymous members.
struct Member {
    bit_offset: u32,
    type_id: u32,
    bitfield_size: u32,
}

/// Looks `name` up among the members of composite `type_id`, descending
/// into anonymous members in order; offsets are relative to `type_id`.
fn find_member(btf: &Btf, type_id: u32, name: &str) -> Option<Member> {
    let t = btf.skip_mods_and_typedefs(type_id)?;
    let (TypeView::Struct(c) | TypeView::Union(c)) = t.view() else {
        return None;
    };
    for m in c.members() {
        let member_name = btf.name_by_offset(m.name_off()).unwrap_or("");
        if member_name == name {
            return Some(Member {
                bit_offset: m.bit_offset(),
                type_id: m.type_id(),
                bitfield_size: m.bitfield_size(),
            });
        }
        if member_name.is_empty() {
            if let Some(inner) = find_member(btf, m.type_id(), name) {
                return Some(Member {
                    bit_offset: m.bit_offset() + inner.bit_offset,
                    ..inner
                });
            }
        }
    }
    None
}

fn struct_id(btf: &Btf, name: &str) -> u32 {
    btf.find_by_name_kind(name, BtfKind::Struct)
        .unwrap_or_else(|| panic!("kernel has no struct {name}"))
}

fn byte_offset(btf: &Btf, strukt: &str, field: &str) -> u32 {
    let member = find_member(btf, struct_id(btf, strukt), field).unwrap();
    assert_eq!(member.bitfield_size, 0);
    member.bit_offset / 8
}

/// The value of enumerator `name` of the kernel's enum (or enum64) `enum_name`.
fn enumerator(btf: &Btf, enum_name: &str, name: &str) -> u64 {
    for kind in [BtfKind::Enum, BtfKind::Enum64] {
        let Some(id) = btf.find_by_name_kind(enum_name, kind) else {
            continue;
        };
        match btf.type_by_id(id).unwrap().view() {
            TypeView::Enum(e) => {
                let i = e
                    .values
                    .iter()
                    .position(|v| btf.name_by_offset(v.name_off) == Some(name))
                    .unwrap();
                return i64::from(e.values[i].val) as u64;
            }
            TypeView::Enum64(e) => {
                let i = e
                    .values
                    .iter()
                    .position(|v| btf.name_by_offset(v.name_off) == Some(name))
                    .unwrap();
                return e.values[i].value();
            }
            _ => unreachable!(),
        }
    }
    panic!("kernel has no enum {enum_name}");
}

/// The relocations of `kind` whose local spec contains `needle`, as
/// (outcome, patched instruction).
fn find<'a>(
    run: &'a Run,
    scenario: &Scenario,
    kind: CoreReloKind,
    needle: &str,
) -> Vec<(&'a CoreOutcome, Slot)> {
    let found: Vec<_> = run
        .results
        .iter()
        .zip(&scenario.records)
        .filter_map(|(result, record)| {
            let outcome = result.as_ref().ok()?;
            let r = &outcome.resolution;
            (r.kind == kind && r.local_spec.contains(needle))
                .then(|| (outcome, run.slot(&record.section, record.insn_index)))
        })
        .collect();
    assert!(
        !found.is_empty(),
        "no {} relocation like {needle:?}",
        kind.name()
    );
    found
}

/// The patched value: an ALU immediate, a load/store offset or a 64-bit
/// immediate.
fn value(outcome: &CoreOutcome, slot: &Slot) -> u64 {
    match outcome.patch {
        PatchAction::Alu { .. } => imm_of(slot) as u32 as u64,
        PatchAction::Memory { .. } => off_of(slot) as u64,
        PatchAction::Ldimm64 { new_value, .. } => new_value,
        PatchAction::Poisoned { .. } => panic!("poisoned: {outcome}"),
    }
}

/// Every such relocation patched `expected` in.
fn expect(run: &Run, scenario: &Scenario, kind: CoreReloKind, needle: &str, expected: u64) {
    for (outcome, slot) in find(run, scenario, kind, needle) {
        assert_eq!(value(outcome, &slot), expected, "{outcome}");
    }
}

/// Every such relocation poisoned its instruction for `reason`.
fn expect_poisoned(
    run: &Run,
    scenario: &Scenario,
    kind: CoreReloKind,
    needle: &str,
    reason: PoisonReason,
) {
    for (outcome, slot) in find(run, scenario, kind, needle) {
        assert!(
            matches!(outcome.patch, PatchAction::Poisoned { reason: r, .. } if r == reason),
            "{outcome}"
        );
        assert_eq!(slot, poisoned());
    }
}

fn relocated() -> Option<(Scenario, Run, Btf)> {
    let targets = vmlinux_target()?;
    let vmlinux = Btf::parse(&targets[0].1).unwrap();
    let object = compile_bpf("core_relocs", SOURCE)?;
    let scenario = object_scenario(&object, targets);
    let run = run_ours(&scenario);
    Some((scenario, run, vmlinux))
}

/// What libbpf's bitfield rules give for a bitfield at `bit_offset` of
/// `bits` bits whose type is `type_size` bytes: the smallest naturally
/// aligned load, at least `type_size`, that covers it, as (byte offset,
/// byte size, left shift, right shift) for a 64-bit register.
fn bitfield_load(bit_offset: u32, bits: u32, type_size: u32) -> (u32, u32, u32, u32) {
    let mut size = type_size;
    loop {
        let start = bit_offset / 8 / size * size;
        if bit_offset + bits <= (start + size) * 8 {
            let lshift = 64 - (bit_offset + bits - start * 8);
            return (start, size, lshift, 64 - bits);
        }
        size *= 2;
    }
}

#[test]
fn relocations_match_the_kernels_btf() {
    let Some((scenario, run, k)) = relocated() else {
        return;
    };
    for result in &run.results {
        let outcome = result.as_ref().expect("every relocation applies");
        eprintln!("{outcome}");
    }
    assert_eq!(run.results.len(), scenario.records.len());
    use CoreReloKind::*;

    let field = |strukt: &str, name: &str| u64::from(byte_offset(&k, strukt, name));
    let comm = field("task_struct", "comm");
    expect(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct.pid (",
        field("task_struct", "pid"),
    );
    expect(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct.tgid (",
        field("task_struct", "tgid"),
    );
    expect(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct.real_parent (",
        field("task_struct", "real_parent"),
    );
    expect(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct.mm (",
        field("task_struct", "mm"),
    );
    expect(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct.comm[1] (",
        comm + 1,
    );
    expect(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct.comm[2] (",
        comm + 2,
    );
    // task_size sits in an anonymous struct of mm_struct.
    expect(
        &run,
        &scenario,
        FieldByteOffset,
        "struct mm_struct.task_size (",
        field("mm_struct", "task_size"),
    );
    let comm_type = find_member(&k, struct_id(&k, "task_struct"), "comm")
        .unwrap()
        .type_id;
    expect(
        &run,
        &scenario,
        FieldByteSize,
        "struct task_struct.comm (",
        u64::from(k.resolve_size(comm_type).unwrap()),
    );
    expect(
        &run,
        &scenario,
        FieldExists,
        "struct task_struct.__state (",
        1,
    );
    expect(
        &run,
        &scenario,
        FieldExists,
        "struct task_struct___old.state (",
        0,
    );
    expect(
        &run,
        &scenario,
        FieldExists,
        "struct task_struct___fake.no_such_field (",
        0,
    );
    expect_poisoned(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct___old.state (",
        PoisonReason::NoTarget,
    );
    expect(&run, &scenario, FieldSigned, "struct task_struct.pid (", 1);
    expect(
        &run,
        &scenario,
        FieldSigned,
        "struct task_struct.flags (",
        0,
    );

    // Direct loads: an unsigned field read narrower, a signed one poisoned.
    let flags = field("task_struct", "flags");
    for (outcome, slot) in find(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct___u64.flags (",
    ) {
        assert!(
            matches!(
                outcome.patch,
                PatchAction::Memory {
                    size_change: Some((8, 4)),
                    ..
                }
            ),
            "{outcome}"
        );
        assert_eq!(slot, ldx(W, slot[1] & 0xf, slot[1] >> 4, flags as i16));
    }
    expect_poisoned(
        &run,
        &scenario,
        FieldByteOffset,
        "struct task_struct___wide.pid (",
        PoisonReason::FieldSizeMismatch,
    );

    // A bitfield found through an anonymous union and struct.
    let skb = struct_id(&k, "sk_buff");
    let pkt_type = find_member(&k, skb, "pkt_type").unwrap();
    let type_size = k.resolve_size(pkt_type.type_id).unwrap();
    let (byte_off, byte_sz, lshift, rshift) =
        bitfield_load(pkt_type.bit_offset, pkt_type.bitfield_size, type_size);
    let needle = "struct sk_buff.pkt_type (";
    expect(&run, &scenario, FieldByteOffset, needle, byte_off.into());
    expect(&run, &scenario, FieldByteSize, needle, byte_sz.into());
    expect(&run, &scenario, FieldLshiftU64, needle, lshift.into());
    expect(&run, &scenario, FieldRshiftU64, needle, rshift.into());
    expect(&run, &scenario, FieldSigned, needle, 0);

    let task = struct_id(&k, "task_struct");
    expect(&run, &scenario, TypeExists, "struct task_struct", 1);
    expect(&run, &scenario, TypeExists, "struct no_such_struct", 0);
    expect(
        &run,
        &scenario,
        TypeSize,
        "struct task_struct",
        k.resolve_size(task).unwrap().into(),
    );
    let pid_t = k.find_by_name_kind("pid_t", BtfKind::Typedef).unwrap();
    expect(
        &run,
        &scenario,
        TypeSize,
        "typedef pid_t",
        k.resolve_size(pid_t).unwrap().into(),
    );
    expect(
        &run,
        &scenario,
        TypeIdTarget,
        "struct task_struct",
        task.into(),
    );
    let local = Btf::parse(&scenario.local).unwrap();
    let local_task = local
        .find_by_name_kind("task_struct", BtfKind::Struct)
        .unwrap();
    expect(
        &run,
        &scenario,
        TypeIdLocal,
        "struct task_struct",
        local_task.into(),
    );
    // The local task_struct's `char comm[16]` is signed (clang's BPF char);
    // kernels since 6.2 build with an unsigned char, so the types do not
    // "match" there.
    let kernel_char = k.find_by_name_kind("char", BtfKind::Int).unwrap();
    let TypeView::Int(char_info) = k.type_by_id(kernel_char).unwrap().view() else {
        unreachable!()
    };
    expect(
        &run,
        &scenario,
        TypeMatches,
        "struct task_struct",
        u64::from(char_info.is_signed()),
    );

    expect(&run, &scenario, EnumvalExists, "BPF_MAP_TYPE_RINGBUF", 1);
    expect(
        &run,
        &scenario,
        EnumvalExists,
        "BPF_MAP_TYPE_NO_SUCH_MAP",
        0,
    );
    expect(
        &run,
        &scenario,
        EnumvalValue,
        "BPF_MAP_TYPE_RINGBUF",
        enumerator(&k, "bpf_map_type", "BPF_MAP_TYPE_RINGBUF"),
    );
    expect(
        &run,
        &scenario,
        EnumvalValue,
        "PERF_CONTEXT_KERNEL",
        enumerator(&k, "perf_callchain_context", "PERF_CONTEXT_KERNEL"),
    );
}

/// libbpf's log lines for the first relocation (BPF_CORE_READ(task, pid));
/// the libbpf comparison (core_libbpf_oracle.rs) checks every line of
/// every relocation.
#[test]
fn describes_relocations_like_libbpf() {
    let Some((_, run, k)) = relocated() else {
        return;
    };
    let pid = byte_offset(&k, "task_struct", "pid");
    let outcome = run.outcome(0);
    let local_id = outcome.resolution.local_type_id;
    let PatchAction::Alu { insn_index, .. } = outcome.patch else {
        panic!("{outcome}");
    };
    let lines = outcome.log_lines("probe_reads", 0);
    assert_eq!(
        lines.first().unwrap(),
        &format!(
            "CO-RE relocating [{local_id}] struct task_struct: found target candidate [{}] struct task_struct in [vmlinux]",
            struct_id(&k, "task_struct")
        )
    );
    assert_eq!(
        lines[1],
        format!("prog 'probe_reads': relo #0: <byte_off> [{local_id}] struct task_struct.pid (0:3 @ offset 12)")
    );
    assert!(
        lines[2].ends_with(&format!(" @ offset {pid})")),
        "{lines:?}"
    );
    assert_eq!(
        lines[3],
        format!(
            "prog 'probe_reads': relo #0: patched insn #{insn_index} (ALU/ALU64) imm 12 -> {pid}"
        )
    );
}
