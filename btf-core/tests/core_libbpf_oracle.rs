//! Differential tests against the system libbpf (libbpf-dev 1.1, static
//! libbpf.a): `core_support/oracle.c` applies the same relocation records
//! to the same instructions with libbpf's own CO-RE code
//! (bpf_core_add_cands, bpf_core_calc_relo_insn, bpf_core_patch_insn, in
//! bpf_object__relocate_core's order and with its candidate cache), and
//! everything must agree: success or errno, libbpf's debug log line for
//! line (specs, candidates, patches), and every patched instruction byte.
//! Skipped with a note when cc, libbpf.a, clang-16 or the kernel's BTF is
//! missing.

mod core_support;

use core_support::*;

const RELOCS: &str = include_str!("data/core_relocs.bpf.c");
const CORE_PROG: &str = include_str!("data/core_prog.bpf.c");

#[test]
fn clang_objects_against_the_kernel_btf() {
    let Some(targets) = vmlinux_target() else {
        return;
    };
    for (name, source) in [("core_relocs", RELOCS), ("core_prog", CORE_PROG)] {
        let Some(object) = compile_bpf(name, source) else {
            return;
        };
        let scenario = object_scenario(&object, targets.clone());
        let run = run_and_compare(&scenario, name);
        assert_eq!(run.results.len(), scenario.records.len());
    }
}

// ---------------------------------------------------------------------------
// Randomized comparison: a random local BTF, a target derived from it by
// the kinds of changes kernels make (members reordered, moved into
// anonymous structs, resized, renamed, dropped; enums renumbered; types
// duplicated as `___2` flavors), and random relocation records over it.

mod common;

use common::{BtfWriter, Rng};
use userbpf_btf_core::co_re::CoreRelocator;
use userbpf_btf_core::{BpfCoreRelo, Btf, CoreReloKind, TypeView};

/// (name, size, signed).
const INTS: [(&str, u32, bool); 8] = [
    ("char", 1, true),
    ("unsigned char", 1, false),
    ("short", 2, true),
    ("unsigned short", 2, false),
    ("int", 4, true),
    ("unsigned int", 4, false),
    ("long", 8, true),
    ("unsigned long", 8, false),
];

#[derive(Clone, Debug)]
enum Ty {
    Int(usize),
    Array(Box<Ty>, u32),
    /// To an earlier composite, or to `int`.
    Ptr(Option<usize>),
    /// An earlier composite, by value.
    Comp(usize),
    Enum(usize),
    /// `typedef int myint`.
    Typedef,
    Anon(Box<Comp>),
}

#[derive(Clone, Debug)]
struct Field {
    name: String,
    ty: Ty,
    /// Bitfield width; 0 for plain members.
    bits: u32,
}

#[derive(Clone, Debug)]
struct Comp {
    name: String,
    union: bool,
    fields: Vec<Field>,
}

#[derive(Clone, Debug)]
struct EnumModel {
    name: String,
    size: u32,
    signed: bool,
    values: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default)]
struct Model {
    comps: Vec<Comp>,
    enums: Vec<EnumModel>,
}

fn chance(rng: &mut Rng, percent: usize) -> bool {
    rng.below(100) < percent
}

fn gen_field_type(
    rng: &mut Rng,
    earlier: usize,
    enums: usize,
    depth: u32,
    names: &mut Vec<String>,
) -> (Ty, u32) {
    match rng.below(100) {
        0..=34 => (Ty::Int(rng.below(INTS.len())), 0),
        35..=44 => (
            Ty::Array(
                Box::new(Ty::Int(rng.below(INTS.len()))),
                1 + rng.below(4) as u32,
            ),
            0,
        ),
        45..=54 => (
            Ty::Ptr((earlier > 0 && chance(rng, 70)).then(|| rng.below(earlier))),
            0,
        ),
        55..=69 if earlier > 0 => (Ty::Comp(rng.below(earlier)), 0),
        70..=79 if enums > 0 => (Ty::Enum(rng.below(enums)), 0),
        80..=84 => (Ty::Typedef, 0),
        85..=91 if depth < 2 => {
            let union = chance(rng, 40);
            let count = 1 + rng.below(3);
            let fields = gen_fields(rng, earlier, enums, depth + 1, union, count, names);
            let comp = Comp {
                name: String::new(),
                union,
                fields,
            };
            (Ty::Anon(Box::new(comp)), 0)
        }
        _ => (Ty::Int(4 + rng.below(2)), 1 + rng.below(7) as u32),
    }
}

