//! [`BpfProgram`]: a function found in an executable section (libbpf's
//! `struct bpf_program`), with its section-derived types, and after
//! relocation its final instructions.
//!
//! As in libbpf, every `STT_FUNC` symbol of an executable section is a
//! program, several per section if there are several; the functions in
//! `.text` are *subprograms*: they are never loaded on their own, only
//! appended to the entry programs that call them.

use crate::object::elf::consts as elf;
use userbpf_runtime::isa::Insn;

use crate::object::elf::{ElfFile, Section};
use crate::object::error::{ObjectError, EINVAL, ENOTSUP, LIBBPF_ERRNO_FORMAT};
use crate::object::log::Logger;
use crate::object::reloc::RelocDesc;
use crate::object::sections::{find_sec_def, SecDef};
use crate::object::types::{AttachType, ProgType};

/// Bytes per instruction slot.
pub(crate) const INSN_SZ: u64 = 8;

/// One program of an object.
#[derive(Clone, Debug)]
pub struct BpfProgram {
    pub(crate) name: String,
    pub(crate) sec_name: String,
    pub(crate) sec_idx: usize,
    /// First instruction within the section.
    pub(crate) sec_insn_off: usize,
    pub(crate) sec_insn_cnt: usize,
    /// The instructions as in the ELF file.
    pub(crate) insns: Vec<Insn>,
    pub(crate) prog_type: ProgType,
    pub(crate) expected_attach_type: AttachType,
    pub(crate) sec_def: Option<&'static SecDef>,
    pub(crate) autoload: bool,
    pub(crate) autoattach: bool,
    pub(crate) is_subprog: bool,
    /// Global or weak symbol (not static).
    pub(crate) sym_global: bool,
    /// Global but hidden: libbpf marks its BTF FUNC static.
    pub(crate) mark_btf_static: bool,
    /// Relocations against this program's own instructions, sorted by
    /// instruction index (indexes relative to the program).
    pub(crate) relocs: Vec<RelocDesc>,
    /// Set by [`crate::object::Object::relocate`].
    pub(crate) relocated: Option<RelocatedProgram>,
}

/// Where a subprogram landed in a relocated program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubprogPlacement {
    pub name: String,
    /// Instruction index of the subprogram in `.text`.
    pub sec_insn_off: usize,
    /// Instruction index of its copy in the relocated program.
    pub insn_off: usize,
}

/// `.BTF.ext` func_info or line_info records for one relocated program, in
/// the layout the kernel takes (`bpf_prog_load_opts.func_info` /
/// `line_info`): `count` records of `record_size` bytes, each starting with
/// its `insn_off` already converted to instruction units and adjusted to
/// where the (sub)program sits in the final instructions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtInfoRecords {
    pub record_size: u32,
    pub bytes: Vec<u8>,
}

impl ExtInfoRecords {
    pub fn count(&self) -> usize {
        if self.record_size == 0 {
            0
        } else {
            self.bytes.len() / self.record_size as usize
        }
    }

    /// `(insn_off, second u32)` of each record: for func_info that is
    /// `(insn_off, type_id)`, for line_info `(insn_off, file_name_off)`.
    pub fn offsets_and_ids(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.bytes
            .chunks_exact(self.record_size.max(8) as usize)
            .map(|r| {
                (
                    u32::from_ne_bytes([r[0], r[1], r[2], r[3]]),
                    u32::from_ne_bytes([r[4], r[5], r[6], r[7]]),
                )
            })
    }
}

/// An entry program after relocation: its own code followed by copies of
/// every subprogram it reaches, with map references as
/// `BPF_PSEUDO_MAP_IDX` / `BPF_PSEUDO_MAP_IDX_VALUE` (indexes into
/// [`crate::object::Object::maps`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelocatedProgram {
    pub insns: Vec<Insn>,
    pub subprogs: Vec<SubprogPlacement>,
    pub func_info: Option<ExtInfoRecords>,
    pub line_info: Option<ExtInfoRecords>,
    /// CO-RE relocations applied to this program's own instructions (not
    /// counting those of appended subprograms).
    pub core_relos: usize,
}

