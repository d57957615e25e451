//! `extern` variables and functions: `__kconfig` externs (values libbpf
//! fills in from the kernel config and a few virtual `LINUX_*` names, in
//! the `.kconfig` internal map) and `__ksym` externs (kernel variables and
//! kfuncs, resolved to BTF ids of the running kernel). Collection follows
//! `bpf_object__collect_externs`, resolution `bpf_object__resolve_externs`.

use std::cmp::Ordering;

use userbpf_btf_core::co_re::essential_name_len;
use userbpf_btf_core::{
    Btf, BtfKind, TypeView, BTF_FUNC_EXTERN, BTF_VAR_GLOBAL_ALLOCATED, BTF_VAR_GLOBAL_EXTERN,
};

use crate::object::btf_util::{HEAD_SIZE_WORD, HEAD_WORDS, SECINFO_WORDS};
use crate::object::elf::consts::STB_WEAK;
use crate::object::elf::{ElfFile, SYM_ENTRY_SIZE};
use crate::object::error::{
    ObjectError, E2BIG, EINVAL, ENOENT, ENOTSUP, ESRCH, LIBBPF_ERRNO_FORMAT,
};
use crate::object::log::Logger;

/// The section of `__kconfig` externs.
pub const KCONFIG_SEC: &str = ".kconfig";
/// The section of `__ksym` externs.
pub const KSYMS_SEC: &str = ".ksyms";

/// What C type a kconfig extern has (libbpf's `enum kcfg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KcfgType {
    /// `bool` (1 byte): `y` or `n`.
    Bool,
    /// `enum libbpf_tristate`: `y`, `n` or `m`.
    Tristate,
    /// A 1-byte integer: a number or a `y`/`n`/`m` character.
    Char,
    /// A 2-, 4- or 8-byte integer.
    Int,
    /// `char[N]`: a quoted string.
    CharArray,
}

/// A `__kconfig` extern's place in the `.kconfig` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KconfigExtern {
    pub kcfg_type: KcfgType,
    pub size: u32,
    pub align: u32,
    pub is_signed: bool,
    /// Byte offset of the value in the `.kconfig` map.
    pub data_off: u32,
}

/// A `__ksym` extern, and what it resolved to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KsymExtern {
    /// The local BTF type (after modifiers and typedefs) of a typed
    /// variable, or the FUNC_PROTO of a kfunc; 0 for a typeless ksym
    /// (`extern const void x __ksym`), which needs `/proc/kallsyms`.
    pub type_id: u32,
    pub is_func: bool,
    /// Once resolved: the id in the kernel's BTF.
    pub kernel_btf_id: u32,
    /// Once resolved in a module's BTF: the module's name (`None` for
    /// vmlinux).
    pub kernel_btf_module: Option<String>,
    /// Index of the module BTF in the kfunc fd array (0 for vmlinux), what
    /// libbpf puts in a kfunc call's `off`.
    pub btf_fd_idx: i16,
    /// A typeless ksym's address.
    pub addr: u64,
}

/// Which kind of extern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternKind {
    Kconfig(KconfigExtern),
    Ksym(KsymExtern),
}

/// One `extern` of the object (libbpf's `struct extern_desc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extern {
    pub(crate) name: String,
    /// The name without its `___flavor` suffix, if it has one.
    pub(crate) essent_name: Option<String>,
    pub(crate) sym_idx: usize,
    pub(crate) btf_id: u32,
    pub(crate) sec_btf_id: u32,
    pub(crate) is_weak: bool,
    pub(crate) kind: ExternKind,
    /// Resolved (a value was found); unresolved weak externs read as zero.
    pub(crate) is_set: bool,
}

impl Extern {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_weak(&self) -> bool {
        self.is_weak
    }

    pub fn kind(&self) -> &ExternKind {
        &self.kind
    }

    /// Whether relocation found a value for it.
    pub fn is_resolved(&self) -> bool {
        self.is_set
    }

    fn type_rank(&self) -> u8 {
        match self.kind {
            ExternKind::Kconfig(_) => 1,
            ExternKind::Ksym(_) => 2,
        }
    }

    pub(crate) fn kcfg(&self) -> Option<&KconfigExtern> {
        match &self.kind {
            ExternKind::Kconfig(k) => Some(k),
            ExternKind::Ksym(_) => None,
        }
    }
}

