//! Candidate search (libbpf's `bpf_core_find_cands` / `bpf_core_add_cands`):
//! the target types a local type may correspond to are those of a
//! compatible kind (ENUM and ENUM64 count as one) whose names agree once
//! `___flavor` suffixes are dropped, in id order. The main target (vmlinux)
//! is searched first; module BTFs only if it has no candidate at all.

use std::borrow::Cow;

use crate::btf::Btf;
use crate::co_re::compat::kinds_compat;
use crate::co_re::error::CoreError;
use crate::co_re::spec::name_at;
use crate::uapi::BtfKind;

/// A BTF to relocate against, with the name libbpf's log gives it.
#[derive(Clone, Debug)]
pub struct CoreTarget<'a> {
    pub name: Cow<'a, str>,
    pub btf: &'a Btf,
}

impl<'a> CoreTarget<'a> {
    pub fn new(name: impl Into<Cow<'a, str>>, btf: &'a Btf) -> CoreTarget<'a> {
        CoreTarget {
            name: name.into(),
            btf,
        }
    }
}

/// One candidate: a type id in one of the targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Index into the relocator's target list (0: the main target).
    pub target: usize,
    pub type_id: u32,
}

/// A candidate found, as libbpf logs it ("CO-RE relocating [..] ...: found
/// target candidate [..] ... in [..]").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateFound {
    pub local_type_id: u32,
    pub local_kind: BtfKind,
    pub local_name: String,
    pub candidate: Candidate,
    pub kind: BtfKind,
    pub name: String,
    pub target_name: String,
}

impl CandidateFound {
    pub fn log_line(&self) -> String {
        format!(
            "CO-RE relocating [{}] {} {}: found target candidate [{}] {} {} in [{}]",
            self.local_type_id,
            self.local_kind.name(),
            self.local_name,
            self.candidate.type_id,
            self.kind.name(),
            self.name,
            self.target_name
        )
    }
}

/// All candidates for local type `local_type_id`. `targets[0]` is searched
/// from type id 1 (base types included if it is split); later targets are
/// module BTFs on top of it and only their own types are searched, and
/// only if `targets[0]` had no candidate.
pub(crate) fn find_candidates(
    local: &Btf,
    local_type_id: u32,
    targets: &[CoreTarget<'_>],
) -> Result<(Vec<Candidate>, Vec<CandidateFound>), CoreError> {
    let local_type = local
        .type_by_id(local_type_id)
        .ok_or(CoreError::InvalidLocalType {
            type_id: local_type_id,
        })?;
    let local_name = name_at(local, local_type.name_off());
    if local_name.is_empty() {
        return Err(CoreError::AnonymousCandidateSearch {
            type_id: local_type_id,
            kind: local_type.kind(),
        });
    }
    let mut candidates = Vec::new();
    let mut found = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        if index == 1 && !candidates.is_empty() {
            break;
        }
        let btf = target.btf;
        // Candidates in id order: base types first when the main target is
        // split, then own types, through each BTF's name index (libbpf scans
        // every type; the index finds the same ones).
        let chain: Vec<&Btf> = if index == 0 {
            let mut chain = vec![btf];
            while let Some(base) = chain.last().and_then(|b| b.base()) {
                chain.push(base);
            }
            chain.reverse();
            chain
        } else {
            vec![btf]
        };
        for t in chain
            .into_iter()
            .flat_map(|b| b.own_essential_name_matches(local_name))
        {
            if !kinds_compat(&t, &local_type) {
                continue;
            }
            let type_id = t.id();
            let name = name_at(btf, t.name_off());
            let candidate = Candidate {
                target: index,
                type_id,
            };
            candidates.push(candidate);
            found.push(CandidateFound {
                local_type_id,
                local_kind: local_type.kind(),
                local_name: String::from_utf8_lossy(local_name).into_owned(),
                candidate,
                kind: t.kind(),
                name: String::from_utf8_lossy(name).into_owned(),
                target_name: target.name.to_string(),
            });
        }
    }
    Ok((candidates, found))
}