impl BpfProgram {
    /// Global but hidden (`__hidden`): libbpf loads its BTF FUNC as static,
    /// so that the verifier checks it in its callers' context.
    pub fn mark_btf_static(&self) -> bool {
        self.mark_btf_static
    }

    /// The program's name (its function symbol).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ELF section name without the leading `?` (`bpf_program__section_name`).
    pub fn section_name(&self) -> &str {
        &self.sec_name
    }

    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    pub fn expected_attach_type(&self) -> AttachType {
        self.expected_attach_type
    }

    /// The `SEC()` definition the section name matched, if any.
    pub fn sec_def(&self) -> Option<&'static SecDef> {
        self.sec_def
    }

    /// The attach target the section name carries (`do_sys_open` in
    /// `kprobe/do_sys_open`), if any.
    pub fn attach_target(&self) -> Option<&str> {
        self.sec_def?.attach_target(&self.sec_name)
    }

    /// Whether the section says the program may sleep.
    pub fn is_sleepable(&self) -> bool {
        self.sec_def.is_some_and(|d| d.is_sleepable())
    }

    /// False for `SEC("?...")` programs or after `set_autoload(false)`:
    /// such programs are not relocated nor loaded.
    pub fn autoload(&self) -> bool {
        self.autoload
    }

    pub fn autoattach(&self) -> bool {
        self.autoattach
    }

    /// The instructions as in the ELF file (`bpf_program__insns` before
    /// load), without subprograms.
    pub fn original_insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The instruction index of the program within its section.
    pub fn section_insn_offset(&self) -> usize {
        self.sec_insn_off
    }

    /// The result of relocation, once [`crate::object::Object::relocate`]
    /// succeeded (`None` for programs with autoload off).
    pub fn relocated(&self) -> Option<&RelocatedProgram> {
        self.relocated.as_ref()
    }

    /// The final instructions after relocation, if relocated.
    pub fn insns(&self) -> Option<&[Insn]> {
        self.relocated.as_ref().map(|r| r.insns.as_slice())
    }

    /// `bpf_program__set_autoload`: takes effect at the next relocation.
    pub fn set_autoload(&mut self, autoload: bool) {
        self.autoload = autoload;
    }

    /// `bpf_program__set_autoattach`.
    pub fn set_autoattach(&mut self, autoattach: bool) {
        self.autoattach = autoattach;
    }

    /// `bpf_program__set_type`.
    pub fn set_prog_type(&mut self, prog_type: ProgType) {
        self.prog_type = prog_type;
    }

    /// `bpf_program__set_expected_attach_type`.
    pub fn set_expected_attach_type(&mut self, attach_type: AttachType) {
        self.expected_attach_type = attach_type;
    }

    /// libbpf refuses to load a program whose type is still unknown
    /// (`bpf_object_load_prog`); this is that check.
    pub fn check_loadable(&self) -> Result<(), ObjectError> {
        if self.prog_type == ProgType::UNSPEC {
            return Err(ObjectError::MissingProgType {
                prog: self.name.clone(),
                sec_name: self.sec_name.clone(),
            });
        }
        Ok(())
    }

    /// `libbpf`'s `prog_contains_insn`.
    pub(crate) fn contains_sec_insn(&self, sec_insn: usize) -> bool {
        sec_insn >= self.sec_insn_off && sec_insn < self.sec_insn_off + self.sec_insn_cnt
    }
}