/// libbpf's `cmp_externs`: kconfig before ksyms; kconfig by descending
/// alignment then ascending size; then by name.
fn cmp_externs(a: &Extern, b: &Extern) -> Ordering {
    a.type_rank()
        .cmp(&b.type_rank())
        .then_with(|| match (&a.kind, &b.kind) {
            (ExternKind::Kconfig(x), ExternKind::Kconfig(y)) => {
                y.align.cmp(&x.align).then(x.size.cmp(&y.size))
            }
            _ => Ordering::Equal,
        })
        .then_with(|| a.name.cmp(&b.name))
}

/// `find_extern_btf_id`: the first VAR or FUNC named `name`, which must be
/// an extern. Errors are libbpf's negative codes, as it prints them.
fn find_extern_btf_id(btf: Option<&Btf>, name: &str) -> Result<u32, i32> {
    let Some(btf) = btf else { return Err(-ESRCH) };
    for t in btf.own_types() {
        let linkage = match t.view() {
            TypeView::Var { linkage, .. } => linkage == BTF_VAR_GLOBAL_EXTERN,
            TypeView::Func { linkage, .. } => linkage == BTF_FUNC_EXTERN,
            _ => continue,
        };
        if t.name() != Some(name) {
            continue;
        }
        return if linkage { Ok(t.id()) } else { Err(-EINVAL) };
    }
    Err(-ENOENT)
}

/// `find_extern_sec_btf_id`: the DATASEC listing the extern.
fn find_extern_sec_btf_id(btf: &Btf, ext_btf_id: u32) -> Result<u32, i32> {
    btf.own_types()
        .find(|t| match t.view() {
            TypeView::Datasec(sec) => sec.vars.iter().any(|v| v.type_id == ext_btf_id),
            _ => false,
        })
        .map(|t| t.id())
        .ok_or(-ENOENT)
}

