//! libbpf's static BPF linker (`bpf_linker__*`, libbpf's `linker.c`):
//! links BPF ELF objects (`clang -target bpf -c` output) into one
//! relocatable BPF ELF object, as `bpftool gen object` does.
//!
//! Per input file, in libbpf's order: the ELF is checked and its sections
//! classified (DWARF, `.llvm_addrsig`, an empty `.text` and relocations of
//! ignored sections are dropped); BTF DATASECs get their section sizes and
//! global variable offsets (`linker_fixup_btf`); same-named data and code
//! sections are concatenated at their alignment (`license` and `version`
//! must be identical and are kept once); symbols are appended, global ones
//! resolved by name with libbpf's rules (an extern binds to a definition, a
//! strong definition beats weak ones, two strong ones conflict, bindings
//! and visibility tighten); relocations follow their section's new offset
//! and their symbol's new index; BTF types are appended with their type ids
//! and strings remapped, one VAR/FUNC kept per global symbol (an extern's
//! resolved to its definition's underlying type); DATASEC variables are
//! collected per output section; `.BTF.ext` func_info, line_info and CO-RE
//! records move to the new section offsets, type ids and strings.
//! [`Linker::finalize`] adds one DATASEC per data section and lays out the
//! ELF file.
//!
//! On the objects tried (the tests', and about 200 single and pairwise
//! links of this repository's BPF objects) the output is byte for byte
//! libbpf's (`bpftool gen object`, and libbpf 1.7's linker built from
//! source), and failures print libbpf's messages.
//!
//! Differences from libbpf:
//! - the output BTF is deduplicated by `dedup.rs` (structurally identical
//!   types merged, cycles included), not by libbpf's `btf__dedup`
//!   algorithm: a FWD is not resolved against its full STRUCT/UNION, and a
//!   struct is not merged with a differing "more complete" copy, so some
//!   outputs can keep a few more types (and unused strings) than libbpf's;
//! - when a warning comes with a second one in libbpf (a map's key type
//!   mismatch explained by its type comparison), only the last is kept;
//! - only little-endian ELF64 input is accepted (libbpf also links
//!   big-endian objects into a big-endian output).

mod dedup;
mod elf;
mod matching;

use std::collections::HashMap;

use userbpf_btf_core::Btf;

use elf::{Shdr, Sym};

const EINVAL: i32 = 22;
const ENOENT: i32 = 2;
pub(crate) const EOPNOTSUPP: i32 = 95;

/// Why linking failed: libbpf's errno, and the warning libbpf prints
/// (without `libbpf: ` prefix and newline), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkError {
    pub errno: i32,
    pub message: Option<String>,
}

impl LinkError {
    pub(crate) fn new(errno: i32, message: impl Into<String>) -> LinkError {
        LinkError {
            errno,
            message: Some(message.into()),
        }
    }
    pub(crate) fn inval(message: impl Into<String>) -> LinkError {
        LinkError::new(EINVAL, message)
    }
    /// A failure libbpf reports with no message.
    pub fn silent(errno: i32) -> LinkError {
        LinkError {
            errno,
            message: None,
        }
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{m} (errno {})", self.errno),
            None => write!(f, "errno {}", self.errno),
        }
    }
}

impl std::error::Error for LinkError {}

type Result<T> = std::result::Result<T, LinkError>;

/// The `.BTF` and `.BTF.ext` section contents, when there are any.
type BtfBlobs = (Option<Vec<u8>>, Option<Vec<u8>>);

// BTF kinds and linkages the linker looks at.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_ENUM64: u32 = 19;
const VAR_STATIC: u32 = 0;
const VAR_GLOBAL_ALLOCATED: u32 = 1;
const FUNC_STATIC: u32 = 0;
const FUNC_GLOBAL: u32 = 1;

fn kind(rec: &[u32]) -> u32 {
    (rec[1] >> 24) & 0x1f
}
fn vlen(rec: &[u32]) -> usize {
    (rec[1] & 0xffff) as usize
}
fn kind_name(k: u32) -> &'static str {
    userbpf_btf_core::BtfKind::from_raw(k as u8).name()
}

/// libbpf's `btf_is_non_static`.
fn is_non_static(rec: &[u32]) -> bool {
    match kind(rec) {
        KIND_VAR => rec.get(3).copied() != Some(VAR_STATIC),
        KIND_FUNC => vlen(rec) as u32 != FUNC_STATIC,
        _ => false,
    }
}

/// Word indexes of the type ids in a record (`BTF_FIELD_ITER_IDS`).
fn type_id_slots(rec: &[u32]) -> Vec<usize> {
    let n = vlen(rec);
    match kind(rec) {
        2 | 8..=12 | 14 | 17 | 18 => vec![2],
        KIND_ARRAY => vec![3, 4],
        KIND_STRUCT | KIND_UNION => (0..n).map(|j| 3 + 3 * j + 1).collect(),
        KIND_FUNC_PROTO => std::iter::once(2)
            .chain((0..n).map(|j| 3 + 2 * j + 1))
            .collect(),
        KIND_DATASEC => (0..n).map(|j| 3 + 3 * j).collect(),
        _ => Vec::new(),
    }
}

/// Word indexes of the string offsets in a record (`BTF_FIELD_ITER_STRS`).
fn str_slots(rec: &[u32]) -> Vec<usize> {
    let n = vlen(rec);
    let mut v = vec![0];
    match kind(rec) {
        KIND_STRUCT | KIND_UNION | KIND_ENUM64 => v.extend((0..n).map(|j| 3 + 3 * j)),
        KIND_ENUM | KIND_FUNC_PROTO => v.extend((0..n).map(|j| 3 + 2 * j)),
        _ => {}
    }
    v
}

/// A string section being built, each string kept once.
#[derive(Debug)]
struct Strs {
    data: Vec<u8>,
    map: HashMap<Vec<u8>, u32>,
}

impl Strs {
    fn new() -> Strs {
        let mut map = HashMap::new();
        map.insert(Vec::new(), 0);
        Strs { data: vec![0], map }
    }
    fn add(&mut self, s: &[u8]) -> u32 {
        if let Some(&off) = self.map.get(s) {
            return off;
        }
        let off = self.data.len() as u32;
        self.data.extend_from_slice(s);
        self.data.push(0);
        self.map.insert(s.to_vec(), off);
        off
    }
}

/// `.BTF.ext` records of one section.
#[derive(Debug, Default)]
struct ExtData {
    rec_sz: u32,
    count: u32,
    recs: Vec<u8>,
}

