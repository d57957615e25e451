//! Turning libbpf's final instructions into the representation our loader
//! produces, so the two compare slot by slot.
//!
//! After `bpf_object__prepare` libbpf's instructions refer to kernel
//! objects by file descriptor; ours cannot (our maps live in the agent).
//! What is rewritten, and only that:
//!
//! 1. `lddw` with `src = BPF_PSEUDO_MAP_FD` (1) and `imm = <map fd>` becomes
//!    `src = BPF_PSEUDO_MAP_IDX` (5), `imm = <index of that map>`, the index
//!    being the map's position in `bpf_object__next_map` order (the order a
//!    libbpf user iterates maps in, which our loader must keep). The second
//!    slot is untouched.
//! 2. `lddw` with `src = BPF_PSEUDO_MAP_VALUE` (2), `imm = <map fd>`, second
//!    `imm = <offset>` becomes `src = BPF_PSEUDO_MAP_IDX_VALUE` (6),
//!    `imm = <map index>`, the offset kept. This covers global data
//!    (`.data`, `.rodata`, `.bss`, `.data.*`, `.rodata.*`) and `.kconfig`
//!    externs: libbpf loads their values through the `.kconfig` map, so no
//!    value sits in the instructions.
//! 3. `lddw` with `src = BPF_PSEUDO_BTF_ID` (3) (typed `__ksym`): `imm` is a
//!    type id of the target BTF, kept; the second slot holds the fd of the
//!    kernel module's BTF object, or 0 for vmlinux. 0 is kept; a module fd
//!    becomes the module's number, 1, 2, ... in the order the object's
//!    programs first mention it (with a note: nothing in the corpus does).
//!
//! Deliberately not rewritten (our loader must produce the same):
//!
//! - `call` with `src = BPF_PSEUDO_KFUNC_CALL` (2): `imm` is the kfunc's id
//!   in vmlinux BTF and `off` libbpf's `fd_array` index (0 = vmlinux), no
//!   fd involved.
//! - typeless `__ksym` externs (`extern const void sym __ksym`): libbpf
//!   writes the address from `/proc/kallsyms` as a plain `lddw src=0`. Our
//!   loader deliberately does not read kallsyms (an address in the kernel
//!   means nothing to a userspace program): a weak one is 0 on both sides,
//!   a strong one that exists fails our relocation. That is a known,
//!   intended divergence; the corpus holds only the weak, missing kind.
//! - unresolved `__weak` externs (0, or a poisoned kfunc call
//!   `call 2002000000 + extern index`), poisoned CO-RE relocations
//!   (`call 0xbad2310`), `BPF_PSEUDO_FUNC` (4) callback addresses.
//! - helper ids: on kernels without `bpf_probe_read_{kernel,user}` (< 5.5)
//!   libbpf's `bpf_object__sanitize_prog` rewrites them to
//!   `bpf_probe_read`; our loader never does, so the oracle is only
//!   meaningful on kernels >= 5.5 (it adds a note otherwise).
//!
//! An fd that is none of the object's maps (libbpf 1.7's jump-table maps
//! for `gotox`, which clang 16 never emits) is left as is with a note, so
//! it shows up as a mismatch.

use userbpf_runtime::isa::{
    Insn, BPF_PSEUDO_BTF_ID, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
};

/// What [`normalize`] did to one program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NormalizeStats {
    /// `lddw` map references rewritten (MAP_FD → MAP_IDX).
    pub map_refs: usize,
    /// `lddw` map value references rewritten (MAP_VALUE → MAP_IDX_VALUE).
    pub map_value_refs: usize,
    /// Typed ksym `lddw`s seen (BTF_ID).
    pub btf_id_refs: usize,
    /// Remarks, one per slot not mapped back.
    pub notes: Vec<String>,
}

/// Numbers the module BTF fds of one object, in first-seen order.
#[derive(Clone, Debug, Default)]
pub struct ModuleBtfNumbers {
    fds: Vec<i32>,
}

impl ModuleBtfNumbers {
    fn number(&mut self, fd: i32) -> i32 {
        let pos = self.fds.iter().position(|&f| f == fd).unwrap_or_else(|| {
            self.fds.push(fd);
            self.fds.len() - 1
        });
        pos as i32 + 1
    }
}

