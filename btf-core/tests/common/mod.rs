//! Shared test helpers: a small writer for `.BTF` / `.BTF.ext` blobs, the
//! kernel's vmlinux BTF, and a seeded random generator.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use userbpf_btf_core::{Btf, BtfKind, BtfType, Endianness};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF, or `None` (with a note) when the kernel has none.
pub fn vmlinux_bytes() -> Option<Vec<u8>> {
    match std::fs::read(VMLINUX) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            eprintln!("skipping: cannot read {VMLINUX}: {err}");
            None
        }
    }
}

pub fn vmlinux() -> Option<Arc<Btf>> {
    let bytes = vmlinux_bytes()?;
    Some(Arc::new(Btf::parse(&bytes).expect("vmlinux BTF parses")))
}

/// A scratch directory unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("btf-core-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `.BTF` blobs type by type.
pub struct BtfWriter {
    types: Vec<u32>,
    strings: Vec<u8>,
    /// Offset of `strings[0]` (non-zero for split BTF).
    str_base: u32,
    next_id: u32,
    pub layout: Option<Vec<[u8; 4]>>,
}

impl Default for BtfWriter {
    fn default() -> Self {
        BtfWriter::new()
    }
}

impl BtfWriter {
    pub fn new() -> BtfWriter {
        BtfWriter {
            types: Vec::new(),
            strings: vec![0],
            str_base: 0,
            next_id: 1,
            layout: None,
        }
    }