fn gen_fields(
    rng: &mut Rng,
    earlier: usize,
    enums: usize,
    depth: u32,
    union: bool,
    count: usize,
    names: &mut Vec<String>,
) -> Vec<Field> {
    let mut fields = Vec::new();
    for _ in 0..count {
        let (ty, mut bits) = gen_field_type(rng, earlier, enums, depth, names);
        if union {
            bits = 0;
        }
        let name = if matches!(ty, Ty::Anon(_)) {
            String::new()
        } else {
            let name = format!("f{}", names.len());
            names.push(name.clone());
            name
        };
        fields.push(Field { name, ty, bits });
    }
    fields
}

fn gen_model(rng: &mut Rng) -> Model {
    let mut model = Model::default();
    for (i, name) in ["color", "mode"].iter().enumerate() {
        let size = if chance(rng, 30) { 8 } else { 4 };
        let count = 1 + rng.below(4);
        let values = (0..count)
            .map(|v| {
                let flavor = if chance(rng, 15) { "___x" } else { "" };
                let value = if size == 8 {
                    rng.next() >> rng.below(64)
                } else {
                    rng.below(100) as u64
                };
                (format!("E{i}_{v}{flavor}"), value)
            })
            .collect();
        model.enums.push(EnumModel {
            name: name.to_string(),
            size,
            signed: chance(rng, 30),
            values,
        });
    }
    let bases = ["alpha", "beta", "gamma", "delta"];
    let count = 3 + rng.below(4);
    let mut used = Vec::new();
    for i in 0..count {
        let mut name = bases[rng.below(bases.len())].to_string();
        if chance(rng, 35) || used.contains(&name) {
            name = format!("{name}___v{i}");
        }
        used.push(name.clone());
        let union = chance(rng, 15);
        let mut names = Vec::new();
        let field_count = 1 + rng.below(5);
        let fields = gen_fields(rng, i, model.enums.len(), 0, union, field_count, &mut names);
        model.comps.push(Comp {
            name,
            union,
            fields,
        });
    }
    model
}

fn essential(name: &str) -> &str {
    let bytes = userbpf_btf_core::co_re::essential_name(name.as_bytes());
    &name[..bytes.len()]
}

fn mutate_fields(rng: &mut Rng, fields: &mut Vec<Field>, union: bool, pad: &mut usize) {
    for f in fields.iter_mut() {
        if let Ty::Anon(inner) = &mut f.ty {
            let union = inner.union;
            mutate_fields(rng, &mut inner.fields, union, pad);
            continue;
        }
        if chance(rng, 10) {
            if let Ty::Int(i) = &mut f.ty {
                *i = rng.below(INTS.len());
                if f.bits > 0 {
                    *i = 4 + rng.below(2);
                }
            }
        }
        if chance(rng, 10) {
            if let Ty::Array(_, n) = &mut f.ty {
                *n = 1 + rng.below(5) as u32;
            }
        }
        if f.bits > 0 && chance(rng, 20) {
            f.bits = 1 + rng.below(7) as u32;
        }
        if chance(rng, 4) && !f.name.is_empty() {
            f.name.push('x');
        }
    }
    if chance(rng, 30) {
        for i in (1..fields.len()).rev() {
            fields.swap(i, rng.below(i + 1));
        }
    }
    if fields.len() > 1 && chance(rng, 10) {
        fields.remove(rng.below(fields.len()));
    }
    if !union && chance(rng, 30) {
        *pad += 1;
        let at = rng.below(fields.len() + 1);
        fields.insert(
            at,
            Field {
                name: format!("pad{pad}"),
                ty: Ty::Int(rng.below(INTS.len())),
                bits: 0,
            },
        );
    }
    if fields.len() >= 2 && chance(rng, 15) {
        let at = rng.below(fields.len() - 1);
        let moved: Vec<Field> = fields.drain(at..at + 2).collect();
        let union = moved.iter().all(|f| f.bits == 0) && chance(rng, 30);
        fields.insert(
            at,
            Field {
                name: String::new(),
                ty: Ty::Anon(Box::new(Comp {
                    name: String::new(),
                    union,
                    fields: moved,
                })),
                bits: 0,
            },
        );
    }
}