/// Rewrites `insns` in place as described in the module docs. `map_fds[i]`
/// is the fd of map `i` (in `bpf_object__next_map` order).
pub fn normalize(
    insns: &mut [Insn],
    map_fds: &[i32],
    modules: &mut ModuleBtfNumbers,
) -> NormalizeStats {
    let mut stats = NormalizeStats::default();
    let index_of = |fd: i32| map_fds.iter().position(|&f| f == fd && f >= 0);
    let mut pc = 0;
    while pc < insns.len() {
        let insn = insns[pc];
        if !insn.is_lddw() || pc + 1 >= insns.len() {
            pc += 1;
            continue;
        }
        match insn.src {
            BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_VALUE => match index_of(insn.imm) {
                Some(index) => {
                    let value = insn.src == BPF_PSEUDO_MAP_VALUE;
                    insns[pc].src = if value {
                        stats.map_value_refs += 1;
                        BPF_PSEUDO_MAP_IDX_VALUE
                    } else {
                        stats.map_refs += 1;
                        BPF_PSEUDO_MAP_IDX
                    };
                    insns[pc].imm = index as i32;
                }
                None => stats.notes.push(format!(
                    "insn {pc}: lddw src={} imm={} is not the fd of one of the object's maps",
                    insn.src, insn.imm
                )),
            },
            BPF_PSEUDO_BTF_ID => {
                stats.btf_id_refs += 1;
                let fd = insns[pc + 1].imm;
                if fd != 0 {
                    let n = modules.number(fd);
                    stats.notes.push(format!(
                        "insn {pc}: ksym in module BTF (fd {fd}) numbered {n}"
                    ));
                    insns[pc + 1].imm = n;
                }
            }
            _ => {}
        }
        pc += 2;
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use userbpf_runtime::isa::LDDW;

    fn lddw(src: u8, imm: i32, imm2: i32) -> [Insn; 2] {
        [Insn::new(LDDW, 1, src, 0, imm), Insn::new(0, 0, 0, 0, imm2)]
    }

    #[test]
    fn map_fds_become_indexes() {
        let mut insns: Vec<Insn> = [
            lddw(BPF_PSEUDO_MAP_FD, 9, 0),
            lddw(BPF_PSEUDO_MAP_VALUE, 7, 24),
            lddw(BPF_PSEUDO_MAP_FD, 42, 0),
            lddw(0, 9, 0),
            lddw(BPF_PSEUDO_BTF_ID, 1234, 0),
            lddw(BPF_PSEUDO_BTF_ID, 77, 13),
        ]
        .concat();
        let mut modules = ModuleBtfNumbers::default();
        let stats = normalize(&mut insns, &[7, 9], &mut modules);
        assert_eq!(insns[0], Insn::new(LDDW, 1, BPF_PSEUDO_MAP_IDX, 0, 1));
        assert_eq!(insns[2], Insn::new(LDDW, 1, BPF_PSEUDO_MAP_IDX_VALUE, 0, 0));
        assert_eq!(insns[3].imm, 24);
        // Unknown fd and plain constants stay.
        assert_eq!(insns[4], Insn::new(LDDW, 1, BPF_PSEUDO_MAP_FD, 0, 42));
        assert_eq!(insns[6], Insn::new(LDDW, 1, 0, 0, 9));
        // vmlinux BTF ids stay; a module fd becomes its number.
        assert_eq!((insns[8].imm, insns[9].imm), (1234, 0));
        assert_eq!((insns[10].imm, insns[11].imm), (77, 1));
        assert_eq!(
            (stats.map_refs, stats.map_value_refs, stats.btf_id_refs),
            (1, 1, 2)
        );
        assert_eq!(stats.notes.len(), 2);
    }

    #[test]
    fn lddw_second_slot_is_not_reinterpreted() {
        // The second slot of an lddw looks like an lddw itself here; it
        // must be skipped, not normalized.
        let mut insns = vec![
            Insn::new(LDDW, 1, 0, 0, 0),
            Insn::new(LDDW, 0, BPF_PSEUDO_MAP_FD, 0, 7),
        ];
        let before = insns.clone();
        normalize(&mut insns, &[7], &mut ModuleBtfNumbers::default());
        assert_eq!(insns, before);
    }
}