    /// Split BTF on top of `base`: ids and string offsets continue after it.
    pub fn split(base: &Btf) -> BtfWriter {
        BtfWriter {
            types: Vec::new(),
            strings: Vec::new(),
            str_base: base.start_str_offset() + base.header().str_len,
            next_id: base.type_count(),
            layout: None,
        }
    }

    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Adds a string (deduplicated) and returns its offset.
    pub fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0; // the base section's (or own) leading ""
        }
        let needle: Vec<u8> = s.bytes().chain([0]).collect();
        if let Some(pos) = self
            .strings
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
        {
            if pos == 0 || self.strings[pos - 1] == 0 {
                return self.str_base + pos as u32;
            }
        }
        let off = self.str_base + self.strings.len() as u32;
        self.strings.extend_from_slice(&needle);
        off
    }

    /// Appends a record: head plus `rest` words. Returns its id.
    pub fn raw(&mut self, name_off: u32, info: u32, size_or_type: u32, rest: &[u32]) -> u32 {
        self.types.extend([name_off, info, size_or_type]);
        self.types.extend_from_slice(rest);
        self.next_id += 1;
        self.next_id - 1
    }

    fn head(
        &mut self,
        name: &str,
        kind: BtfKind,
        kflag: bool,
        vlen: u32,
        sot: u32,
        rest: &[u32],
    ) -> u32 {
        let name_off = self.str(name);
        self.raw(name_off, BtfType::info_of(kind, kflag, vlen), sot, rest)
    }

    pub fn int(&mut self, name: &str, size: u32, encoding: u32, bits: u32) -> u32 {
        self.head(
            name,
            BtfKind::Int,
            false,
            0,
            size,
            &[(encoding << 24) | bits],
        )
    }

    pub fn ptr(&mut self, target: u32) -> u32 {
        self.head("", BtfKind::Ptr, false, 0, target, &[])
    }

    pub fn typedef(&mut self, name: &str, target: u32) -> u32 {
        self.head(name, BtfKind::Typedef, false, 0, target, &[])
    }

    pub fn modifier(&mut self, kind: BtfKind, target: u32) -> u32 {
        self.head("", kind, false, 0, target, &[])
    }

    pub fn type_tag(&mut self, name: &str, target: u32) -> u32 {
        self.head(name, BtfKind::TypeTag, false, 0, target, &[])
    }

    pub fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
        self.head("", BtfKind::Array, false, 0, 0, &[elem, index, nelems])
    }

    /// Members: (name, type, bit offset).
    pub fn composite(
        &mut self,
        kind: BtfKind,
        name: &str,
        size: u32,
        members: &[(&str, u32, u32)],
    ) -> u32 {
        let mut rest = Vec::new();
        for &(m, ty, off) in members {
            rest.extend([self.str(m), ty, off]);
        }
        self.head(name, kind, false, members.len() as u32, size, &rest)
    }

    pub fn struct_(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(BtfKind::Struct, name, size, members)
    }

    /// With the kind flag: members are (name, type, bit offset, bitfield size).
    pub fn struct_bitfields(
        &mut self,
        name: &str,
        size: u32,
        members: &[(&str, u32, u32, u32)],
    ) -> u32 {
        let mut rest = Vec::new();
        for &(m, ty, off, bits) in members {
            rest.extend([self.str(m), ty, (bits << 24) | off]);
        }
        self.head(
            name,
            BtfKind::Struct,
            true,
            members.len() as u32,
            size,
            &rest,
        )
    }

    pub fn enum_(&mut self, name: &str, size: u32, signed: bool, values: &[(&str, i32)]) -> u32 {
        let mut rest = Vec::new();
        for &(v, val) in values {
            rest.extend([self.str(v), val as u32]);
        }
        self.head(
            name,
            BtfKind::Enum,
            signed,
            values.len() as u32,
            size,
            &rest,
        )
    }

    pub fn enum64(&mut self, name: &str, size: u32, signed: bool, values: &[(&str, u64)]) -> u32 {
        let mut rest = Vec::new();
        for &(v, val) in values {
            rest.extend([self.str(v), val as u32, (val >> 32) as u32]);
        }
        self.head(
            name,
            BtfKind::Enum64,
            signed,
            values.len() as u32,
            size,
            &rest,
        )
    }

    pub fn fwd(&mut self, name: &str, is_union: bool) -> u32 {
        self.head(name, BtfKind::Fwd, is_union, 0, 0, &[])
    }

    pub fn func(&mut self, name: &str, proto: u32, linkage: u32) -> u32 {
        self.head(name, BtfKind::Func, false, linkage, proto, &[])
    }

    pub fn func_proto(&mut self, ret: u32, params: &[(&str, u32)]) -> u32 {
        let mut rest = Vec::new();
        for &(p, ty) in params {
            rest.extend([self.str(p), ty]);
        }
        self.head(
            "",
            BtfKind::FuncProto,
            false,
            params.len() as u32,
            ret,
            &rest,
        )
    }

    pub fn var(&mut self, name: &str, ty: u32, linkage: u32) -> u32 {
        self.head(name, BtfKind::Var, false, 0, ty, &[linkage])
    }

    /// Vars: (type, offset, size).
    pub fn datasec(&mut self, name: &str, size: u32, vars: &[(u32, u32, u32)]) -> u32 {
        let rest: Vec<u32> = vars.iter().flat_map(|&(t, o, s)| [t, o, s]).collect();
        self.head(
            name,
            BtfKind::Datasec,
            false,
            vars.len() as u32,
            size,
            &rest,
        )
    }

    pub fn float(&mut self, name: &str, size: u32) -> u32 {
        self.head(name, BtfKind::Float, false, 0, size, &[])
    }

    pub fn decl_tag(&mut self, name: &str, target: u32, component_idx: i32) -> u32 {
        self.head(
            name,
            BtfKind::DeclTag,
            false,
            0,
            target,
            &[component_idx as u32],
        )
    }

    /// The blob in native (little-endian) order.
    pub fn build(&self) -> Vec<u8> {
        self.build_in(Endianness::Little)
    }

    /// The blob with a 24-byte header (32 with a layout section): types,
    /// then layout, then strings.
    pub fn build_in(&self, order: Endianness) -> Vec<u8> {
        let w = |v: u32| match order {
            Endianness::Little => v.to_le_bytes(),
            Endianness::Big => v.to_be_bytes(),
        };
        let layout: Vec<u8> = self
            .layout
            .iter()
            .flatten()
            .flat_map(|e| {
                let flags = u16::from_le_bytes([e[2], e[3]]);
                let flags = match order {
                    Endianness::Little => flags.to_le_bytes(),
                    Endianness::Big => flags.to_be_bytes(),
                };
                [e[0], e[1], flags[0], flags[1]]
            })
            .collect();
        let hdr_len: u32 = if self.layout.is_some() { 32 } else { 24 };
        let type_len = self.types.len() as u32 * 4;
        let layout_off = type_len;
        let str_off = type_len + layout.len() as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&match order {
            Endianness::Little => 0xeb9fu16.to_le_bytes(),
            Endianness::Big => 0xeb9fu16.to_be_bytes(),
        });
        out.extend([1, 0]);
        out.extend(w(hdr_len));
        out.extend(w(0));
        out.extend(w(type_len));
        out.extend(w(str_off));
        out.extend(w(self.strings.len() as u32));
        if self.layout.is_some() {
            out.extend(w(layout_off));
            out.extend(w(layout.len() as u32));
        }
        for &word in &self.types {
            out.extend(w(word));
        }
        out.extend(layout);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// One info subsection for [`ext_blob`]: record size and per-section
/// blocks of (sec_name_off, records as words).
pub struct ExtPart {
    pub rec_size: u32,
    pub sections: Vec<(u32, Vec<Vec<u32>>)>,
}