/// An output section (libbpf's `dst_sec`).
#[derive(Debug, Default)]
struct DstSec {
    name: String,
    /// Known only from BTF (`.kconfig`, `.ksyms`, extern-only `.maps`): no
    /// ELF section.
    ephemeral: bool,
    sec_idx: u32,
    sh_type: u32,
    flags: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
    size: u64,
    data: Vec<u8>,
    sec_sym_idx: usize,
    has_btf: bool,
    /// DATASEC entries: type, offset, size.
    vars: Vec<[u32; 3]>,
    ext: [ExtData; 3],
}

/// A global symbol of the output (libbpf's `glob_sym`).
#[derive(Debug)]
struct GlobSym {
    name: String,
    sym_idx: usize,
    sec_id: Option<usize>,
    btf_id: u32,
    /// Positive: the resolved underlying type; negative: minus an input
    /// type id to be remapped; 0: to be taken from the next definition.
    underlying: i64,
    is_extern: bool,
    is_weak: bool,
    var_idx: Option<usize>,
}

/// An input section (libbpf's `src_sec`).
#[derive(Debug, Default)]
struct SrcSec {
    shdr: Shdr,
    ephemeral: bool,
    skipped: bool,
    dst_id: Option<usize>,
    dst_off: u64,
    sec_type_id: u32,
    /// ELF index; 0 for ephemeral ones.
    elf_idx: usize,
}

struct SrcObj {
    filename: String,
    secs: Vec<SrcSec>,
    symtab: usize,
    syms: Vec<Sym>,
    strtab: Vec<u8>,
    btf: Option<Btf>,
    /// The input's types as records (index = type id; 0 unused).
    types: Vec<Vec<u32>>,
    btf_ext: Option<Vec<u8>>,
    sym_map: Vec<usize>,
    type_map: Vec<u32>,
}

impl SrcObj {
    fn find_sec(&self, name: &str) -> Option<usize> {
        (1..self.secs.len()).find(|&i| self.secs[i].shdr.name == name)
    }
    fn btf_str(&self, off: u32) -> &[u8] {
        self.btf
            .as_ref()
            .and_then(|b| b.str_by_offset(off))
            .map_or(&[][..], |s| s.to_bytes())
    }
    fn sym_name(&self, sym: &Sym) -> Option<&str> {
        elf::str_at(&self.strtab, sym.name as usize)
    }
}

/// libbpf's `is_dwarf_sec_name`.
fn is_dwarf(name: &str) -> bool {
    name.starts_with(".debug_")
}

/// libbpf's `is_ignored_sec`.
fn is_ignored(s: &Shdr) -> bool {
    if s.sh_type == elf::SHT_STRTAB || s.sh_type == elf::SHT_LLVM_ADDRSIG {
        return true;
    }
    if s.sh_type == elf::SHT_PROGBITS && s.size == 0 && s.name == ".text" {
        return true;
    }
    if is_dwarf(&s.name) {
        return true;
    }
    if let Some(rest) = s.name.strip_prefix(".rel") {
        if is_dwarf(rest) || rest == ".BTF" || rest == ".BTF.ext" {
            return true;
        }
    }
    false
}

/// The state of one link: what `struct bpf_linker` holds.
#[derive(Debug)]
pub struct Linker {
    secs: Vec<DstSec>,
    next_sec_idx: u32,
    syms: Vec<Sym>,
    strtab: Strs,
    glob: Vec<GlobSym>,
    types: Vec<Vec<u32>>,
    btf_strs: Strs,
    finalized: bool,
}

impl Default for Linker {
    fn default() -> Self {
        Linker::new()
    }
}

impl Linker {
    /// An empty link (`bpf_linker__new` without the output file).
    pub fn new() -> Linker {
        // As libbpf: the section names go into .strtab as sections appear.
        let mut strtab = Strs::new();
        strtab.add(b".strtab");
        strtab.add(b".symtab");
        Linker {
            secs: Vec::new(),
            // 1: .strtab, 2: .symtab
            next_sec_idx: 3,
            syms: vec![Sym::default()],
            strtab,
            glob: Vec::new(),
            types: vec![Vec::new()],
            btf_strs: Strs::new(),
            finalized: false,
        }
    }

    /// Whether [`Linker::finalize`] ran.
    pub fn is_finalized(&self) -> bool {
        self.finalized
    }

    /// Adds the BPF ELF object `bytes` (`bpf_linker__add_buf`; `filename`
    /// names it in messages).
    pub fn add_buf(&mut self, filename: &str, bytes: &[u8]) -> Result<()> {
        if self.finalized {
            return Err(LinkError::silent(EINVAL));
        }
        let mut obj = load_obj(filename, bytes)?;
        sanity_check(&obj)?;
        fixup_btf(&mut obj)?;
        self.append_sec_data(&mut obj)?;
        self.append_syms(&mut obj)?;
        self.append_relos(&mut obj)?;
        self.append_btf(&mut obj)?;
        self.append_btf_ext(&obj)?;
        Ok(())
    }

    fn init_sec(&mut self, dst_id: usize, src: &SrcSec) {
        let next = self.next_sec_idx;
        let dst = &mut self.secs[dst_id];
        dst.ephemeral = src.ephemeral;
        if src.ephemeral {
            return;
        }
        dst.sec_idx = next;
        self.strtab.add(dst.name.as_bytes());
        dst.sh_type = src.shdr.sh_type;
        dst.flags = src.shdr.flags;
        dst.align = src.shdr.align;
        dst.entsize = src.shdr.entsize;
        self.next_sec_idx += 1;
    }

    fn add_dst_sec(&mut self, name: &str, src: &SrcSec) -> usize {
        self.secs.push(DstSec {
            name: name.to_string(),
            ..DstSec::default()
        });
        let id = self.secs.len() - 1;
        self.init_sec(id, src);
        id
    }

    fn find_dst_sec(&self, name: &str) -> Option<usize> {
        self.secs.iter().position(|s| s.name == name)
    }

    /// libbpf's `extend_sec`: appends `src` at `dst`'s alignment.
    fn extend_sec(&mut self, dst_id: usize, src: &mut SrcSec) {
        if src.ephemeral {
            return;
        }
        if self.secs[dst_id].ephemeral {
            self.init_sec(dst_id, src);
        }
        let dst = &mut self.secs[dst_id];
        let align = dst.align.max(1).max(src.shdr.align);
        let start = dst.size.div_ceil(align) * align;
        if src.shdr.sh_type != elf::SHT_NOBITS {
            dst.data.resize(start as usize, 0);
            dst.data.extend_from_slice(&src.shdr.data);
        }
        dst.size = start + src.shdr.size;
        dst.align = align;
        src.dst_off = start;
    }