/// The target: one composite per essential name (plus occasional `___2`
/// duplicates), enums renumbered, everything mutated a little.
fn derive_target(rng: &mut Rng, local: &Model) -> Model {
    let mut target = Model::default();
    for e in &local.enums {
        let mut values = Vec::new();
        for (i, (n, v)) in e.values.iter().enumerate() {
            // libbpf's log reads past an empty enum's record: keep one.
            let can_drop = !values.is_empty() || i + 1 < e.values.len();
            if can_drop && chance(rng, 10) {
                continue;
            }
            let v = if chance(rng, 30) {
                rng.below(1000) as u64
            } else {
                *v
            };
            values.push((essential(n).to_string(), v));
        }
        if chance(rng, 30) {
            values.reverse();
        }
        let size = if chance(rng, 10) { 12 - e.size } else { e.size };
        target.enums.push(EnumModel {
            name: e.name.clone(),
            size,
            signed: e.signed,
            values,
        });
    }
    let mut index_of: Vec<Option<usize>> = Vec::new();
    let mut pad = 0;
    for comp in &local.comps {
        let name = essential(&comp.name).to_string();
        if let Some(i) = target.comps.iter().position(|c| c.name == name) {
            index_of.push(Some(i));
            continue;
        }
        if chance(rng, 5) {
            index_of.push(None);
            continue;
        }
        let mut fields = comp.fields.clone();
        remap(&mut fields, &index_of);
        let mut mutated = fields.clone();
        mutate_fields(rng, &mut mutated, comp.union, &mut pad);
        index_of.push(Some(target.comps.len()));
        target.comps.push(Comp {
            name: name.clone(),
            union: comp.union,
            fields: mutated,
        });
        if chance(rng, 12) {
            let mut again = fields;
            if chance(rng, 50) {
                mutate_fields(rng, &mut again, comp.union, &mut pad);
            }
            target.comps.push(Comp {
                name: format!("{name}___2"),
                union: comp.union,
                fields: again,
            });
        }
    }
    target
}

/// Points composite references at the target's indices (a missing one
/// becomes an int).
fn remap(fields: &mut [Field], index_of: &[Option<usize>]) {
    for f in fields {
        match &mut f.ty {
            Ty::Comp(i) => {
                f.ty = match index_of[*i] {
                    Some(j) => Ty::Comp(j),
                    None => Ty::Int(4),
                }
            }
            Ty::Ptr(Some(i)) => f.ty = Ty::Ptr(index_of[*i]),
            Ty::Anon(inner) => remap(&mut inner.fields, index_of),
            _ => {}
        }
    }
}

struct Emitter<'a> {
    w: &'a mut BtfWriter,
    ints: Vec<u32>,
    typedef: u32,
    enums: Vec<(u32, u32)>,
    comps: Vec<(u32, u32, u32)>,
}

impl Emitter<'_> {
    /// (type id, size, alignment).
    fn ty(&mut self, ty: &Ty) -> (u32, u32, u32) {
        match ty {
            Ty::Int(i) => (self.ints[*i], INTS[*i].1, INTS[*i].1),
            Ty::Array(elem, n) => {
                let (id, size, align) = self.ty(elem);
                (self.w.array(id, self.ints[4], *n), size * n, align)
            }
            Ty::Ptr(Some(c)) => (self.w.ptr(self.comps[*c].0), 8, 8),
            Ty::Ptr(None) => (self.w.ptr(self.ints[4]), 8, 8),
            Ty::Comp(c) => self.comps[*c],
            Ty::Enum(e) => (self.enums[*e].0, self.enums[*e].1, self.enums[*e].1),
            Ty::Typedef => (self.typedef, 4, 4),
            Ty::Anon(comp) => self.comp(comp),
        }
    }

    fn comp(&mut self, comp: &Comp) -> (u32, u32, u32) {
        let mut members = Vec::new();
        let (mut bit, mut size_bits, mut max_align) = (0u32, 0u32, 1u32);
        for f in &comp.fields {
            let (id, size, align) = self.ty(&f.ty);
            max_align = max_align.max(align);
            let offset = if comp.union {
                0
            } else if f.bits > 0 {
                if bit % (size * 8) + f.bits > size * 8 {
                    bit = bit.div_ceil(size * 8) * size * 8;
                }
                bit
            } else {
                bit = bit.div_ceil(align * 8) * align * 8;
                bit
            };
            let width = if f.bits > 0 { f.bits } else { size * 8 };
            bit = offset + width;
            size_bits = size_bits.max(offset + width);
            members.push((f.name.clone(), id, offset, f.bits));
        }
        let size = size_bits.div_ceil(8).div_ceil(max_align) * max_align;
        let has_bitfields = members.iter().any(|m| m.3 > 0);
        let id = if has_bitfields {
            let m: Vec<(&str, u32, u32, u32)> = members
                .iter()
                .map(|(n, t, o, b)| (n.as_str(), *t, *o, *b))
                .collect();
            self.w.struct_bitfields(&comp.name, size, &m)
        } else {
            let m: Vec<(&str, u32, u32)> = members
                .iter()
                .map(|(n, t, o, _)| (n.as_str(), *t, *o))
                .collect();
            let kind = if comp.union {
                userbpf_btf_core::BtfKind::Union
            } else {
                userbpf_btf_core::BtfKind::Struct
            };
            self.w.composite(kind, &comp.name, size, &m)
        };
        (id, size, max_align)
    }
}

