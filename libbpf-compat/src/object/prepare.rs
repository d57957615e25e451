//! The relocation half of libbpf's `bpf_object_prepare`: extern values,
//! CO-RE relocations, subprogram linking for every entry program with
//! autoload on, then map, global data and extern references
//! (`bpf_object__resolve_externs`, `bpf_object__relocate`).

use userbpf_btf_core::co_re::CoreTarget;
use userbpf_btf_core::{Btf, TypeView, BTF_FUNC_GLOBAL};
use userbpf_runtime::isa::Insn;

use crate::object::core_relo::{self, CoreInputs};
use crate::object::error::{ObjectError, EINVAL, ENOENT};
use crate::object::externs::{ExternKind, KsymExtern};
use crate::object::kconfig::{self, KernelEnv};
use crate::object::ksyms;
use crate::object::link;
use crate::object::log::Logger;
use crate::object::program::{BpfProgram, RelocatedProgram};
use crate::object::reloc::{self, cmp_relocs, RelocDesc};
use crate::object::target::{self, TargetBtf};
use crate::object::Object;

impl Object {
    /// The relocation half of `bpf_object__load`: resolves externs (kconfig
    /// values from `env`), applies CO-RE relocations against `targets` (or
    /// the `btf_custom_path` option), appends subprograms to each entry
    /// program with autoload on, and writes map, global data and extern
    /// references. Results land in [`BpfProgram::relocated`]; the object's
    /// original instructions stay as they are, so relocating again (after
    /// changing autoload, say) starts afresh.
    pub fn relocate_with(
        &mut self,
        targets: &TargetBtf,
        env: &KernelEnv,
    ) -> Result<(), ObjectError> {
        self.relocated = false;
        self.core_relos = 0;
        for prog in &mut self.programs {
            prog.relocated = None;
        }
        self.resolve_externs(targets, env)?;
        crate::object::struct_ops::adjust_autoload(&self.maps, &mut self.programs);

        // Work on copies: CO-RE patches and call offsets must not leak into
        // the next relocation.
        let mut insns: Vec<Vec<Insn>> = self.programs.iter().map(|p| p.insns.clone()).collect();
        let mut relocs: Vec<Vec<RelocDesc>> =
            self.programs.iter().map(|p| p.relocs.clone()).collect();
        let core_counts = self.relocate_core(targets, &mut insns, &mut relocs)?;
        for (prog_insns, prog_relocs) in insns.iter_mut().zip(&mut relocs) {
            prog_relocs.sort_by(cmp_relocs);
            link::mark_pseudo_funcs(prog_insns, prog_relocs);
        }
        // Like libbpf: link every program first, then relocate data.
        let mut linked = self.link_programs(&insns, &relocs)?;
        for (idx, program) in &mut linked {
            let name = &self.programs[*idx].name;
            reloc::relocate_data(
                name,
                &mut program.insns,
                &program.relocs,
                &self.maps,
                &self.externs,
                self.kconfig_map_idx,
                &mut self.log,
            )
            .inspect_err(|e| {
                self.log.warn(format!(
                    "prog '{name}': failed to relocate data references: -{}",
                    e.errno()
                ));
            })?;
        }
        for (idx, program) in linked {
            self.programs[idx].relocated = Some(RelocatedProgram {
                insns: program.insns,
                subprogs: program.subprogs,
                func_info: program.func_info,
                line_info: program.line_info,
                core_relos: core_counts[idx],
            });
        }
        self.core_relos = core_counts.iter().sum();
        self.relocated = true;
        Ok(())
    }

    /// `bpf_object__relocate_core`; returns the count applied per program.
    fn relocate_core(
        &mut self,
        targets: &TargetBtf,
        insns: &mut [Vec<Insn>],
        relocs: &mut [Vec<RelocDesc>],
    ) -> Result<Vec<usize>, ObjectError> {
        let none = vec![0; self.programs.len()];
        let (Some(btf), Some(ext)) = (self.btf.as_ref(), self.btf_ext.as_ref()) else {
            return Ok(none);
        };
        let Some(core_info) = ext.core_relo() else {
            return Ok(none);
        };
        let custom = match &self.btf_custom_path {
            Some(path) => Some(target::parse_btf_file(path, None).map_err(|e| self.log.fail(e))?),
            None => None,
        };
        // A custom BTF replaces vmlinux and module BTFs altogether.
        let core_targets = match &custom {
            Some(custom) => vec![CoreTarget::new("vmlinux", custom)],
            None => std::iter::once(CoreTarget::new("vmlinux", targets.vmlinux()))
                .chain(
                    targets
                        .modules()
                        .iter()
                        .map(|m| CoreTarget::new(m.name.as_str(), &m.btf)),
                )
                .collect(),
        };
        let names = core_info.sections().map(|s| s.sec_name_off()).collect();
        let sec_idxs = ext_section_indexes(&self.section_names, btf, names);
        let inputs = CoreInputs {
            local: btf,
            btf_ext: ext,
            sec_idxs: &sec_idxs,
            programs: &self.programs,
            targets: core_targets,
        };
        core_relo::relocate_core(inputs, insns, relocs, &mut self.log)
    }