    fn append_sec_data(&mut self, obj: &mut SrcObj) -> Result<()> {
        for i in 1..obj.secs.len() {
            let src = &obj.secs[i];
            let is_data = !src.skipped
                && (src.ephemeral
                    || src.shdr.sh_type == elf::SHT_PROGBITS
                    || src.shdr.sh_type == elf::SHT_NOBITS);
            if !is_data {
                continue;
            }
            let name = src.shdr.name.clone();
            let dst_id = match self.find_dst_sec(&name) {
                None => self.add_dst_sec(&name, src),
                Some(d) => {
                    if name == "license" || name == "version" {
                        let dst = &self.secs[d];
                        if dst.size != src.shdr.size || dst.data != src.shdr.data {
                            return Err(LinkError::inval(format!(
                                "non-identical contents of section '{name}' are not supported"
                            )));
                        }
                        obj.secs[i].skipped = true;
                        obj.secs[i].dst_id = Some(d);
                        continue;
                    }
                    d
                }
            };
            obj.secs[i].dst_id = Some(dst_id);
            self.extend_sec(dst_id, &mut obj.secs[i]);
        }
        Ok(())
    }

    fn find_glob(&self, name: &str) -> Option<usize> {
        self.glob.iter().position(|g| g.name == name)
    }

    fn append_syms(&mut self, obj: &mut SrcObj) -> Result<()> {
        obj.sym_map = vec![0; obj.syms.len() + 1];
        for i in 1..obj.syms.len() {
            let sym = obj.syms[i];
            let name = obj
                .sym_name(&sym)
                .ok_or_else(|| {
                    LinkError::inval(format!(
                        "can't fetch symbol name for symbol #{i} in '{}'",
                        obj.filename
                    ))
                })?
                .to_string();
            self.append_sym(obj, sym, &name, i)?;
        }
        Ok(())
    }