/// Writes a model's types; returns the ids of its named types.
fn emit(model: &Model, w: &mut BtfWriter) -> Vec<u32> {
    let ints: Vec<u32> = INTS
        .iter()
        .map(|(name, size, signed)| w.int(name, *size, u32::from(*signed), size * 8))
        .collect();
    let typedef = w.typedef("myint", ints[4]);
    let mut named = vec![typedef, ints[4]];
    let mut enums = Vec::new();
    for e in &model.enums {
        let id = if e.size == 8 {
            let values: Vec<(&str, u64)> = e.values.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            w.enum64(&e.name, 8, e.signed, &values)
        } else {
            let values: Vec<(&str, i32)> = e
                .values
                .iter()
                .map(|(n, v)| (n.as_str(), *v as i32))
                .collect();
            w.enum_(&e.name, 4, e.signed, &values)
        };
        enums.push((id, e.size));
        named.push(id);
    }
    let mut emitter = Emitter {
        w,
        ints,
        typedef,
        enums,
        comps: Vec::new(),
    };
    for comp in &model.comps {
        let emitted = emitter.comp(comp);
        emitter.comps.push(emitted);
        named.push(emitted.0);
    }
    // A typedef of a composite, for type-based relocations.
    if let Some(&(id, _, _)) = emitter.comps.first() {
        let name = format!("{}_t", essential(&model.comps[0].name));
        named.push(emitter.w.typedef(&name, id));
    }
    named
}

/// A random access string through `root` (mostly valid), and whether it
/// ends at a bitfield.
fn random_access(rng: &mut Rng, btf: &Btf, root: u32) -> String {
    let mut path = vec![u32::from(chance(rng, 10))];
    let mut t = btf.skip_mods_and_typedefs(root).unwrap();
    loop {
        if path.len() > 1 && chance(rng, 30) {
            break;
        }
        match t.view() {
            TypeView::Struct(c) | TypeView::Union(c) if !c.is_empty() => {
                let index = if chance(rng, 3) {
                    c.len()
                } else {
                    rng.below(c.len())
                };
                path.push(index as u32);
                let Some(member) = c.member(index) else { break };
                t = btf.skip_mods_and_typedefs(member.type_id()).unwrap();
            }
            TypeView::Array(a) => {
                let index = if chance(rng, 5) {
                    a.nelems
                } else {
                    rng.below(a.nelems.max(1) as usize) as u32
                };
                path.push(index);
                t = btf.skip_mods_and_typedefs(a.elem_type).unwrap();
            }
            _ => break,
        }
    }
    path.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(":")
}