/// `bpf_object__add_programs`: one program per `STT_FUNC` symbol of an
/// executable section.
pub(crate) fn add_programs(
    elf_file: &ElfFile<'_>,
    section: &Section<'_>,
    is_text: bool,
    programs: &mut Vec<BpfProgram>,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let data = section.data.unwrap_or_default();
    let sec_name = section.name.as_str();
    for sym in &elf_file.symbols {
        if sym.shndx as usize != section.index || sym.sym_type() != elf::STT_FUNC {
            continue;
        }
        let (sec_off, prog_sz) = (sym.value, sym.size);
        let Some(name) = sym.name.clone() else {
            return Err(log.fail(ObjectError::program(
                LIBBPF_ERRNO_FORMAT,
                format!("sec '{sec_name}': failed to get symbol name for offset {sec_off}"),
            )));
        };
        let end = sec_off.checked_add(prog_sz);
        if end.is_none_or(|end| end > data.len() as u64) {
            return Err(log.fail(ObjectError::program(
                LIBBPF_ERRNO_FORMAT,
                format!("sec '{sec_name}': program at offset {sec_off} crosses section boundary"),
            )));
        }
        if !is_text && sym.bind() == elf::STB_LOCAL {
            return Err(log.fail(ObjectError::program(
                ENOTSUP,
                format!("sec '{sec_name}': program '{name}' is static and not supported"),
            )));
        }
        log.debug(format!(
            "sec '{sec_name}': found program '{name}' at insn offset {} ({sec_off} bytes), code size {} insns ({prog_sz} bytes)",
            sec_off / INSN_SZ,
            prog_sz / INSN_SZ
        ));
        if prog_sz == 0 || !prog_sz.is_multiple_of(INSN_SZ) || !sec_off.is_multiple_of(INSN_SZ) {
            return Err(log.fail(ObjectError::program(
                EINVAL,
                format!(
                    "sec '{sec_name}': corrupted program '{name}', offset {sec_off}, size {prog_sz}"
                ),
            )));
        }
        let code = &data[sec_off as usize..(sec_off + prog_sz) as usize];
        let insns = Insn::decode_all(code).unwrap_or_default();
        // SEC("?abc") is SEC("abc") with autoload off.
        let (autoload, stripped) = match sec_name.strip_prefix('?') {
            Some(rest) => (false, rest),
            None => (true, sec_name),
        };
        let sym_global = sym.bind() != elf::STB_LOCAL;
        programs.push(BpfProgram {
            name,
            sec_name: stripped.to_string(),
            sec_idx: section.index,
            sec_insn_off: (sec_off / INSN_SZ) as usize,
            sec_insn_cnt: insns.len(),
            insns,
            prog_type: ProgType::UNSPEC,
            expected_attach_type: AttachType::NONE,
            sec_def: None,
            autoload,
            autoattach: true,
            is_subprog: is_text,
            sym_global,
            mark_btf_static: sym_global && sym.is_hidden(),
            relocs: Vec::new(),
            relocated: None,
        });
    }
    Ok(())
}

/// `bpf_object_init_progs`: types from the section name.
pub(crate) fn init_prog_types(programs: &mut [BpfProgram], log: &mut Logger) {
    // libbpf iterates with bpf_object__for_each_program, which skips
    // subprograms.
    for prog in programs.iter_mut().filter(|p| !p.is_subprog) {
        let Some(def) = find_sec_def(&prog.sec_name) else {
            // The caller may still set the type by hand.
            log.debug(format!(
                "prog '{}': unrecognized ELF section name '{}'",
                prog.name, prog.sec_name
            ));
            continue;
        };
        prog.sec_def = Some(def);
        prog.prog_type = def.prog_type;
        prog.expected_attach_type = def.expected_attach_type;
    }
}

/// `find_prog_by_sec_insn`: the program of section `sec_idx` that contains
/// instruction `insn_idx` of that section. `programs` is sorted by
/// `(sec_idx, sec_insn_off)`.
pub(crate) fn find_prog_by_sec_insn(
    programs: &[BpfProgram],
    sec_idx: usize,
    insn_idx: usize,
) -> Option<usize> {
    let after = programs.partition_point(|p| (p.sec_idx, p.sec_insn_off) <= (sec_idx, insn_idx));
    let candidate = after.checked_sub(1)?;
    let prog = &programs[candidate];
    (prog.sec_idx == sec_idx && prog.contains_sec_insn(insn_idx)).then_some(candidate)
}