/// A `.BTF.ext` blob with header length `hdr_len` (24 or 32).
pub fn ext_blob(
    hdr_len: u32,
    order: Endianness,
    func_info: Option<&ExtPart>,
    line_info: Option<&ExtPart>,
    core_relo: Option<&ExtPart>,
) -> Vec<u8> {
    let w = |v: u32| match order {
        Endianness::Little => v.to_le_bytes(),
        Endianness::Big => v.to_be_bytes(),
    };
    let encode = |sub: Option<&ExtPart>| -> Vec<u8> {
        let Some(sub) = sub else { return Vec::new() };
        let mut out = Vec::new();
        out.extend(w(sub.rec_size));
        for (name_off, records) in &sub.sections {
            out.extend(w(*name_off));
            out.extend(w(records.len() as u32));
            for rec in records {
                assert_eq!(rec.len() as u32 * 4, sub.rec_size);
                for &word in rec {
                    out.extend(w(word));
                }
            }
        }
        out
    };
    let parts = [encode(func_info), encode(line_info), encode(core_relo)];
    let mut body = Vec::new();
    let mut offs = Vec::new();
    for part in &parts {
        offs.push((body.len() as u32, part.len() as u32));
        body.extend_from_slice(part);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&match order {
        Endianness::Little => 0xeb9fu16.to_le_bytes(),
        Endianness::Big => 0xeb9fu16.to_be_bytes(),
    });
    out.extend([1, 0]);
    out.extend(w(hdr_len));
    for (i, (off, len)) in offs.iter().enumerate() {
        if i == 2 && hdr_len < 32 {
            break;
        }
        out.extend(w(*off));
        out.extend(w(*len));
    }
    out.resize(hdr_len as usize, 0);
    out.extend(body);
    out
}

/// xorshift64*: seeded, reproducible, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Ids of the types in [`kitchen_sink`].
pub struct Sink {
    pub int: u32,
    pub long: u32,
    pub ptr: u32,
    pub array: u32,
    pub point: u32,
    pub union_: u32,
    pub color: u32,
    pub fwd: u32,
    pub myint: u32,
    pub volatile: u32,
    pub const_: u32,
    pub restrict: u32,
    pub proto: u32,
    pub func: u32,
    pub var: u32,
    pub datasec: u32,
    pub double: u32,
    pub decl_tag: u32,
    pub type_tag: u32,
    pub big: u32,
    pub flags: u32,
    pub char_: u32,
    pub packed: u32,
    pub point_typedef: u32,
    pub anon: u32,
}

/// A blob with every kind (and a few traps: a packed struct, bitfields,
/// a name shared by a struct and a typedef).
pub fn kitchen_sink() -> (BtfWriter, Sink) {
    let mut w = BtfWriter::new();
    let int = w.int("int", 4, 1, 32);
    let long = w.int("long int", 8, 1, 64);
    let ptr = w.ptr(int);
    let array = w.array(int, int, 10);
    let point = w.struct_("point", 8, &[("x", int, 0), ("y", int, 32)]);
    let union_ = w.composite(BtfKind::Union, "u", 8, &[("a", int, 0), ("b", long, 0)]);
    let color = w.enum_("color", 4, false, &[("RED", 0), ("GREEN", 1), ("MAX", -1)]);
    let fwd = w.fwd("opaque", false);
    let myint = w.typedef("myint", int);
    let volatile = w.modifier(BtfKind::Volatile, myint);
    let const_ = w.modifier(BtfKind::Const, volatile);
    let restrict = w.modifier(BtfKind::Restrict, ptr);
    let proto = w.func_proto(int, &[("a", int), ("b", ptr)]);
    let func = w.func("add", proto, userbpf_btf_core::BTF_FUNC_GLOBAL);
    let var = w.var("counter", int, userbpf_btf_core::BTF_VAR_GLOBAL_ALLOCATED);
    let datasec = w.datasec(".data", 4, &[(var, 0, 4)]);
    let double = w.float("double", 8);
    let decl_tag = w.decl_tag("tag", func, -1);
    let type_tag = w.type_tag("user", int);
    let big = w.enum64("big", 8, false, &[("HUGE", 1 << 40), ("NEG", u64::MAX)]);
    let flags = w.struct_bitfields(
        "flags",
        8,
        &[("a", int, 0, 3), ("b", int, 3, 5), ("c", int, 32, 0)],
    );
    let char_ = w.int("char", 1, 2, 8);
    let packed = w.struct_("packed", 5, &[("c", char_, 0), ("i", int, 8)]);
    let point_typedef = w.typedef("point", point);
    let anon = w.struct_("", 4, &[("inner", int, 0)]);
    let sink = Sink {
        int,
        long,
        ptr,
        array,
        point,
        union_,
        color,
        fwd,
        myint,
        volatile,
        const_,
        restrict,
        proto,
        func,
        var,
        datasec,
        double,
        decl_tag,
        type_tag,
        big,
        flags,
        char_,
        packed,
        point_typedef,
        anon,
    };
    (w, sink)
}
