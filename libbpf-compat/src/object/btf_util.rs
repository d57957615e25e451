//! Small BTF helpers shared by the loader modules, in libbpf's wording.

use userbpf_btf_core::{TypeRef, BTF_VAR_GLOBAL_ALLOCATED, BTF_VAR_GLOBAL_EXTERN, BTF_VAR_STATIC};

/// libbpf's `btf_kind_str`.
pub(crate) fn kind_str(t: &TypeRef<'_>) -> &'static str {
    t.kind().name()
}

/// libbpf's `btf_var_linkage_str`.
pub(crate) fn linkage_str(linkage: u32) -> &'static str {
    match linkage {
        BTF_VAR_STATIC => "static",
        BTF_VAR_GLOBAL_ALLOCATED => "global",
        BTF_VAR_GLOBAL_EXTERN => "extern",
        _ => "unknown",
    }
}

/// Word index of the `size`/`type` field in a type record.
pub(crate) const HEAD_SIZE_WORD: usize = 2;
/// Words in a `struct btf_type` head.
pub(crate) const HEAD_WORDS: usize = 3;
/// Words in a `struct btf_var_secinfo`.
pub(crate) const SECINFO_WORDS: usize = 3;
