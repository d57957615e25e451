//! CO-RE ("compile once, run everywhere") relocation, with libbpf's
//! semantics (`relo_core.c` and the candidate search in `libbpf.c`).
//!
//! A BPF object's `.BTF.ext` holds one [`BpfCoreRelo`](crate::BpfCoreRelo)
//! per instruction whose constant depends on the kernel's types: a field
//! offset, size, existence, signedness or bitfield shift, a type's
//! existence, size, id or "match", an enumerator's existence or value.
//! [`CoreRelocator`] resolves each one against the kernel's BTF (and module
//! BTFs) and patches the instruction, or poisons it (a call to the
//! nonexistent helper [`POISON_HELPER_ID`]) when the kernel lacks what it
//! needs. Errors carry libbpf's errno ([`CoreError::errno`]); outcomes can
//! print libbpf's debug log lines ([`CoreOutcome::log_lines`]).
//!
//! Modules, one concept each:
//! - `essential_name`: `___flavor` suffixes;
//! - `spec`: access strings and specs, and their log format;
//! - `compat`: the type compatibility and matching relations;
//! - `spec_match`: matching a local spec against a candidate;
//! - `candidates`: the candidate search over target BTFs;
//! - `calc`: the values a relocation patches in;
//! - `insn`, `patch`: instruction slots and patching/poisoning;
//! - `relocate`: the relocator tying them together, with its cache.
//!
//! # Using it from an ELF loader (what libbpf's `bpf_object__relocate_core` does)
//!
//! - One [`CoreRelocator`] per object, built with the object's `.BTF` and
//!   the targets: vmlinux first, then module BTFs (split on vmlinux), named
//!   by module for the log ([`CoreRelocator::with_targets`]); with a custom
//!   target BTF (libbpf's `btf_custom_path`), that BTF alone.
//! - Walk the `core_relo` sections of `.BTF.ext` in order, and their records
//!   in order; "relo #N" in libbpf's log is the record's index within its
//!   section. Results depend on order: the candidate cache is narrowed by
//!   each match.
//! - `insn_off` is a byte offset from the start of the ELF section: not a
//!   multiple of 8 is `-EINVAL`. Find the program holding instruction
//!   `insn_off / 8`; skip the record if there is none (an eliminated weak
//!   subprogram) or if the program will not be loaded (autoload off);
//!   subtract the program's first instruction index, and pass the
//!   program's own instructions, before subprograms are appended.
//! - The first error fails the object's load. Poisoned instructions are
//!   not errors; the verifier rejects them only if they are reachable
//!   ("invalid func unknown#195896080").
//! - TYPE_ID_TARGET patches an id of the BTF the candidate came from
//!   ([`TargetMatch::candidate`] says which target).
//!
//! Instruction slots are in host byte order, as libbpf patches them.
mod calc;
mod candidates;
mod compat;
mod error;
mod essential_name;
mod insn;
mod patch;
mod relocate;
mod spec;
mod spec_match;

pub use calc::RelocationValues;
pub use candidates::{Candidate, CandidateFound, CoreTarget};
pub use compat::{fields_are_compat, types_are_compat, types_match};
pub use error::{CalcError, CoreError, MatchError, PatchError, SpecError};
pub use essential_name::{essential_name, essential_name_len};
pub use insn::insn_slots_mut;
pub use patch::{patch_insn, PatchAction, PoisonReason, POISON_HELPER_ID};
pub use relocate::{
    describe_relocation, CandidateCheck, CoreOutcome, CoreRelocator, CoreResolution, TargetMatch,
};
pub use spec::{parse_access_string, MAX_SPEC_LEN};