    fn append_sym(&mut self, obj: &mut SrcObj, sym: Sym, name: &str, idx: usize) -> Result<()> {
        let is_extern = sym.shndx == elf::SHN_UNDEF;
        let mut src_sec: Option<usize> = None;
        let mut dst_sec: Option<usize> = None;
        if is_extern {
            if obj.btf.is_none() {
                return Err(LinkError::new(
                    EOPNOTSUPP,
                    "externs without BTF info are not supported",
                ));
            }
        } else if sym.shndx < elf::SHN_LORESERVE {
            let s = &obj.secs[sym.shndx as usize];
            if s.skipped {
                return Ok(());
            }
            let Some(d) = s.dst_id else {
                return Ok(());
            };
            src_sec = Some(sym.shndx as usize);
            dst_sec = Some(d);
            if sym.typ() == elf::STT_SECTION && self.secs[d].sec_sym_idx != 0 {
                obj.sym_map[idx] = self.secs[d].sec_sym_idx;
                return Ok(());
            }
        }
        // Symbols of jump tables are kept as they are, never resolved.
        let jumptable = src_sec.is_some_and(|s| obj.secs[s].shdr.name == ".jumptables");
        if sym.bind() != elf::STB_LOCAL && !jumptable {
            let (btf_sec_id, btf_id) = find_glob_sym_btf(obj, name)?;
            if is_extern && btf_sec_id != 0 {
                let sec_name = String::from_utf8_lossy(obj.btf_str(obj.types[btf_sec_id][0]));
                if sec_name != ".extern" {
                    let s = obj.find_sec(&sec_name).ok_or_else(|| {
                        LinkError::new(
                            ENOENT,
                            format!("failed to find matching ELF sec '{sec_name}'"),
                        )
                    })?;
                    src_sec = Some(s);
                    dst_sec = obj.secs[s].dst_id;
                }
            }
            if let Some(g) = self.find_glob(name) {
                return self.merge_glob(obj, g, sym, name, idx, btf_id, src_sec, dst_sec);
            }
        }
        // add_sym
        let name_off = self.strtab.add(name.as_bytes());
        let dst_idx = self.syms.len();
        let mut out = Sym {
            name: name_off,
            info: sym.info,
            other: sym.other,
            shndx: dst_sec.map_or(sym.shndx, |d| self.secs[d].sec_idx as u16),
            value: src_sec.map_or(0, |s| obj.secs[s].dst_off) + sym.value,
            size: sym.size,
        };
        obj.sym_map[idx] = dst_idx;
        if sym.typ() == elf::STT_SECTION {
            if let Some(d) = dst_sec {
                self.secs[d].sec_sym_idx = dst_idx;
                out.value = 0;
            }
        }
        self.syms.push(out);
        if sym.bind() != elf::STB_LOCAL {
            self.glob.push(GlobSym {
                name: name.to_string(),
                sym_idx: dst_idx,
                sec_id: dst_sec,
                btf_id: 0,
                underlying: 0,
                is_extern,
                is_weak: sym.bind() == elf::STB_WEAK,
                var_idx: None,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn merge_glob(
        &mut self,
        obj: &mut SrcObj,
        g: usize,
        sym: Sym,
        name: &str,
        idx: usize,
        btf_id: usize,
        src_sec: Option<usize>,
        dst_sec: Option<usize>,
    ) -> Result<()> {
        let is_extern = sym.shndx == elf::SHN_UNDEF;
        let sym_bind = sym.bind();
        obj.sym_map[idx] = self.glob[g].sym_idx;
        let glob = &self.glob[g];
        if !is_extern && !glob.is_extern && !glob.is_weak && sym_bind != elf::STB_WEAK {
            return Err(LinkError::inval(format!(
                "conflicting non-weak symbol #{idx} ({name}) definition in '{}'",
                obj.filename
            )));
        }
        // glob_syms_match
        let glob_btf = glob.btf_id;
        if glob_btf == 0 || btf_id == 0 {
            return Err(LinkError::inval(format!(
                "BTF info is missing for global symbol '{name}'"
            )));
        }
        let src_kind = kind(&obj.types[btf_id]);
        if src_kind != KIND_VAR && src_kind != KIND_FUNC {
            return Err(LinkError::inval(format!(
                "only extern variables and functions are supported, but got '{}' for '{name}'",
                kind_name(src_kind)
            )));
        }
        let dst_view = matching::Types {
            types: &self.types,
            strs: matching::Strings::Raw(&self.btf_strs.data),
        };
        let src_view = matching::Types {
            types: &obj.types,
            strs: matching::Strings::Btf(obj.btf.as_ref()),
        };
        if glob.sec_id.is_some_and(|d| self.secs[d].name == ".maps") {
            matching::map_defs_match(name, &dst_view, glob_btf, &src_view, btf_id as u32)?;
        } else {
            matching::btf_matches(name, true, &dst_view, glob_btf, &src_view, btf_id as u32)?;
        }
        let sym_idx = glob.sym_idx;
        let dst = &mut self.syms[sym_idx];
        if sym_bind == elf::STB_GLOBAL {
            dst.info = (elf::STB_GLOBAL << 4) | (dst.info & 0xf);
            self.glob[g].is_weak = false;
        }
        if sym.vis() > dst.vis() {
            dst.other = (dst.other & !3) | sym.vis();
        }
        if is_extern {
            return Ok(());
        }
        if !self.glob[g].is_extern && sym_bind == elf::STB_WEAK {
            return Ok(());
        }
        let (Some(s), Some(d)) = (src_sec, dst_sec) else {
            return Ok(());
        };
        dst.info = (dst.info & 0xf0) | sym.typ();
        dst.shndx = self.secs[d].sec_idx as u16;
        dst.value = obj.secs[s].dst_off + sym.value;
        dst.size = sym.size;
        self.glob[g].sec_id = Some(d);
        self.glob[g].is_extern = false;
        let glob_btf = self.glob[g].btf_id as usize;
        if glob_btf != 0 {
            self.complete_extern_btf_info(glob_btf, obj, btf_id);
        }
        self.glob[g].underlying = 0;
        Ok(())
    }

    /// libbpf's `complete_extern_btf_info`: the kept VAR/FUNC becomes a
    /// definition; an extern FUNC_PROTO gets the definition's param names.
    fn complete_extern_btf_info(&mut self, dst_id: usize, obj: &SrcObj, src_id: usize) {
        if kind(&self.types[dst_id]) == KIND_VAR {
            self.types[dst_id][3] = VAR_GLOBAL_ALLOCATED;
            return;
        }
        self.types[dst_id][1] = (KIND_FUNC << 24) | FUNC_GLOBAL;
        let dst_proto = self.types[dst_id][2] as usize;
        let src_proto = obj.types[src_id][2] as usize;
        let (Some(dp), Some(sp)) = (self.types.get(dst_proto), obj.types.get(src_proto)) else {
            return;
        };
        if kind(dp) != KIND_FUNC_PROTO || kind(sp) != KIND_FUNC_PROTO {
            return;
        }
        let n = vlen(dp).min(vlen(sp));
        for j in 0..n {
            let off = obj.types[src_proto][3 + 2 * j];
            if off == 0 {
                continue;
            }
            let s = obj.btf_str(off).to_vec();
            let new = self.btf_strs.add(&s);
            self.types[dst_proto][3 + 2 * j] = new;
        }
    }

    fn append_relos(&mut self, obj: &mut SrcObj) -> Result<()> {
        for i in 1..obj.secs.len() {
            let s = &obj.secs[i];
            if s.skipped || s.ephemeral || s.shdr.sh_type != elf::SHT_REL {
                continue;
            }
            let linked = s.shdr.info as usize;
            if linked == 0 || linked >= obj.secs.len() {
                return Err(LinkError::inval(format!(
                    "ELF relo section #{i} points to missing section #{linked} in {}",
                    obj.filename
                )));
            }
            if obj.secs[linked].skipped {
                continue;
            }
            let Some(dst_linked) = obj.secs[linked].dst_id else {
                continue;
            };
            let name = s.shdr.name.clone();
            let dst_id = match self.find_dst_sec(&name) {
                Some(d) => d,
                None => self.add_dst_sec(&name, &obj.secs[i]),
            };
            self.secs[dst_id].link = 2;
            self.secs[dst_id].info = self.secs[dst_linked].sec_idx;
            obj.secs[i].dst_id = Some(dst_id);
            let mut src = std::mem::take(&mut obj.secs[i]);
            self.extend_sec(dst_id, &mut src);
            let base = src.dst_off as usize;
            let n = src.shdr.data.len() / elf::REL_SIZE;
            obj.secs[i] = src;
            let linked_off = obj.secs[linked].dst_off;
            let linked_exec = obj.secs[linked].shdr.flags & elf::SHF_EXECINSTR != 0;
            for j in 0..n {
                let at = base + j * elf::REL_SIZE;
                let rel = &mut self.secs[dst_id].data;
                let r_offset = elf::rd64(rel, at) + linked_off;
                let r_info = elf::rd64(rel, at + 8);
                let src_sym = (r_info >> 32) as usize;
                let dst_sym = obj.sym_map.get(src_sym).copied().unwrap_or(0);
                elf::wr64(rel, at, r_offset);
                elf::wr64(
                    rel,
                    at + 8,
                    ((dst_sym as u64) << 32) | (r_info & 0xffff_ffff),
                );
                let Some(sym) = obj.syms.get(src_sym) else {
                    return Err(LinkError::inval(format!(
                        "ELF relo #{j} in section #{i} points to invalid symbol #{src_sym} in {}",
                        obj.filename
                    )));
                };
                if sym.typ() != elf::STT_SECTION {
                    continue;
                }
                if !linked_exec {
                    return Err(LinkError::inval(
                        "relocation against STT_SECTION in non-exec section is not supported!",
                    ));
                }
                let target_off = obj.secs.get(sym.shndx as usize).map_or(0, |s| s.dst_off);
                let code = &mut self.secs[dst_linked].data;
                let at = r_offset as usize;
                if at + 8 > code.len() {
                    continue;
                }
                let imm = elf::rd32(code, at + 4) as i32;
                let add = match code[at] == 0x85 {
                    true => (target_off / 8) as i32,
                    false => target_off as i32,
                };
                elf::wr32(code, at + 4, imm.wrapping_add(add) as u32);
            }
        }
        Ok(())
    }

    fn remap_str(&mut self, obj: &SrcObj, off: u32) -> u32 {
        match off {
            0 => 0,
            _ => {
                let s = obj.btf_str(off).to_vec();
                self.btf_strs.add(&s)
            }
        }
    }

    fn append_btf(&mut self, obj: &mut SrcObj) -> Result<()> {
        if obj.btf.is_none() {
            return Ok(());
        }
        let start_id = self.types.len();
        let n = obj.types.len();
        obj.type_map = vec![0; n + 1];
        for i in 1..n {
            let t = obj.types[i].clone();
            if kind(&t) == KIND_DATASEC {
                continue;
            }
            let mut glob = None;
            if is_non_static(&t) {
                let name = String::from_utf8_lossy(obj.btf_str(t[0])).into_owned();
                let Some(g) = self.find_glob(&name) else {
                    continue;
                };
                glob = Some(g);
                if self.glob[g].underlying == 0 {
                    self.glob[g].underlying = -i64::from(t[2]);
                }
                if self.glob[g].btf_id != 0 {
                    obj.type_map[i] = self.glob[g].btf_id;
                    continue;
                }
            }
            let mut rec = t.clone();
            for slot in str_slots(&rec) {
                rec[slot] = self.remap_str(obj, rec[slot]);
            }
            let id = self.types.len() as u32;
            self.types.push(rec);
            obj.type_map[i] = id;
            if let Some(g) = glob {
                self.glob[g].btf_id = id;
                self.glob[g].underlying = -i64::from(t[2]);
            }
        }
        for id in start_id..self.types.len() {
            for slot in type_id_slots(&self.types[id]) {
                let old = self.types[id][slot] as usize;
                if old == 0 {
                    continue;
                }
                let new = obj.type_map.get(old).copied().unwrap_or(0);
                if new == 0 {
                    return Err(LinkError::inval(format!(
                        "failed to find new ID mapping for original BTF type ID {old}"
                    )));
                }
                self.types[id][slot] = new;
            }
        }
        for g in 0..self.glob.len() {
            let u = self.glob[g].underlying;
            if u >= 0 {
                continue;
            }
            let mapped = obj.type_map.get((-u) as usize).copied().unwrap_or(0);
            self.glob[g].underlying = i64::from(mapped);
            let btf_id = self.glob[g].btf_id as usize;
            if btf_id != 0 {
                self.types[btf_id][2] = mapped;
            }
        }
        for i in 1..obj.secs.len() {
            let src = &obj.secs[i];
            if src.sec_type_id == 0 || src.skipped {
                continue;
            }
            let Some(d) = src.dst_id else { continue };
            self.secs[d].has_btf = true;
            let t = obj.types[src.sec_type_id as usize].clone();
            for j in 0..vlen(&t) {
                let (vtype, voff, vsize) = (t[3 + 3 * j], t[4 + 3 * j], t[5 + 3 * j]);
                let new_id = obj.type_map.get(vtype as usize).copied().unwrap_or(0);
                let nt = self.types.get(new_id as usize).cloned().unwrap_or_default();
                let mut glob = None;
                if !nt.is_empty() && is_non_static(&nt) {
                    let name = String::from_utf8_lossy(self.btf_str(nt[0])).into_owned();
                    if let Some(g) = self.find_glob(&name) {
                        if self.glob[g].sec_id != Some(d) {
                            return Err(LinkError::inval(format!(
                                "global '{name}': section mismatch {} vs {}",
                                self.glob[g].sec_id.map_or(0, |s| s + 1),
                                d + 1
                            )));
                        }
                        glob = Some(g);
                    }
                }
                if let Some(g) = glob {
                    if let Some(vi) = self.glob[g].var_idx {
                        if kind(&nt) == KIND_FUNC {
                            continue;
                        }
                        let u = self.glob[g].underlying as u32;
                        let sz = self.resolve_size(u).ok_or_else(|| {
                            LinkError::inval(format!(
                                "global '{}': failed to resolve size of underlying type: -22",
                                self.glob[g].name
                            ))
                        })?;
                        self.secs[d].vars[vi][2] = sz;
                        continue;
                    }
                }
                let src_off = obj.secs[i].dst_off as u32;
                self.secs[d].vars.push([new_id, src_off + voff, vsize]);
                if let Some(g) = glob {
                    self.glob[g].var_idx = Some(self.secs[d].vars.len() - 1);
                }
            }
        }
        Ok(())
    }

    fn btf_str(&self, off: u32) -> &[u8] {
        let tail = self.btf_strs.data.get(off as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }

    /// `btf__resolve_size` over the output types.
    fn resolve_size(&self, mut id: u32) -> Option<u32> {
        let mut nelems: u64 = 1;
        for _ in 0..32 {
            let t = self.types.get(id as usize).filter(|t| !t.is_empty())?;
            match kind(t) {
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_DATASEC
                | KIND_FLOAT => return u32::try_from(nelems * u64::from(t[2])).ok(),
                KIND_PTR => return u32::try_from(nelems * 8).ok(),
                KIND_ARRAY => {
                    nelems *= u64::from(t[5]);
                    id = t[3];
                }
                8..=11 | 14 | 18 => id = t[2],
                _ => return None,
            }
        }
        None
    }

    fn append_btf_ext(&mut self, obj: &SrcObj) -> Result<()> {
        let Some(ext) = &obj.btf_ext else {
            return Ok(());
        };
        let hdr_len = elf::rd32(ext, 4) as usize;
        let mut infos = vec![(elf::rd32(ext, 8), elf::rd32(ext, 12))];
        infos.push((elf::rd32(ext, 16), elf::rd32(ext, 20)));
        if hdr_len >= 32 {
            infos.push((elf::rd32(ext, 24), elf::rd32(ext, 28)));
        }
        for (which, &(off, len)) in infos.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let start = hdr_len + off as usize;
            let blob = ext
                .get(start..start + len as usize)
                .ok_or_else(|| LinkError::inval("invalid .BTF.ext section bounds"))?;
            let rec_sz = elf::rd32(blob, 0);
            if rec_sz < 8 {
                return Err(LinkError::inval(".BTF.ext record size too small"));
            }
            let mut at = 4usize;
            while at + 8 <= blob.len() {
                let name_off = elf::rd32(blob, at);
                let num = elf::rd32(blob, at + 4) as usize;
                at += 8;
                let bytes = num * rec_sz as usize;
                let recs = blob
                    .get(at..at + bytes)
                    .ok_or_else(|| LinkError::inval("invalid .BTF.ext section record count"))?;
                at += bytes;
                let sec_name = String::from_utf8_lossy(obj.btf_str(name_off)).into_owned();
                let src = obj.find_sec(&sec_name).ok_or_else(|| {
                    LinkError::inval(format!(
                        "can't find section '{sec_name}' referenced from .BTF.ext"
                    ))
                })?;
                let Some(d) = obj.secs[src].dst_id else {
                    continue;
                };
                let dst_off = obj.secs[src].dst_off as u32;
                let ed = &self.secs[d].ext[which];
                if ed.count != 0 && ed.rec_sz != rec_sz {
                    return Err(LinkError::inval(format!(
                        "incompatible .BTF.ext record sizes for section '{sec_name}'"
                    )));
                }
                for r in 0..num {
                    let mut rec = recs[r * rec_sz as usize..(r + 1) * rec_sz as usize].to_vec();
                    let insn_off = elf::rd32(&rec, 0) + dst_off;
                    elf::wr32(&mut rec, 0, insn_off);
                    match which {
                        0 | 2 => {
                            let tid = elf::rd32(&rec, 4) as usize;
                            let new = obj.type_map.get(tid).copied().unwrap_or(0);
                            elf::wr32(&mut rec, 4, new);
                            if which == 2 && rec.len() >= 16 {
                                let s = self.remap_str(obj, elf::rd32(&rec, 8));
                                elf::wr32(&mut rec, 8, s);
                            }
                        }
                        _ => {
                            if rec.len() >= 12 {
                                let f = self.remap_str(obj, elf::rd32(&rec, 4));
                                elf::wr32(&mut rec, 4, f);
                                let l = self.remap_str(obj, elf::rd32(&rec, 8));
                                elf::wr32(&mut rec, 8, l);
                            }
                        }
                    }
                    let ed = &mut self.secs[d].ext[which];
                    ed.rec_sz = rec_sz;
                    ed.count += 1;
                    ed.recs.extend_from_slice(&rec);
                }
            }
        }
        Ok(())
    }

    /// `bpf_linker__finalize`: the linked ELF object. Fails with `EINVAL`
    /// if called twice.
    pub fn finalize(&mut self) -> Result<Vec<u8>> {
        if self.finalized {
            return Err(LinkError::silent(EINVAL));
        }
        self.finalized = true;
        let (btf, btf_ext) = self.finalize_btf()?;
        let shstr = |s: &mut Strs, n: &str| s.add(n.as_bytes());
        let strtab_name = shstr(&mut self.strtab, ".strtab");
        let symtab_name = shstr(&mut self.strtab, ".symtab");
        let mut order: Vec<usize> = (0..self.secs.len())
            .filter(|&i| !self.secs[i].ephemeral && self.secs[i].sec_idx != 0)
            .collect();
        order.sort_by_key(|&i| self.secs[i].sec_idx);
        let sec_names: Vec<u32> = order
            .iter()
            .map(|&i| {
                let n = self.secs[i].name.clone();
                self.strtab.add(n.as_bytes())
            })
            .collect();
        let btf_name = btf.as_ref().map(|_| self.strtab.add(b".BTF"));
        let ext_name = btf_ext.as_ref().map(|_| self.strtab.add(b".BTF.ext"));
        let mut symdata = Vec::with_capacity(self.syms.len() * elf::SYM_SIZE);
        for s in &self.syms {
            s.write(&mut symdata);
        }
        let mut out = vec![
            elf::OutSec {
                name_off: 0,
                sh_type: 0,
                flags: 0,
                link: 0,
                info: 0,
                align: 0,
                entsize: 0,
                size: 0,
                data: Vec::new(),
            },
            elf::OutSec {
                name_off: strtab_name,
                sh_type: elf::SHT_STRTAB,
                flags: elf::SHF_STRINGS,
                link: 0,
                info: 0,
                align: 1,
                entsize: 0,
                size: self.strtab.data.len() as u64,
                data: self.strtab.data.clone(),
            },
            elf::OutSec {
                name_off: symtab_name,
                sh_type: elf::SHT_SYMTAB,
                flags: 0,
                link: 1,
                info: 0,
                align: 8,
                entsize: elf::SYM_SIZE as u64,
                size: symdata.len() as u64,
                data: symdata,
            },
        ];
        for (k, &i) in order.iter().enumerate() {
            let s = &mut self.secs[i];
            out.push(elf::OutSec {
                name_off: sec_names[k],
                sh_type: s.sh_type,
                flags: s.flags,
                link: s.link,
                info: s.info,
                align: s.align,
                entsize: s.entsize,
                size: s.size,
                data: std::mem::take(&mut s.data),
            });
        }
        for (name, data) in [(btf_name, btf), (ext_name, btf_ext)] {
            if let (Some(name_off), Some(data)) = (name, data) {
                out.push(elf::OutSec {
                    name_off,
                    sh_type: elf::SHT_PROGBITS,
                    flags: 0,
                    link: 0,
                    info: 0,
                    align: 8,
                    entsize: 0,
                    size: data.len() as u64,
                    data,
                });
            }
        }
        Ok(elf::write(&out, 1))
    }

    /// The `.BTF` and `.BTF.ext` blobs (`finalize_btf`).
    fn finalize_btf(&mut self) -> Result<BtfBlobs> {
        if self.types.len() == 1 {
            return Ok((None, None));
        }
        for i in 0..self.secs.len() {
            if !self.secs[i].has_btf {
                continue;
            }
            let name = self.secs[i].name.clone();
            let name_off = self.btf_strs.add(name.as_bytes());
            let s = &self.secs[i];
            let mut rec = vec![
                name_off,
                (KIND_DATASEC << 24) | s.vars.len() as u32,
                s.size as u32,
            ];
            for v in &s.vars {
                rec.extend_from_slice(v);
            }
            self.types.push(rec);
        }
        // libbpf dedups here (btf__dedup with the .BTF.ext); type ids in
        // DATASECs move with the types, the .BTF.ext's are remapped.
        let map = dedup::dedup(&mut self.types);
        let remap = |id: u32| map.get(id as usize).copied().unwrap_or(id);
        for s in &mut self.secs {
            for which in [0usize, 2] {
                let ed = &mut s.ext[which];
                let sz = ed.rec_sz as usize;
                for r in 0..ed.count as usize {
                    let at = r * sz + 4;
                    let id = elf::rd32(&ed.recs, at);
                    elf::wr32(&mut ed.recs, at, remap(id));
                }
            }
        }
        // .BTF.ext
        let mut ext = None;
        let mut parts: [Vec<u8>; 3] = Default::default();
        for (which, part) in parts.iter_mut().enumerate() {
            let mut body = Vec::new();
            let mut rec_sz = 0;
            for i in 0..self.secs.len() {
                if self.secs[i].ext[which].count == 0 {
                    continue;
                }
                let name = self.secs[i].name.clone();
                let name_off = self.btf_strs.add(name.as_bytes());
                let ed = &self.secs[i].ext[which];
                rec_sz = ed.rec_sz;
                body.extend_from_slice(&name_off.to_le_bytes());
                body.extend_from_slice(&ed.count.to_le_bytes());
                body.extend_from_slice(&ed.recs);
            }
            if !body.is_empty() {
                part.extend_from_slice(&rec_sz.to_le_bytes());
                part.extend_from_slice(&body);
            }
        }
        if parts.iter().any(|p| !p.is_empty()) {
            let mut e = vec![0u8; 32];
            e[0..2].copy_from_slice(&0xeb9f_u16.to_le_bytes());
            e[2] = 1;
            elf::wr32(&mut e, 4, 32);
            let mut off = 0u32;
            for (k, p) in parts.iter().enumerate() {
                elf::wr32(&mut e, 8 + 8 * k, off);
                elf::wr32(&mut e, 12 + 8 * k, p.len() as u32);
                off += p.len() as u32;
            }
            for p in &parts {
                e.extend_from_slice(p);
            }
            ext = Some(e);
        }
        let mut raw = vec![0u8; 24];
        raw[0..2].copy_from_slice(&0xeb9f_u16.to_le_bytes());
        raw[2] = 1;
        elf::wr32(&mut raw, 4, 24);
        let type_len: usize = self.types.iter().map(|t| t.len() * 4).sum();
        elf::wr32(&mut raw, 8, 0);
        elf::wr32(&mut raw, 12, type_len as u32);
        elf::wr32(&mut raw, 16, type_len as u32);
        elf::wr32(&mut raw, 20, self.btf_strs.data.len() as u32);
        for t in &self.types {
            for w in t {
                raw.extend_from_slice(&w.to_le_bytes());
            }
        }
        raw.extend_from_slice(&self.btf_strs.data);
        if let Err(e) = Btf::parse(&raw) {
            return Err(LinkError::inval(format!(
                "failed to write out .BTF ELF section: {e}"
            )));
        }
        Ok((Some(raw), ext))
    }
}

/// libbpf's `find_glob_sym_btf`: the BTF VAR/FUNC of global `name`, and
/// the DATASEC holding it (0 if none).
fn find_glob_sym_btf(obj: &SrcObj, name: &str) -> Result<(usize, usize)> {
    if obj.btf.is_none() {
        return Err(LinkError::inval(format!(
            "failed to find BTF info for object '{}'",
            obj.filename
        )));
    }
    let mut btf_id = 0;
    for i in 1..obj.types.len() {
        let t = &obj.types[i];
        if is_non_static(t) {
            if obj.btf_str(t[0]) == name.as_bytes() {
                btf_id = i;
            }
            continue;
        }
        if kind(t) != KIND_DATASEC {
            continue;
        }
        for j in 0..vlen(t) {
            let vid = t[3 + 3 * j] as usize;
            let Some(vt) = obj.types.get(vid).filter(|v| !v.is_empty()) else {
                continue;
            };
            if obj.btf_str(vt[0]) != name.as_bytes() || !is_non_static(vt) {
                continue;
            }
            if btf_id != 0 && btf_id != vid {
                return Err(LinkError::inval(format!(
                    "global/extern '{name}' BTF is ambiguous: both types #{btf_id} and #{vid} match"
                )));
            }
            return Ok((i, vid));
        }
    }
    if btf_id != 0 {
        return Ok((0, btf_id));
    }
    Err(LinkError::new(
        ENOENT,
        format!("failed to find BTF info for global/extern symbol '{name}'"),
    ))
}

fn load_obj(filename: &str, bytes: &[u8]) -> Result<SrcObj> {
    let shdrs = elf::parse(bytes, filename)?;
    let mut obj = SrcObj {
        filename: filename.to_string(),
        secs: Vec::with_capacity(shdrs.len()),
        symtab: 0,
        syms: Vec::new(),
        strtab: Vec::new(),
        btf: None,
        types: vec![Vec::new()],
        btf_ext: None,
        sym_map: Vec::new(),
        type_map: Vec::new(),
    };
    for (i, shdr) in shdrs.into_iter().enumerate() {
        let mut sec = SrcSec {
            shdr,
            elf_idx: i,
            ..SrcSec::default()
        };
        if i == 0 {
            obj.secs.push(sec);
            continue;
        }
        let s = &sec.shdr;
        if s.sh_type == elf::SHT_SYMTAB {
            if obj.symtab != 0 {
                return Err(LinkError::new(
                    EOPNOTSUPP,
                    "multiple SYMTAB sections found, not supported",
                ));
            }
            obj.symtab = i;
            sec.skipped = true;
        } else if s.name == ".BTF" {
            let btf = Btf::parse(&s.data).map_err(|e| {
                LinkError::new(
                    e.errno(),
                    format!("failed to parse .BTF from {filename}: {e}"),
                )
            })?;
            obj.types = std::iter::once(Vec::new())
                .chain(btf.own_types().map(|t| t.record_words().to_vec()))
                .collect();
            obj.btf = Some(btf);
            sec.skipped = true;
        } else if s.name == ".BTF.ext" {
            if s.data.len() < 24 || elf::rd32(&s.data, 0) & 0xffff != 0xeb9f {
                return Err(LinkError::inval(format!(
                    "failed to parse .BTF.ext from '{filename}': bad header"
                )));
            }
            obj.btf_ext = Some(s.data.clone());
            sec.skipped = true;
        } else if is_ignored(s) {
            sec.skipped = true;
        } else if !matches!(
            s.sh_type,
            elf::SHT_PROGBITS | elf::SHT_NOBITS | elf::SHT_REL
        ) {
            return Err(LinkError::inval(format!(
                "unrecognized section #{i} ({}) in {filename}",
                s.name
            )));
        }
        obj.secs.push(sec);
    }
    if obj.symtab == 0 {
        return Err(LinkError::inval(format!(
            "ELF is missing SYMTAB section in {filename}"
        )));
    }
    let symtab = &obj.secs[obj.symtab].shdr;
    let strtab = symtab.link as usize;
    if strtab == 0 || strtab >= obj.secs.len() || obj.secs[strtab].shdr.sh_type != elf::SHT_STRTAB {
        return Err(LinkError::inval(format!(
            "ELF SYMTAB section #{} points to missing STRTAB section #{strtab} in {filename}",
            obj.symtab
        )));
    }
    obj.syms = symtab
        .data
        .chunks_exact(elf::SYM_SIZE)
        .map(Sym::parse)
        .collect();
    obj.strtab = obj.secs[strtab].shdr.data.clone();
    Ok(obj)
}

/// libbpf's `linker_fixup_btf`.
fn fixup_btf(obj: &mut SrcObj) -> Result<()> {
    if obj.btf.is_none() {
        return Ok(());
    }
    for i in 1..obj.types.len() {
        if kind(&obj.types[i]) != KIND_DATASEC {
            continue;
        }
        let sec_name = String::from_utf8_lossy(obj.btf_str(obj.types[i][0])).into_owned();
        let sec = match obj.find_sec(&sec_name) {
            Some(s) => {
                if !obj.secs[s].ephemeral {
                    obj.types[i][2] = obj.secs[s].shdr.size as u32;
                }
                s
            }
            None => {
                if sec_name == ".extern" {
                    continue;
                }
                obj.secs.push(SrcSec {
                    shdr: Shdr {
                        name: sec_name.clone(),
                        ..Shdr::default()
                    },
                    ephemeral: true,
                    elf_idx: 0,
                    ..SrcSec::default()
                });
                obj.secs.len() - 1
            }
        };
        obj.secs[sec].sec_type_id = i as u32;
        let elf_idx = obj.secs[sec].elf_idx;
        for j in 0..vlen(&obj.types[i]) {
            let vid = obj.types[i][3 + 3 * j] as usize;
            let Some(vt) = obj.types.get(vid).filter(|v| !v.is_empty()) else {
                continue;
            };
            if kind(vt) != KIND_VAR || vt[3] != VAR_GLOBAL_ALLOCATED {
                continue;
            }
            let var_name = obj.btf_str(vt[0]).to_vec();
            let sym = obj.syms.iter().find(|s| {
                s.shndx as usize == elf_idx
                    && s.typ() == elf::STT_OBJECT
                    && obj.sym_name(s).map(str::as_bytes) == Some(&var_name[..])
            });
            let Some(sym) = sym else {
                return Err(LinkError::new(
                    ENOENT,
                    format!(
                        "failed to find symbol for variable '{}' in section '{sec_name}'",
                        String::from_utf8_lossy(&var_name)
                    ),
                ));
            };
            obj.types[i][4 + 3 * j] = sym.value as u32;
        }
    }
    Ok(())
}

/// libbpf's `linker_sanity_check_elf` (with `_symtab` and `_relos`).
fn sanity_check(obj: &SrcObj) -> Result<()> {
    let f = &obj.filename;
    let nsecs = obj.secs.iter().filter(|s| !s.ephemeral).count();
    for (i, sec) in obj.secs.iter().enumerate().skip(1) {
        let s = &sec.shdr;
        if s.name.is_empty() {
            return Err(LinkError::inval(format!(
                "ELF section #{i} has empty name in {f}"
            )));
        }
        if is_dwarf(&s.name) {
            continue;
        }
        if s.align != 0 && !s.align.is_power_of_two() {
            return Err(LinkError::inval(format!(
                "ELF section #{i} alignment {} is non pow-of-2 alignment in {f}",
                s.align
            )));
        }
        match s.sh_type {
            elf::SHT_SYMTAB => {
                if s.entsize != elf::SYM_SIZE as u64 || !s.size.is_multiple_of(elf::SYM_SIZE as u64)
                {
                    return Err(LinkError::silent(EINVAL));
                }
                check_symtab(obj, i, nsecs)?;
            }
            elf::SHT_PROGBITS if s.flags & elf::SHF_EXECINSTR != 0 && !s.size.is_multiple_of(8) => {
                return Err(LinkError::inval(format!(
                    "ELF section #{i} has unexpected size alignment {} in {f}",
                    s.size
                )));
            }
            elf::SHT_REL => check_relos(obj, i, nsecs)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_symtab(obj: &SrcObj, sec_idx: usize, nsecs: usize) -> Result<()> {
    let f = &obj.filename;
    for (i, sym) in obj.syms.iter().enumerate() {
        if i == 0 {
            if sym.name != 0
                || sym.info != 0
                || sym.other != 0
                || sym.shndx != 0
                || sym.value != 0
                || sym.size != 0
            {
                return Err(LinkError::inval(format!("ELF sym #0 is invalid in {f}")));
            }
            continue;
        }
        let bind = sym.bind();
        if !matches!(bind, elf::STB_LOCAL | elf::STB_GLOBAL | elf::STB_WEAK) {
            return Err(LinkError::inval(format!(
                "ELF sym #{i} in section #{sec_idx} has unsupported symbol binding {bind}"
            )));
        }
        // STV_DEFAULT, STV_HIDDEN
        if sym.vis() != 0 && sym.vis() != 2 {
            return Err(LinkError::inval(format!(
                "ELF sym #{i} in section #{sec_idx} has unsupported symbol visibility {}",
                sym.vis()
            )));
        }
        if sym.shndx == elf::SHN_UNDEF {
            if sym.typ() != 0 || bind == elf::STB_LOCAL || sym.value != 0 || sym.size != 0 {
                return Err(LinkError::inval(format!(
                    "ELF sym #{i} is invalid extern symbol in {f}"
                )));
            }
            continue;
        }
        if sym.shndx < elf::SHN_LORESERVE && sym.shndx as usize >= nsecs {
            return Err(LinkError::inval(format!(
                "ELF sym #{i} in section #{sec_idx} points to missing section #{} in {f}",
                sym.shndx
            )));
        }
        if sym.typ() == elf::STT_SECTION && sym.value != 0 {
            return Err(LinkError::silent(EINVAL));
        }
    }
    Ok(())
}

fn check_relos(obj: &SrcObj, sec_idx: usize, nsecs: usize) -> Result<()> {
    let f = &obj.filename;
    let s = &obj.secs[sec_idx].shdr;
    if s.entsize != elf::REL_SIZE as u64 || !s.size.is_multiple_of(elf::REL_SIZE as u64) {
        return Err(LinkError::silent(EINVAL));
    }
    if s.link as usize != obj.symtab {
        return Err(LinkError::inval(format!(
            "ELF relo section #{sec_idx} points to invalid SYMTAB section #{} in {f}",
            s.link
        )));
    }
    let linked = s.info as usize;
    if linked == 0 || linked >= nsecs {
        return Err(LinkError::inval(format!(
            "ELF relo section #{sec_idx} points to missing section #{linked} in {f}"
        )));
    }
    let link_sec = &obj.secs[linked];
    if s.name.strip_prefix(".rel") != Some(link_sec.shdr.name.as_str()) {
        return Err(LinkError::inval(format!(
            "ELF relo section #{sec_idx} name has invalid name in {f}"
        )));
    }
    if link_sec.skipped {
        return Ok(());
    }
    if !matches!(link_sec.shdr.sh_type, elf::SHT_PROGBITS | elf::SHT_NOBITS) {
        return Err(LinkError::inval(format!(
            "ELF relo section #{sec_idx} points to invalid section #{linked} in {f}"
        )));
    }
    let exec = link_sec.shdr.flags & elf::SHF_EXECINSTR != 0;
    for (i, rel) in s.data.chunks_exact(elf::REL_SIZE).enumerate() {
        let r_offset = elf::rd64(rel, 0);
        let r_info = elf::rd64(rel, 8);
        let (sym, typ) = ((r_info >> 32) as usize, r_info & 0xffff_ffff);
        // R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_ABS32, R_BPF_64_32
        if !matches!(typ, 1 | 2 | 3 | 10) {
            return Err(LinkError::inval(format!(
                "ELF relo #{i} in section #{sec_idx} has unexpected type {typ} in {f}"
            )));
        }
        if sym == 0 || sym >= obj.syms.len() {
            return Err(LinkError::inval(format!(
                "ELF relo #{i} in section #{sec_idx} points to invalid symbol #{sym} in {f}"
            )));
        }
        if exec && !r_offset.is_multiple_of(8) {
            return Err(LinkError::inval(format!(
                "ELF relo #{i} in section #{sec_idx} points to missing symbol #{sym} in {f}"
            )));
        }
    }
    Ok(())
}