    /// `bpf_object__relocate_calls` for every entry program with autoload
    /// on, plus its exception callback.
    fn link_programs(
        &mut self,
        insns: &[Vec<Insn>],
        relocs: &[Vec<RelocDesc>],
    ) -> Result<Vec<(usize, link::LinkedProgram)>, ObjectError> {
        let info_sections = |which: fn(&userbpf_btf_core::BtfExt) -> Option<Vec<u32>>| match (
            self.btf.as_ref(),
            self.btf_ext.as_ref(),
        ) {
            (Some(btf), Some(ext)) => {
                ext_section_indexes(&self.section_names, btf, which(ext).unwrap_or_default())
            }
            _ => Vec::new(),
        };
        let func_idxs = info_sections(|e| {
            Some(
                e.func_info()?
                    .sections()
                    .map(|s| s.sec_name_off())
                    .collect(),
            )
        });
        let line_idxs = info_sections(|e| {
            Some(
                e.line_info()?
                    .sections()
                    .map(|s| s.sec_name_off())
                    .collect(),
            )
        });
        let inputs = link::LinkInputs {
            programs: &self.programs,
            insns,
            relocs,
            text_shndx: self.text_shndx,
            btf_ext: self.btf_ext.as_ref(),
            ext_sec_idxs: [&func_idxs, &line_idxs],
        };
        let mut linked = Vec::new();
        for (idx, prog) in self.programs.iter().enumerate() {
            if prog.is_subprog || !prog.autoload {
                continue;
            }
            let btf = self.btf.as_ref();
            let programs = &self.programs;
            let exception_cb = |log: &mut Logger| find_exception_callback(btf, programs, idx, log);
            linked.push((
                idx,
                link::link_program(&inputs, idx, exception_cb, &mut self.log)?,
            ));
        }
        Ok(linked)
    }

    /// `bpf_object__resolve_externs`.
    fn resolve_externs(&mut self, targets: &TargetBtf, env: &KernelEnv) -> Result<(), ObjectError> {
        if self.externs.is_empty() {
            return Ok(());
        }
        for ext in &mut self.externs {
            ext.is_set = false;
            if let ExternKind::Ksym(k) = &mut ext.kind {
                *k = KsymExtern {
                    type_id: k.type_id,
                    is_func: k.is_func,
                    ..KsymExtern::default()
                };
            }
        }
        let mut kcfg_data = self
            .kconfig_map_idx
            .map(|i| vec![0u8; self.maps[i].def.value_size as usize])
            .unwrap_or_default();
        kconfig::resolve_kconfig_externs(
            &mut self.externs,
            &mut kcfg_data,
            env,
            self.kconfig.as_deref(),
            &mut self.log,
        )?;
        if let Some(i) = self.kconfig_map_idx {
            self.maps[i].initial_data = Some(kcfg_data);
        }
        let needs_btf = self
            .externs
            .iter()
            .any(|e| matches!(&e.kind, ExternKind::Ksym(k) if k.type_id != 0));
        if needs_btf {
            if let Some(btf) = self.btf.as_ref() {
                ksyms::resolve_ksyms(btf, &mut self.externs, targets, &mut self.log)?;
            }
        }
        kconfig::check_externs_resolved(&self.externs, &mut self.log)
    }
}

/// The ELF section index of each `.BTF.ext` block, by its name (libbpf's
/// `sec_idxs`, from `elf_sec_by_name`: the first section so named).
fn ext_section_indexes(
    section_names: &[String],
    btf: &Btf,
    name_offs: Vec<u32>,
) -> Vec<Option<usize>> {
    name_offs
        .into_iter()
        .map(|off| {
            let name = btf.name_by_offset(off).filter(|n| !n.is_empty())?;
            section_names
                .iter()
                .skip(1)
                .position(|s| s == name)
                .map(|i| i + 1)
        })
        .collect()
}

/// libbpf's `bpf_prog_assign_exc_cb`: a global function tagged
/// `exception_callback:<name>` names the subprogram to append for it.
fn find_exception_callback(
    btf: Option<&Btf>,
    programs: &[BpfProgram],
    prog_idx: usize,
    log: &mut Logger,
) -> Result<Option<usize>, ObjectError> {
    const PREFIX: &str = "exception_callback:";
    let Some(btf) = btf else { return Ok(None) };
    let prog = &programs[prog_idx];
    let mut found: Option<usize> = None;
    for t in btf.own_types() {
        let TypeView::DeclTag {
            target,
            component_idx: -1,
        } = t.view()
        else {
            continue;
        };
        let Some(value) = t.name().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let func = btf.type_by_id(target);
        let is_global_func = matches!(func.map(|f| f.view()), Some(TypeView::Func { linkage, .. }) if linkage == BTF_FUNC_GLOBAL);
        if !is_global_func {
            return Err(log.fail(ObjectError::program(
                EINVAL,
                format!("prog '{}': exception_callback:<value> decl tag not applied to the main program", prog.name),
            )));
        }
        if func.and_then(|f| f.name()) != Some(prog.name.as_str()) {
            continue;
        }
        // Several callbacks for one program: the verifier will refuse it.
        if found.is_some() {
            found = None;
            break;
        }
        if value.is_empty() {
            return Err(log.fail(ObjectError::program(
                EINVAL,
                format!(
                    "prog '{}': exception_callback:<value> decl tag contains empty value",
                    prog.name
                ),
            )));
        }
        for (j, sub) in programs.iter().enumerate() {
            if !sub.is_subprog || sub.name != value {
                continue;
            }
            if !sub.sym_global || sub.mark_btf_static {
                return Err(log.fail(ObjectError::program(
                    EINVAL,
                    format!(
                        "prog '{}': exception callback {} must be a global non-hidden function",
                        prog.name, sub.name
                    ),
                )));
            }
            if found.is_some() {
                return Err(log.fail(ObjectError::program(
                    EINVAL,
                    format!(
                        "prog '{}': multiple subprogs with same name as exception callback '{}'",
                        prog.name, sub.name
                    ),
                )));
            }
            found = Some(j);
            break;
        }
        if found.is_none() {
            return Err(log.fail(ObjectError::program(
                ENOENT,
                format!(
                    "prog '{}': cannot find exception callback '{value}'",
                    prog.name
                ),
            )));
        }
    }
    Ok(found)
}