/// `find_kcfg_type`.
fn find_kcfg_type(btf: &Btf, type_id: u32) -> Option<(KcfgType, bool)> {
    let t = btf.skip_mods_and_typedefs(type_id)?;
    match t.view() {
        TypeView::Int(info) => {
            if info.is_bool() {
                return (info.size == 1).then_some((KcfgType::Bool, false));
            }
            let signed = info.is_signed();
            if info.size == 1 {
                return Some((KcfgType::Char, signed));
            }
            if !(1..=8).contains(&info.size) || !info.size.is_power_of_two() {
                return None;
            }
            Some((KcfgType::Int, signed))
        }
        TypeView::Enum(e) => (e.size == 4 && t.name() == Some("libbpf_tristate"))
            .then_some((KcfgType::Tristate, false)),
        TypeView::Enum64(_) => {
            (t.name() == Some("libbpf_tristate")).then_some((KcfgType::Tristate, false))
        }
        TypeView::Array(a) => {
            if a.nelems == 0 {
                return None;
            }
            match find_kcfg_type(btf, a.elem_type)? {
                (KcfgType::Char, _) => Some((KcfgType::CharArray, false)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `bpf_object__collect_externs`: every undefined global symbol, described
/// from its BTF, sorted like libbpf, with the `.kconfig` and `.ksyms`
/// DATASECs laid out (their sizes and variable offsets written into `btf`).
pub(crate) fn collect_externs(
    elf_file: &ElfFile<'_>,
    btf: Option<&mut Btf>,
    log: &mut Logger,
) -> Result<Vec<Extern>, ObjectError> {
    let symtab = &elf_file.sections[elf_file.symtab_index];
    if symtab.entsize != SYM_ENTRY_SIZE {
        return Err(log.fail(ObjectError::extern_(
            LIBBPF_ERRNO_FORMAT,
            format!("elf: invalid symbol table entry size {}", symtab.entsize),
        )));
    }
    log.debug(format!(
        "looking for externs among {} symbols...",
        elf_file.symbols.len()
    ));
    let mut externs = Vec::new();
    let mut kcfg_sec = None;
    let mut ksym_sec = None;
    for (sym_idx, sym) in elf_file.symbols.iter().enumerate() {
        if !sym.is_extern() {
            continue;
        }
        let Some(ext_name) = sym.name.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        let btf_ref = btf.as_deref();
        let btf_id = find_extern_btf_id(btf_ref, ext_name).map_err(|err| {
            log.fail(ObjectError::extern_(
                -err,
                format!("failed to find BTF for extern '{ext_name}': {err}"),
            ))
        })?;
        // Found by id above, so the BTF exists.
        let Some(btf_ref) = btf_ref else {
            return Err(ObjectError::BtfRequired { errno: ENOENT });
        };
        let Some(t) = btf_ref.type_by_id(btf_id) else {
            return Err(ObjectError::BtfRequired { errno: ENOENT });
        };
        let is_func = t.kind() == BtfKind::Func;
        let name = t.name().unwrap_or(ext_name).to_string();
        let essent_len = essential_name_len(name.as_bytes());
        let essent_name = (essent_len != name.len()).then(|| name[..essent_len].to_string());
        let sec_btf_id = find_extern_sec_btf_id(btf_ref, btf_id).map_err(|err| {
            log.fail(ObjectError::extern_(
                -err,
                format!("failed to find BTF for extern '{ext_name}' [{btf_id}] section: {err}"),
            ))
        })?;
        let sec_name = btf_ref
            .type_by_id(sec_btf_id)
            .and_then(|s| s.name())
            .unwrap_or("");
        let target = t.raw().size_or_type;
        let kind = if sec_name == KCONFIG_SEC {
            if is_func {
                return Err(log.fail(ObjectError::extern_(
                    ENOTSUP,
                    format!("extern function {name} is unsupported under {KCONFIG_SEC} section"),
                )));
            }
            kcfg_sec = Some(sec_btf_id);
            let size = match btf_ref.resolve_size(target) {
                Ok(size) if size > 0 => size,
                Ok(size) => {
                    return Err(log.fail(ObjectError::extern_(
                        EINVAL,
                        format!("failed to resolve size of extern (kcfg) '{ext_name}': {size}"),
                    )))
                }
                Err(e) => {
                    return Err(log.fail(ObjectError::extern_(
                        e.errno(),
                        format!(
                            "failed to resolve size of extern (kcfg) '{ext_name}': -{}",
                            e.errno()
                        ),
                    )))
                }
            };
            let align = btf_ref.align_of(target).map_err(|e| {
                log.fail(ObjectError::extern_(
                    EINVAL,
                    format!(
                        "failed to determine alignment of extern (kcfg) '{ext_name}': -{}",
                        e.errno()
                    ),
                ))
            })?;
            let Some((kcfg_type, is_signed)) = find_kcfg_type(btf_ref, target) else {
                return Err(log.fail(ObjectError::extern_(
                    ENOTSUP,
                    format!("extern (kcfg) '{ext_name}': type is unsupported"),
                )));
            };
            ExternKind::Kconfig(KconfigExtern {
                kcfg_type,
                size,
                align,
                is_signed,
                data_off: 0,
            })
        } else if sec_name == KSYMS_SEC {
            ksym_sec = Some(sec_btf_id);
            let type_id = btf_ref.skip_mods_and_typedefs(target).map_or(0, |t| t.id());
            ExternKind::Ksym(KsymExtern {
                type_id,
                is_func,
                ..KsymExtern::default()
            })
        } else {
            return Err(log.fail(ObjectError::extern_(
                ENOTSUP,
                format!("unrecognized extern section '{sec_name}'"),
            )));
        };
        externs.push(Extern {
            name,
            essent_name,
            sym_idx,
            btf_id,
            sec_btf_id,
            is_weak: sym.bind() == STB_WEAK,
            kind,
            is_set: false,
        });
    }
    log.debug(format!("collected {} externs total", externs.len()));
    if externs.is_empty() {
        return Ok(externs);
    }
    externs.sort_by(cmp_externs);
    let Some(btf) = btf else {
        return Ok(externs);
    };
    if let Some(sec_id) = ksym_sec {
        for (i, ext) in externs.iter().enumerate() {
            if matches!(ext.kind, ExternKind::Ksym(_)) {
                log.debug(format!(
                    "extern (ksym) #{i}: symbol {}, name {}",
                    ext.sym_idx, ext.name
                ));
            }
        }
        layout_ksyms_datasec(btf, sec_id, &externs, log)?;
    }
    if let Some(sec_id) = kcfg_sec {
        let mut off = 0u32;
        for (i, ext) in externs.iter_mut().enumerate() {
            let ExternKind::Kconfig(kcfg) = &mut ext.kind else {
                continue;
            };
            let placed = off
                .checked_next_multiple_of(kcfg.align.max(1))
                .and_then(|data_off| Some((data_off, data_off.checked_add(kcfg.size)?)));
            let Some((data_off, end)) = placed else {
                return Err(log.fail(ObjectError::extern_(
                    E2BIG,
                    format!("extern (kcfg) '{}': .kconfig area overflows", ext.name),
                )));
            };
            kcfg.data_off = data_off;
            off = end;
            log.debug(format!(
                "extern (kcfg) #{i}: symbol {}, off {}, name {}",
                ext.sym_idx, kcfg.data_off, ext.name
            ));
        }
        layout_kconfig_datasec(btf, sec_id, off, &externs, log)?;
    }
    Ok(externs)
}

fn find_extern_by_name<'e>(externs: &'e [Extern], name: &str) -> Option<&'e Extern> {
    externs.iter().find(|e| e.name == name)
}

/// The `(type id, name)` of each variable of DATASEC `sec_id`.
fn datasec_vars(btf: &Btf, sec_id: u32) -> Vec<(u32, String)> {
    match btf.type_by_id(sec_id).map(|t| t.view()) {
        Some(TypeView::Datasec(sec)) => sec
            .vars
            .iter()
            .map(|v| {
                let name = btf
                    .type_by_id(v.type_id)
                    .and_then(|t| t.name())
                    .unwrap_or("")
                    .to_string();
                (v.type_id, name)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn modify(btf: &mut Btf, id: u32, edit: impl FnOnce(&mut [u32])) -> Result<(), ObjectError> {
    btf.modify_type(id, edit).map_err(|e| {
        ObjectError::extern_(e.errno(), format!("failed to update BTF type [{id}]: {e}"))
    })
}

/// Every `.ksyms` variable becomes a 4-byte allocated `int` so the kernel
/// accepts the DATASEC.
fn layout_ksyms_datasec(
    btf: &mut Btf,
    sec_id: u32,
    externs: &[Extern],
    log: &mut Logger,
) -> Result<(), ObjectError> {
    // libbpf's find_int_btf_id: any 32-bit INT.
    let int_btf_id = btf
        .own_types()
        .find(|t| matches!(t.view(), TypeView::Int(i) if i.bits == 32))
        .map_or(0, |t| t.id());
    let vars = datasec_vars(btf, sec_id);
    for (i, (var_id, name)) in vars.iter().enumerate() {
        let Some(ext) = find_extern_by_name(externs, name) else {
            let kind = btf
                .type_by_id(*var_id)
                .map_or("unknown", |t| t.kind().name());
            return Err(log.fail(ObjectError::extern_(
                ESRCH,
                format!("failed to find extern definition for BTF {kind} '{name}'"),
            )));
        };
        if matches!(&ext.kind, ExternKind::Ksym(k) if k.is_func) {
            // libbpf points the slot at an added `dummy_ksym` VAR; adding
            // types is not supported here, and only the kernel reads it.
            log.debug(format!(
                "extern (func ksym) '{name}': BTF DATASEC entry left as is"
            ));
        } else {
            modify(btf, *var_id, |w| {
                w[HEAD_SIZE_WORD] = int_btf_id;
                if let Some(linkage) = w.get_mut(HEAD_WORDS) {
                    *linkage = BTF_VAR_GLOBAL_ALLOCATED;
                }
            })?;
        }
        let at = HEAD_WORDS + i * SECINFO_WORDS;
        modify(btf, sec_id, |w| {
            if let Some(vs) = w.get_mut(at..at + SECINFO_WORDS) {
                vs[1] = (i * 4) as u32;
                vs[2] = 4;
            }
        })?;
    }
    let size = (vars.len() * 4) as u32;
    modify(btf, sec_id, |w| w[HEAD_SIZE_WORD] = size)
}

/// `.kconfig` variables become allocated, at their `data_off`.
fn layout_kconfig_datasec(
    btf: &mut Btf,
    sec_id: u32,
    size: u32,
    externs: &[Extern],
    log: &mut Logger,
) -> Result<(), ObjectError> {
    modify(btf, sec_id, |w| w[HEAD_SIZE_WORD] = size)?;
    for (i, (var_id, name)) in datasec_vars(btf, sec_id).iter().enumerate() {
        let Some(kcfg) = find_extern_by_name(externs, name).and_then(|e| e.kcfg()) else {
            return Err(log.fail(ObjectError::extern_(
                ESRCH,
                format!("failed to find extern definition for BTF var '{name}'"),
            )));
        };
        let data_off = kcfg.data_off;
        modify(btf, *var_id, |w| {
            if let Some(linkage) = w.get_mut(HEAD_WORDS) {
                *linkage = BTF_VAR_GLOBAL_ALLOCATED;
            }
        })?;
        let at = HEAD_WORDS + i * SECINFO_WORDS;
        modify(btf, sec_id, |w| {
            if let Some(vs) = w.get_mut(at..at + SECINFO_WORDS) {
                vs[1] = data_off;
            }
        })?;
    }
    Ok(())
}
