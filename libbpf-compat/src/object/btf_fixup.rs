//! DATASEC fix-ups in the object's own BTF (`bpf_object_fixup_btf`,
//! `btf_fixup_datasec`): clang leaves section sizes and variable offsets at
//! zero, so they are filled in from the ELF section and symbols; hidden
//! globals become static; each DATASEC's variables are sorted by offset.

use userbpf_btf_core::{Btf, BtfKind, TypeView, BTF_VAR_GLOBAL_EXTERN, BTF_VAR_STATIC};

use crate::object::btf_util::{HEAD_SIZE_WORD, HEAD_WORDS, SECINFO_WORDS};
use crate::object::elf::consts::{STB_GLOBAL, STB_WEAK, STT_OBJECT};
use crate::object::elf::{ElfFile, Symbol};
use crate::object::error::{ObjectError, EINVAL, ENOENT};
use crate::object::externs::{KCONFIG_SEC, KSYMS_SEC};
use crate::object::log::Logger;

/// Fixes every DATASEC of `btf`.
pub(crate) fn fixup_datasecs(
    btf: &mut Btf,
    elf_file: &ElfFile<'_>,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let datasecs: Vec<u32> = btf
        .own_types()
        .filter(|t| t.kind() == BtfKind::Datasec)
        .map(|t| t.id())
        .collect();
    for id in datasecs {
        fixup_datasec(btf, id, elf_file, log)?;
    }
    Ok(())
}

fn datasec_error(errno: i32, message: String, log: &mut Logger) -> ObjectError {
    // libbpf reports these at debug level only, then fails the open.
    log.debug(message.clone());
    ObjectError::datasec(errno, message)
}

/// The ELF symbol libbpf's `find_elf_var_sym` picks: a global or weak
/// `STT_OBJECT` named `name`.
fn find_var_symbol<'e>(elf_file: &'e ElfFile<'_>, name: &str) -> Option<&'e Symbol> {
    elf_file.symbols.iter().find(|sym| {
        sym.sym_type() == STT_OBJECT
            && matches!(sym.bind(), STB_GLOBAL | STB_WEAK)
            && sym.name.as_deref() == Some(name)
    })
}

fn fixup_datasec(
    btf: &mut Btf,
    id: u32,
    elf_file: &ElfFile<'_>,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let Some(t) = btf.type_by_id(id) else {
        return Ok(());
    };
    let Some(sec_name) = t.name().map(str::to_string) else {
        return Err(datasec_error(
            ENOENT,
            "No name found in string section for DATASEC kind.".to_string(),
            log,
        ));
    };
    let TypeView::Datasec(sec) = t.view() else {
        return Ok(());
    };
    let vars: Vec<(u32, u32)> = sec.vars.iter().map(|v| (v.type_id, v.offset)).collect();
    let mut new_size = None;
    let mut new_offsets: Vec<Option<u32>> = vec![None; vars.len()];
    let mut make_static = Vec::new();

    // Extern sections were laid out when externs were collected.
    if sec_name != KCONFIG_SEC && sec_name != KSYMS_SEC {
        let fixup_offsets = sec.size == 0;
        if fixup_offsets {
            let size = elf_file
                .section_by_name(&sec_name)
                .filter(|s| s.data.is_some())
                .map_or(0, |s| s.data_size());
            if size == 0 {
                return Err(datasec_error(
                    ENOENT,
                    format!(
                        "sec '{sec_name}': failed to determine size from ELF: size 0, err -ENOENT"
                    ),
                    log,
                ));
            }
            new_size = Some(size as u32);
        }
        for (i, &(var_id, _)) in vars.iter().enumerate() {
            let var = btf.type_by_id(var_id);
            let Some(TypeView::Var { linkage, .. }) = var.map(|v| v.view()) else {
                return Err(datasec_error(
                    EINVAL,
                    format!("sec '{sec_name}': unexpected non-VAR type found"),
                    log,
                ));
            };
            if linkage == BTF_VAR_STATIC || linkage == BTF_VAR_GLOBAL_EXTERN {
                continue;
            }
            let Some(var_name) = var.and_then(|v| v.name()) else {
                return Err(datasec_error(
                    ENOENT,
                    format!("sec '{sec_name}': failed to find name of DATASEC's member #{i}"),
                    log,
                ));
            };
            let Some(sym) = find_var_symbol(elf_file, var_name) else {
                return Err(datasec_error(
                    ENOENT,
                    format!("sec '{sec_name}': failed to find ELF symbol for VAR '{var_name}'"),
                    log,
                ));
            };
            if fixup_offsets {
                new_offsets[i] = Some(sym.value as u32);
            }
            // Hidden globals are static to everyone but the object.
            if sym.is_hidden() {
                make_static.push(var_id);
            }
        }
    }

    for var_id in make_static {
        btf.modify_type(var_id, |w| {
            if let Some(linkage) = w.get_mut(HEAD_WORDS) {
                *linkage = BTF_VAR_STATIC;
            }
        })
        .map_err(|e| ObjectError::datasec(e.errno(), e.to_string()))?;
    }
    btf.modify_type(id, |w| {
        if let Some(size) = new_size {
            w[HEAD_SIZE_WORD] = size;
        }
        let secinfos = &mut w[HEAD_WORDS..];
        for (i, off) in new_offsets.iter().enumerate() {
            if let (Some(off), Some(vs)) = (off, secinfos.get_mut(i * SECINFO_WORDS + 1)) {
                *vs = *off;
            }
        }
        // Sort the (type, offset, size) triples by offset.
        let mut triples: Vec<[u32; 3]> = secinfos
            .chunks_exact(SECINFO_WORDS)
            .map(|c| [c[0], c[1], c[2]])
            .collect();
        triples.sort_by_key(|t| t[1]);
        for (slot, t) in secinfos.chunks_exact_mut(SECINFO_WORDS).zip(triples) {
            slot.copy_from_slice(&t);
        }
    })
    .map_err(|e| ObjectError::datasec(e.errno(), e.to_string()))
}
