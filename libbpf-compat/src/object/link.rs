//! Subprogram linking: each entry program gets its own copy of every
//! `.text` function it reaches through bpf-to-bpf calls or function
//! pointers, appended depth-first in the order calls are met, with call
//! offsets rewritten to the copies (`bpf_object__relocate_calls`,
//! `bpf_object__reloc_code`, `bpf_object__append_subprog_code`), and the
//! `.BTF.ext` func_info and line_info of every copied function carried over
//! with adjusted instruction offsets (`reloc_prog_func_and_line_info`,
//! `adjust_prog_btf_ext_info`).

use userbpf_btf_core::{BtfExt, ExtInfo, KernelRecord};
use userbpf_runtime::isa::{Insn, BPF_JMP, BPF_K, BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC};

use crate::object::error::{ObjectError, ENOENT, LIBBPF_ERRNO_RELOC};
use crate::object::log::Logger;
use crate::object::program::{
    find_prog_by_sec_insn, BpfProgram, ExtInfoRecords, SubprogPlacement, INSN_SZ,
};
use crate::object::reloc::{find_insn_relo, RelocDesc, RelocKind};

/// libbpf's `insn_is_subprog_call`.
fn is_subprog_call(insn: &Insn) -> bool {
    insn.class() == BPF_JMP
        && insn.op() == userbpf_runtime::isa::BPF_CALL
        && insn.source() == BPF_K
        && insn.src == BPF_PSEUDO_CALL
        && insn.dst == 0
        && insn.off == 0
}

/// libbpf's `insn_is_pseudo_func`.
fn is_pseudo_func(insn: &Insn) -> bool {
    insn.is_lddw() && insn.src == BPF_PSEUDO_FUNC
}

/// Everything the linker reads about the object.
pub(crate) struct LinkInputs<'a> {
    /// All programs, sorted by (section, offset); subprograms included.
    pub programs: &'a [BpfProgram],
    /// Each program's instructions after CO-RE, indexed like `programs`.
    pub insns: &'a [Vec<Insn>],
    /// Each program's relocations after CO-RE, sorted.
    pub relocs: &'a [Vec<RelocDesc>],
    pub text_shndx: Option<usize>,
    pub btf_ext: Option<&'a BtfExt>,
    /// ELF section index of each `.BTF.ext` section block's name, per
    /// subsection: `[func_info, line_info]`, in block order.
    pub ext_sec_idxs: [&'a [Option<usize>]; 2],
}

/// func_info or line_info being gathered for one entry program.
#[derive(Default)]
struct InfoBuild {
    /// `None` until the first (sub)program contributed; stays `None` if the
    /// entry program itself has none (then the rest is skipped, as libbpf).
    records: Option<ExtInfoRecords>,
}

/// One entry program being linked.
pub(crate) struct LinkedProgram {
    pub insns: Vec<Insn>,
    /// The entry program's relocations followed by those of each appended
    /// subprogram, shifted to the subprogram's position.
    pub relocs: Vec<RelocDesc>,
    pub subprogs: Vec<SubprogPlacement>,
    pub func_info: Option<ExtInfoRecords>,
    pub line_info: Option<ExtInfoRecords>,
}

struct Linker<'a, 'l> {
    inputs: &'a LinkInputs<'a>,
    main_idx: usize,
    /// Where each program sits in `insns`; 0 means "not appended yet"
    /// (the entry program itself is at 0 too, and never called).
    sub_insn_off: Vec<usize>,
    insns: Vec<Insn>,
    relocs: Vec<RelocDesc>,
    subprogs: Vec<SubprogPlacement>,
    func_info: InfoBuild,
    line_info: InfoBuild,
    log: &'l mut Logger,
}

fn reloc_error(message: String) -> ObjectError {
    ObjectError::reloc(LIBBPF_ERRNO_RELOC, message)
}

impl Linker<'_, '_> {
    fn prog(&self, idx: usize) -> &BpfProgram {
        &self.inputs.programs[idx]
    }

    /// `bpf_object__append_subprog_code`.
    fn append_subprog(&mut self, sub_idx: usize) {
        let at = self.insns.len();
        self.sub_insn_off[sub_idx] = at;
        self.insns.extend_from_slice(&self.inputs.insns[sub_idx]);
        let sub = &self.inputs.programs[sub_idx];
        self.log.debug(format!(
            "prog '{}': added {} insns from sub-prog '{}'",
            self.inputs.programs[self.main_idx].name,
            self.inputs.insns[sub_idx].len(),
            sub.name
        ));
        if sub_idx != self.main_idx {
            self.relocs
                .extend(self.inputs.relocs[sub_idx].iter().map(|r| RelocDesc {
                    insn_idx: r.insn_idx + at,
                    kind: r.kind.clone(),
                }));
        }
        self.subprogs.push(SubprogPlacement {
            name: sub.name.clone(),
            sec_insn_off: sub.sec_insn_off,
            insn_off: at,
        });
    }

