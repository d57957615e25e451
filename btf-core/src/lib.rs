//! BTF and `.BTF.ext` in the kernel's raw layout, with libbpf's semantics.
//!
//! - [`Btf::parse`] / [`Btf::parse_split`] take `.BTF` bytes (vmlinux, a
//!   module's split BTF on top of vmlinux, or an object file's section) and
//!   apply libbpf's checks (`btf_parse_hdr`, `btf_parse_str_sec`,
//!   `btf_sanity_check`). Byte-swapped BTF is converted to native order, as
//!   libbpf does.
//! - The type section stays in the kernel's format in a word-aligned buffer,
//!   indexed by type id: [`TypeRef::as_ptr`] gives a `const struct btf_type *`
//!   and [`Btf::str_by_offset`] a NUL-terminated string for the C ABI, while
//!   [`TypeRef::view`] gives a typed [`TypeView`] over the same bytes.
//! - Lookups follow libbpf: [`Btf::find_by_name_kind`],
//!   [`Btf::resolve_type`], [`Btf::resolve_size`], [`Btf::align_of`],
//!   [`Btf::pointer_size`]. Each error has an `errno()` matching libbpf's.
//! - BTF can be built and extended with libbpf's semantics:
//!   [`Btf::new_empty`], [`Btf::add_str`], [`Btf::find_str`] and the
//!   `btf__add_*` family ([`Btf::add_int`], [`Btf::add_struct`] and
//!   [`Btf::add_field`], ..., [`Btf::add_btf`]). The first edit moves the
//!   sections out of the parsed blob into growable storage; every lookup
//!   works on both forms, and [`Btf::raw_data`] reassembles the blob.
//! - [`elf::find_btf_sections`] finds `.BTF`, `.BTF.ext` and `.BTF.base` in
//!   an ELF file with libbpf's checks.
//! - [`BtfExt::parse`] reads func_info, line_info and CO-RE relocation
//!   records; they are what the ELF loader and CO-RE relocator build on.
//! - [`co_re`] applies CO-RE relocations: [`co_re::CoreRelocator`] resolves
//!   each record against the kernel's (and modules') BTF and patches or
//!   poisons its instruction, as libbpf does.
//!
//! Why not the `btf` crate from crates.io (0.5.1, the newest there; see
//! docs/btf-crate-decision.md): it parses only from a file path and turns
//! types into owned, "flattened" Rust values (`String` names, a
//! `HashMap<String, u32>` keeping one id per name), so it cannot keep the
//! raw layout that C callers need pointers into, and it loses types that
//! share a name. It has no split BTF and no `.BTF.ext` (func_info, line_info,
//! CO-RE relocations) at all, decodes `vlen` and the kind with too few bits,
//! validates no offsets or ids, and computes sizes its own way rather than
//! libbpf's (and takes 466 ms on vmlinux, against about 3 ms here).

mod aligned;
mod btf;
// CO-RE relocation (in `src/core/`; not named `core`, which would shadow
// the `core` crate for glob importers).
#[path = "core/mod.rs"]
pub mod co_re;
mod edit;
pub mod elf;
mod error;
mod ext;
mod header;
mod name_index;
mod resolve;
mod strings;
mod strset;
mod type_section;
mod uapi;
mod validate;
mod view;

pub use crate::aligned::KernelRecord;
pub use crate::btf::Btf;
pub use crate::edit::{EditError, FwdKind};
pub use crate::error::{BtfError, BtfExtError, BtfSection, ExtSubsection, TypeError};
pub use crate::ext::{BtfExt, BtfExtHeader, ExtInfo, ExtSection};
pub use crate::header::BtfHeader;
pub use crate::resolve::MAX_RESOLVE_DEPTH;
pub use crate::uapi::*;
pub use crate::view::{
    CompositeView, DatasecView, Enum64View, EnumView, FuncProtoView, IntInfo, MemberView, TypeRef,
    TypeView,
};