fn random_scenario(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let local_model = gen_model(&mut rng);
    let target_model = derive_target(&mut rng, &local_model);
    let mut l = BtfWriter::new();
    let named = emit(&local_model, &mut l);
    let mut t = BtfWriter::new();
    emit(&target_model, &mut t);
    // A type only the local BTF has.
    let local_int = named[1];
    let missing = l.struct_("missing", 4, &[("x", local_int, 0)]);

    let local = Btf::parse(&l.build()).unwrap();
    let mut records = Vec::new();
    let kinds_field = [
        CoreReloKind::FieldByteOffset,
        CoreReloKind::FieldByteSize,
        CoreReloKind::FieldExists,
        CoreReloKind::FieldSigned,
        CoreReloKind::FieldLshiftU64,
        CoreReloKind::FieldRshiftU64,
    ];
    let kinds_type = [
        CoreReloKind::TypeIdLocal,
        CoreReloKind::TypeIdTarget,
        CoreReloKind::TypeExists,
        CoreReloKind::TypeSize,
        CoreReloKind::TypeMatches,
    ];
    let comps: Vec<u32> = named
        .iter()
        .copied()
        .filter(|&id| local.type_by_id(id).unwrap().is_composite())
        .collect();
    let enums: Vec<u32> = named
        .iter()
        .copied()
        .filter(|&id| local.type_by_id(id).unwrap().is_any_enum())
        .collect();
    for _ in 0..6 + rng.below(8) {
        let (type_id, access, kind) = match rng.below(10) {
            0..=5 => {
                let root = comps[rng.below(comps.len())];
                (
                    root,
                    random_access(&mut rng, &local, root),
                    kinds_field[rng.below(6)],
                )
            }
            6..=7 => {
                let pool = [named.as_slice(), &[missing]].concat();
                (
                    pool[rng.below(pool.len())],
                    "0".to_string(),
                    kinds_type[rng.below(5)],
                )
            }
            _ => {
                let e = enums[rng.below(enums.len())];
                let vlen = local.type_by_id(e).unwrap().vlen() as usize;
                let index = if chance(&mut rng, 5) {
                    vlen
                } else {
                    rng.below(vlen)
                };
                let kind = if chance(&mut rng, 50) {
                    CoreReloKind::EnumvalExists
                } else {
                    CoreReloKind::EnumvalValue
                };
                (e, index.to_string(), kind)
            }
        };
        records.push((type_id, l.str(&access), kind));
    }

    // Instructions holding the local values, as the compiler would write.
    let local_bytes = l.build();
    let local = Btf::parse(&local_bytes).unwrap();
    let mut empty = BtfWriter::new();
    empty.int("int", 4, 1, 32);
    let empty = Btf::parse(&empty.build()).unwrap();
    let mut probe = CoreRelocator::new(&local, &[&empty]);
    let mut insns = Vec::new();
    let mut scenario_records = Vec::new();
    for (type_id, access_str_off, kind) in records {
        let relo = BpfCoreRelo {
            insn_off: 0,
            type_id,
            access_str_off,
            kind: kind as u32,
        };
        let (orig, mut orig_sz) = match probe.resolve(&relo) {
            Ok(r) => (r.values.orig_val, r.values.orig_sz),
            Err(_) => (0, 0),
        };
        // Loads of whole array members are where libbpf 1.1 (whole-array
        // size) and later (element size) differ: keep those to ALU forms.
        let field_type = probe_field_type(&local, &relo);
        if field_type.is_some_and(|k| k == userbpf_btf_core::BtfKind::Array) {
            orig_sz = 0;
        }
        let orig = if chance(&mut rng, 2) { orig + 1 } else { orig };
        let index = insns.len();
        let memory_size = match orig_sz {
            1 => Some(B),
            2 => Some(H),
            4 => Some(W),
            8 => Some(DW),
            _ => None,
        };
        let form = rng.below(10);
        match (kind, memory_size) {
            (CoreReloKind::FieldByteOffset, Some(size)) if form < 4 && orig <= i16::MAX as u64 => {
                insns.push(match form {
                    0 | 1 => ldx(size, 1, 2, orig as i16),
                    2 => stx(size, 2, 1, orig as i16),
                    _ => st(size, 2, orig as i16, 7),
                });
            }
            _ if form >= 8 => insns.extend(ld_imm64(1, orig)),
            _ if form >= 6 => insns.push(add64_imm(1, orig as i32)),
            _ => insns.push(mov64_imm(1, orig as i32)),
        }
        let mut record = Record::new("prog", index, type_id, access_str_off, kind);
        record.relo.insn_off = (index * 8) as u32;
        scenario_records.push(record);
    }
    insns.push(exit());
    Scenario {
        local: local_bytes,
        targets: vec![("vmlinux".to_string(), t.build())],
        sections: [("prog".to_string(), insns)].into_iter().collect(),
        records: scenario_records,
    }
}

/// The kind of the member a field relocation ends at (after typedefs).
fn probe_field_type(local: &Btf, relo: &BpfCoreRelo) -> Option<userbpf_btf_core::BtfKind> {
    let access = local.name_by_offset(relo.access_str_off)?;
    let path: Vec<usize> = access
        .split(':')
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let mut t = local.skip_mods_and_typedefs(relo.type_id)?;
    for &index in &path[1..] {
        let next = match t.view() {
            TypeView::Struct(c) | TypeView::Union(c) => c.member(index)?.type_id(),
            TypeView::Array(a) => a.elem_type,
            _ => return None,
        };
        t = local.skip_mods_and_typedefs(next)?;
    }
    Some(t.kind())
}

#[test]
fn random_types_and_relocations() {
    if oracle().is_none() {
        return;
    }
    let seeds: u64 = std::env::var("CORE_RANDOM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut relocations = 0;
    let mut poisoned = 0;
    let mut errors = 0;
    for seed in 1..=seeds {
        let scenario = random_scenario(seed);
        let run = run_and_compare(&scenario, &format!("random-seed-{seed}"));
        relocations += run.results.len();
        poisoned += run
            .results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|o| o.is_poisoned()))
            .count();
        errors += run.results.iter().filter(|r| r.is_err()).count();
    }
    eprintln!("{seeds} scenarios: {relocations} relocations agreed with libbpf ({poisoned} poisoned, {errors} errors)");
}