    /// `bpf_object__reloc_code` for program `prog_idx` (the entry program
    /// or an appended subprogram).
    fn reloc_code(&mut self, prog_idx: usize) -> Result<(), ObjectError> {
        self.reloc_func_and_line_info(prog_idx)?;
        let prog_off = self.sub_insn_off[prog_idx];
        let (sec_insn_off, sec_insn_cnt) = {
            let p = self.prog(prog_idx);
            (p.sec_insn_off, p.insns.len())
        };
        for insn_idx in 0..sec_insn_cnt {
            let insn = self.insns[prog_off + insn_idx];
            if !is_subprog_call(&insn) && !is_pseudo_func(&insn) {
                continue;
            }
            let pname = self.prog(prog_idx).name.clone();
            let relo = find_insn_relo(&self.inputs.relocs[prog_idx], insn_idx);
            let sub_insn_idx: i64 = match relo.map(|r| &r.kind) {
                // kfunc calls are relocated with the data.
                Some(RelocKind::ExternCall { .. }) => continue,
                Some(RelocKind::Call { sym_off }) => {
                    (*sym_off / INSN_SZ) as i64 + i64::from(insn.imm) + 1
                }
                Some(RelocKind::SubprogAddr { sym_off }) => {
                    ((i128::from(*sym_off) + i128::from(insn.imm)) / i128::from(INSN_SZ)) as i64
                }
                Some(other) => {
                    return Err(reloc_error(format!(
                        "prog '{pname}': unexpected relo for insn #{insn_idx}, type {}",
                        other.libbpf_type()
                    )))
                }
                None if is_pseudo_func(&insn) => {
                    return Err(reloc_error(format!(
                        "prog '{pname}': missing subprog addr relo for insn #{insn_idx}"
                    )))
                }
                // A static function of the same section: imm is relative
                // to the call's position in the section.
                None => (sec_insn_off + insn_idx) as i64 + i64::from(insn.imm) + 1,
            };
            // Sub-programs must live in .text.
            let subprog = match (self.inputs.text_shndx, usize::try_from(sub_insn_idx)) {
                (Some(text), Ok(idx)) => find_prog_by_sec_insn(self.inputs.programs, text, idx),
                _ => None,
            };
            let Some(sub_idx) = subprog else {
                return Err(reloc_error(format!(
                    "prog '{pname}': no .text section found yet sub-program call exists"
                )));
            };
            if self.sub_insn_off[sub_idx] == 0 {
                self.append_subprog(sub_idx);
                self.reloc_code(sub_idx)?;
            }
            let target = self.sub_insn_off[sub_idx] as i64;
            let imm = target - (prog_off + insn_idx) as i64 - 1;
            self.insns[prog_off + insn_idx].imm = imm as i32;
            self.log.debug(format!(
                "prog '{pname}': insn #{insn_idx} relocated, imm {imm} points to subprog '{}' (now at {target} offset)",
                self.prog(sub_idx).name
            ));
        }
        Ok(())
    }

