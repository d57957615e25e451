//! Resolution of `__ksym` externs against the kernel's BTF
//! (`bpf_object__resolve_ksyms_btf_id`): typed variables to the id of the
//! kernel's VAR, kfuncs to the id of the kernel's FUNC, both checked for
//! type compatibility. Typeless ksyms (`extern const void x __ksym`) need
//! addresses from `/proc/kallsyms`, which this loader does not read: they
//! stay unresolved (weak ones read as 0, strong ones fail the relocation).

use userbpf_btf_core::co_re::types_are_compat;
use userbpf_btf_core::{Btf, BtfKind};

use crate::object::error::{ObjectError, EINVAL};
use crate::object::externs::{Extern, ExternKind};
use crate::object::log::Logger;
use crate::object::target::TargetBtf;

/// A kernel type found for a ksym: which BTF (None: vmlinux, else a module
/// index) and the id.
struct Found<'t> {
    btf: &'t Btf,
    module: Option<usize>,
    id: u32,
}

/// libbpf's `find_ksym_btf_id`: vmlinux first, then each module's own types.
fn find_ksym<'t>(targets: &'t TargetBtf, name: &str, kind: BtfKind) -> Option<Found<'t>> {
    if let Some(id) = targets
        .vmlinux()
        .find_by_name_kind(name, kind)
        .filter(|&id| id > 0)
    {
        return Some(Found {
            btf: targets.vmlinux(),
            module: None,
            id,
        });
    }
    targets.modules().iter().enumerate().find_map(|(i, m)| {
        let id = m.btf.find_by_name_kind_own(name, kind)?;
        (id > 0).then_some(Found {
            btf: &m.btf,
            module: Some(i),
            id,
        })
    })
}

fn type_desc(btf: &Btf, id: u32) -> (String, String) {
    match btf.type_by_id(id) {
        Some(t) => (
            t.kind().name().to_string(),
            t.name().unwrap_or("").to_string(),
        ),
        None => ("unknown".to_string(), String::new()),
    }
}

/// Resolves the typed ksyms of `externs`. Module BTFs used by kfuncs get
/// fd-array slots from 1 in order of first use, as in libbpf.
pub(crate) fn resolve_ksyms(
    local: &Btf,
    externs: &mut [Extern],
    targets: &TargetBtf,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let mut module_slots: Vec<usize> = Vec::new();
    for ext in externs.iter_mut() {
        let name = ext.name.clone();
        let is_weak = ext.is_weak;
        let lookup_name = ext.essent_name.clone().unwrap_or_else(|| name.clone());
        let ExternKind::Ksym(ksym) = &mut ext.kind else {
            continue;
        };
        if ksym.type_id == 0 {
            log.debug(format!(
                "extern (ksym) '{name}': typeless ksyms need /proc/kallsyms, which is not read; left unresolved"
            ));
            continue;
        }
        if !ksym.is_func {
            let Some(found) = find_ksym(targets, &name, BtfKind::Var) else {
                if is_weak {
                    continue;
                }
                return Err(log.fail(ObjectError::extern_(
                    EINVAL,
                    format!("extern (var ksym) '{name}': not found in kernel BTF"),
                )));
            };
            let targ_var = found.btf.type_by_id(found.id);
            let targ_type = targ_var
                .and_then(|v| v.referenced_type())
                .and_then(|t| found.btf.skip_mods_and_typedefs(t))
                .map_or(0, |t| t.id());
            let compat =
                types_are_compat(local, ksym.type_id, found.btf, targ_type).unwrap_or(false);
            if !compat {
                let (lkind, lname) = type_desc(local, ksym.type_id);
                let (tkind, tname) = type_desc(found.btf, targ_type);
                return Err(log.fail(ObjectError::extern_(
                    EINVAL,
                    format!(
                        "extern (var ksym) '{name}': incompatible types, expected [{}] {lkind} {lname}, but kernel has [{targ_type}] {tkind} {tname}",
                        ksym.type_id
                    ),
                )));
            }
            ksym.kernel_btf_id = found.id;
            ksym.kernel_btf_module = found.module.map(|i| targets.modules()[i].name.clone());
            ext.is_set = true;
            let (kind, vname) = type_desc(found.btf, found.id);
            log.debug(format!(
                "extern (var ksym) '{name}': resolved to [{}] {kind} {vname}",
                found.id
            ));
            continue;
        }
        let Some(found) = find_ksym(targets, &lookup_name, BtfKind::Func) else {
            if is_weak {
                continue;
            }
            return Err(log.fail(ObjectError::extern_(
                EINVAL,
                format!("extern (func ksym) '{name}': not found in kernel or module BTFs"),
            )));
        };
        let kfunc_proto = found
            .btf
            .type_by_id(found.id)
            .and_then(|f| f.referenced_type())
            .unwrap_or(0);
        let compat = types_are_compat(local, ksym.type_id, found.btf, kfunc_proto).unwrap_or(false);
        let where_ = found
            .module
            .map_or("vmlinux".to_string(), |i| targets.modules()[i].name.clone());
        if !compat {
            if is_weak {
                continue;
            }
            return Err(log.fail(ObjectError::extern_(
                EINVAL,
                format!(
                    "extern (func ksym) '{name}': func_proto [{}] incompatible with {where_} [{kfunc_proto}]",
                    ksym.type_id
                ),
            )));
        }
        ksym.btf_fd_idx = match found.module {
            None => 0,
            Some(m) => {
                let slot = match module_slots.iter().position(|&s| s == m) {
                    Some(pos) => pos + 1,
                    None => {
                        module_slots.push(m);
                        module_slots.len()
                    }
                };
                i16::try_from(slot).unwrap_or(i16::MAX)
            }
        };
        ksym.kernel_btf_id = found.id;
        ksym.kernel_btf_module = found.module.map(|i| targets.modules()[i].name.clone());
        ext.is_set = true;
        log.debug(format!(
            "extern (func ksym) '{name}': resolved to {where_} [{}]",
            found.id
        ));
    }
    Ok(())
}