    /// `reloc_prog_func_and_line_info`.
    fn reloc_func_and_line_info(&mut self, prog_idx: usize) -> Result<(), ObjectError> {
        let Some(ext) = self.inputs.btf_ext else {
            return Ok(());
        };
        let is_main = prog_idx == self.main_idx;
        let pname = self.prog(prog_idx).name.clone();
        let sections = [
            (
                "function",
                ext.func_info()
                    .map(|i| InfoSource::new(&i, self.inputs.ext_sec_idxs[0])),
            ),
            (
                "line",
                ext.line_info()
                    .map(|i| InfoSource::new(&i, self.inputs.ext_sec_idxs[1])),
            ),
        ];
        for (which, (what, source)) in sections.into_iter().enumerate() {
            let build = if which == 0 {
                &mut self.func_info
            } else {
                &mut self.line_info
            };
            // Only carry subprogram info if the entry program had some.
            if !is_main && build.records.is_none() {
                continue;
            }
            let prog = &self.inputs.programs[prog_idx];
            let result = match &source {
                Some(source) => source.append(prog, self.sub_insn_off[prog_idx], build),
                None => Err(ENOENT),
            };
            match result {
                Ok(()) => {}
                Err(_) if build.records.is_some() => {
                    let message = format!("prog '{pname}': missing .BTF.ext {what} info.");
                    self.log.warn(message.clone());
                    return Err(ObjectError::BtfExtInfo {
                        message,
                        errno: ENOENT,
                    });
                }
                Err(_) => {
                    self.log.warn(format!(
                        "prog '{pname}': missing .BTF.ext {what} info for the main program, skipping all of .BTF.ext {what} info."
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One func_info or line_info subsection, with its blocks' ELF sections.
struct InfoSource<'a> {
    record_size: u32,
    /// (ELF section index, raw records) per block.
    blocks: Vec<(Option<usize>, &'a [u8])>,
}

impl<'a> InfoSource<'a> {
    fn new<R: KernelRecord>(info: &ExtInfo<'a, R>, sec_idxs: &[Option<usize>]) -> InfoSource<'a> {
        InfoSource {
            record_size: info.record_size(),
            blocks: info
                .sections()
                .enumerate()
                .map(|(i, s)| (sec_idxs.get(i).copied().flatten(), s.raw_records()))
                .collect(),
        }
    }

    /// `adjust_prog_btf_ext_info`: appends `prog`'s records, converted to
    /// instruction offsets in the linked program. `Err(ENOENT)` if it has
    /// none.
    fn append(
        &self,
        prog: &BpfProgram,
        sub_insn_off: usize,
        build: &mut InfoBuild,
    ) -> Result<(), i32> {
        let rec_size = self.record_size as usize;
        if rec_size < 4 {
            return Err(ENOENT);
        }
        let first = prog.sec_insn_off;
        let end = first + prog.sec_insn_cnt;
        for (sec_idx, records) in &self.blocks {
            if *sec_idx != Some(prog.sec_idx) {
                continue;
            }
            let insn_off =
                |r: &[u8]| u32::from_ne_bytes([r[0], r[1], r[2], r[3]]) as usize / INSN_SZ as usize;
            let mut copy: Option<(usize, usize)> = None;
            for (i, rec) in records.chunks_exact(rec_size).enumerate() {
                let off = insn_off(rec);
                if off < first {
                    continue;
                }
                if off >= end {
                    break;
                }
                copy = Some((copy.map_or(i, |c| c.0), i + 1));
            }
            let Some((from, to)) = copy else {
                return Err(ENOENT);
            };
            let out = build.records.get_or_insert_with(|| ExtInfoRecords {
                record_size: self.record_size,
                bytes: Vec::new(),
            });
            let adj = sub_insn_off as i64 - first as i64;
            for rec in records[from * rec_size..to * rec_size].chunks_exact(rec_size) {
                let off = (insn_off(rec) as i64 + adj) as u32;
                out.bytes.extend_from_slice(&off.to_ne_bytes());
                out.bytes.extend_from_slice(&rec[4..]);
            }
            return Ok(());
        }
        Err(ENOENT)
    }
}

/// Links entry program `main_idx`: appends the subprograms it reaches
/// and fixes call offsets; then asks `exception_cb` (libbpf's
/// `bpf_prog_assign_exc_cb`, which runs at this point) for the program's
/// exception callback and appends it too if nothing called it.
pub(crate) fn link_program(
    inputs: &LinkInputs<'_>,
    main_idx: usize,
    exception_cb: impl FnOnce(&mut Logger) -> Result<Option<usize>, ObjectError>,
    log: &mut Logger,
) -> Result<LinkedProgram, ObjectError> {
    let mut linker = Linker {
        inputs,
        main_idx,
        sub_insn_off: vec![0; inputs.programs.len()],
        insns: inputs.insns[main_idx].clone(),
        relocs: inputs.relocs[main_idx].clone(),
        subprogs: Vec::new(),
        func_info: InfoBuild::default(),
        line_info: InfoBuild::default(),
        log,
    };
    linker.reloc_code(main_idx).inspect_err(|e| {
        linker.log.warn(format!(
            "prog '{}': failed to relocate calls: -{}",
            inputs.programs[main_idx].name,
            e.errno()
        ));
    })?;
    if let Some(cb) = exception_cb(linker.log)? {
        // Calling the exception callback directly is the verifier's
        // problem; append it unless something already did.
        if linker.sub_insn_off[cb] == 0 {
            linker.append_subprog(cb);
            linker.reloc_code(cb)?;
        }
    }
    Ok(LinkedProgram {
        insns: linker.insns,
        relocs: linker.relocs,
        subprogs: linker.subprogs,
        func_info: linker.func_info.records,
        line_info: linker.line_info.records,
    })
}

/// Marks the `lddw` of every function-address relocation as
/// `BPF_PSEUDO_FUNC`, so the linker recognises it (libbpf does this before
/// relocating calls).
pub(crate) fn mark_pseudo_funcs(insns: &mut [Insn], relocs: &[RelocDesc]) {
    for relo in relocs {
        if matches!(relo.kind, RelocKind::SubprogAddr { .. }) {
            if let Some(insn) = insns.get_mut(relo.insn_idx) {
                insn.src = BPF_PSEUDO_FUNC;
            }
        }
    }
}
