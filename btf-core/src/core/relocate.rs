//! [`CoreRelocator`]: applies an object's CO-RE relocations one by one, as
//! libbpf's `bpf_object__relocate_core` does (`bpf_core_resolve_relo`,
//! `bpf_core_calc_relo_insn`, `bpf_core_patch_insn`).
//!
//! For each relocation: find the candidates for the local type (cached per
//! local type id, shared by all relocations of the object), match the local
//! spec against each, compute the value for every matching candidate, and
//! insist that they all agree. No matching candidate is not an error: field
//! and enumerator values poison the instruction, existence checks give 0.

use std::collections::HashMap;
use std::fmt;

use crate::btf::Btf;
use crate::co_re::calc::{calc_relocation, RelocationValues};
use crate::co_re::candidates::{find_candidates, Candidate, CandidateFound, CoreTarget};
use crate::co_re::error::{CoreError, PatchError};
use crate::co_re::patch::{patch_insn, PatchAction};
use crate::co_re::spec::{display_name, format_spec, name_at, parse_spec, CoreSpec};
use crate::co_re::spec_match::match_spec;
use crate::uapi::{BpfCoreRelo, CoreReloKind};

/// The candidate a relocation was resolved against (the first matching one;
/// any others agreed with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetMatch {
    pub candidate: Candidate,
    /// The target spec in libbpf's log format.
    pub spec: String,
    /// Bit offset of the target field (0 for type and enumerator
    /// relocations).
    pub bit_offset: u32,
}

/// One candidate as checked, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateCheck {
    pub candidate: Candidate,
    pub matched: bool,
    /// The target spec as far as matching got, in libbpf's log format.
    pub spec: String,
}

/// What a relocation resolves to, before any instruction is patched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreResolution {
    pub kind: CoreReloKind,
    pub local_type_id: u32,
    /// The local spec in libbpf's log format, e.g. `<byte_off> [12] struct
    /// task_struct.pid (0:0 @ offset 0)`.
    pub local_spec: String,
    pub values: RelocationValues,
    /// `None` when nothing matched (or for TYPE_ID_LOCAL).
    pub target: Option<TargetMatch>,
    /// Candidates found by a search done for this relocation (empty when the
    /// search was cached or not needed).
    pub candidates_found: Vec<CandidateFound>,
    /// Every candidate checked, in order.
    pub candidates_checked: Vec<CandidateCheck>,
}

impl CoreResolution {
    /// libbpf's debug lines for resolving this relocation, without the
    /// `libbpf: ` prefix.
    pub fn log_lines(&self, prog_name: &str, relo_index: usize) -> Vec<String> {
        let prefix = format!("prog '{prog_name}': relo #{relo_index}:");
        let mut lines: Vec<String> = self.candidates_found.iter().map(|c| c.log_line()).collect();
        lines.push(format!("{prefix} {}", self.local_spec));
        for (i, check) in self.candidates_checked.iter().enumerate() {
            let word = if check.matched {
                "matching"
            } else {
                "non-matching"
            };
            lines.push(format!("{prefix} {word} candidate #{i} {}", check.spec));
        }
        if self.kind != CoreReloKind::TypeIdLocal && self.target.is_none() {
            lines.push(format!("{prefix} no matching targets found"));
        }
        lines
    }
}

/// A resolved and applied relocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreOutcome {
    pub resolution: CoreResolution,
    pub patch: PatchAction,
}

impl CoreOutcome {
    pub fn is_poisoned(&self) -> bool {
        matches!(self.patch, PatchAction::Poisoned { .. })
    }

    /// All of libbpf's debug lines for this relocation, in libbpf's order.
    pub fn log_lines(&self, prog_name: &str, relo_index: usize) -> Vec<String> {
        let mut lines = self.resolution.log_lines(prog_name, relo_index);
        lines.extend(self.patch.log_lines(prog_name, relo_index));
        lines
    }
}

impl fmt::Display for CoreOutcome {
    /// One line: local spec, target spec, what was patched.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.resolution;
        write!(f, "{}", r.local_spec)?;
        match &r.target {
            Some(t) => write!(f, " => {}", t.spec)?,
            None if r.kind != CoreReloKind::TypeIdLocal => write!(f, " => no target")?,
            None => {}
        }
        match self.patch {
            PatchAction::Poisoned { insn_index, .. } => {
                write!(f, ": insn #{insn_index} poisoned")
            }
            PatchAction::Alu {
                insn_index,
                old_imm,
                new_value,
            } => write!(f, ": insn #{insn_index} imm {old_imm} -> {new_value}"),
            PatchAction::Memory {
                insn_index,
                old_off,
                new_off,
                size_change,
            } => {
                write!(f, ": insn #{insn_index} off {old_off} -> {new_off}")?;
                if let Some((old, new)) = size_change {
                    write!(f, ", size {old} -> {new}")?;
                }
                Ok(())
            }
            PatchAction::Ldimm64 {
                insn_index,
                old_value,
                new_value,
            } => write!(f, ": insn #{insn_index} imm64 {old_value} -> {new_value}"),
        }
    }
}

/// Relocates one object's instructions against target BTFs.
///
/// Use one relocator per object and apply the object's relocations in
/// `.BTF.ext` order: like libbpf, the candidate list of a local type is
/// cached and narrowed to the candidates that matched, which later
/// relocations of the same type then start from.
pub struct CoreRelocator<'a> {
    local: &'a Btf,
    targets: Vec<CoreTarget<'a>>,
    candidates: HashMap<u32, Vec<Candidate>>,
}

impl<'a> CoreRelocator<'a> {
    /// `targets[0]` is the kernel's BTF (or a custom BTF standing in for
    /// it); any others are module BTFs split on top of it, searched only
    /// when `targets[0]` has no candidate. Targets are named "vmlinux" and
    /// "module #N" in logs; see [`CoreRelocator::with_targets`].
    pub fn new(local: &'a Btf, targets: &[&'a Btf]) -> CoreRelocator<'a> {
        let targets = targets
            .iter()
            .enumerate()
            .map(|(i, btf)| match i {
                0 => CoreTarget::new("vmlinux", btf),
                _ => CoreTarget::new(format!("module #{i}"), btf),
            })
            .collect();
        CoreRelocator::with_targets(local, targets)
    }

    /// Like [`CoreRelocator::new`], with the names libbpf gives targets
    /// (module names) in its log.
    pub fn with_targets(local: &'a Btf, targets: Vec<CoreTarget<'a>>) -> CoreRelocator<'a> {
        CoreRelocator {
            local,
            targets,
            candidates: HashMap::new(),
        }
    }

    pub fn local(&self) -> &'a Btf {
        self.local
    }

    pub fn targets(&self) -> &[CoreTarget<'a>] {
        &self.targets
    }

    /// The cached candidates of a local type, if a relocation searched them.
    pub fn cached_candidates(&self, local_type_id: u32) -> Option<&[Candidate]> {
        self.candidates.get(&local_type_id).map(Vec::as_slice)
    }

    /// Resolves `relo` and patches `insns[insn_index]` (the instruction at
    /// `relo.insn_off / 8`, counted from the start of the program that
    /// holds it, which is the caller's to work out).
    pub fn relocate(
        &mut self,
        insns: &mut [[u8; 8]],
        relo: &BpfCoreRelo,
        insn_index: usize,
    ) -> Result<CoreOutcome, CoreError> {
        // libbpf checks the index before resolving anything.
        if insn_index >= insns.len() {
            return Err(PatchError::InsnOutOfRange {
                insn_index,
                len: insns.len(),
            }
            .into());
        }
        let resolution = self.resolve(relo)?;
        let patch = patch_insn(insns, insn_index, &resolution.values)?;
        Ok(CoreOutcome { resolution, patch })
    }

    /// Resolves `relo` without patching anything (the candidate cache is
    /// searched and narrowed all the same). [`patch_insn`] applies the
    /// result.
    pub fn resolve(&mut self, relo: &BpfCoreRelo) -> Result<CoreResolution, CoreError> {
        let local = self.local;
        let local_type_id = relo.type_id;
        let local_type = local
            .type_by_id(local_type_id)
            .ok_or(CoreError::InvalidLocalType {
                type_id: local_type_id,
            })?;
        if local.str_by_offset(local_type.name_off()).is_none() {
            return Err(CoreError::InvalidLocalName {
                type_id: local_type_id,
            });
        }
        let kind = CoreReloKind::from_raw(relo.kind);

        let mut candidates_found = Vec::new();
        if kind != Some(CoreReloKind::TypeIdLocal) && !self.candidates.contains_key(&local_type_id)
        {
            let (candidates, found) = find_candidates(local, local_type_id, &self.targets)?;
            self.candidates.insert(local_type_id, candidates);
            candidates_found = found;
        }

        let local_name = name_at(local, local_type.name_off());
        let local_spec = parse_local_spec(local, relo)?;
        let kind = local_spec.kind;
        let mut resolution = CoreResolution {
            kind,
            local_type_id,
            local_spec: format_spec(&local_spec),
            values: RelocationValues::default(),
            target: None,
            candidates_found,
            candidates_checked: Vec::new(),
        };

        if kind == CoreReloKind::TypeIdLocal {
            // Linking may renumber the id in the instruction: no check.
            let id = u64::from(local_spec.root_type_id);
            resolution.values = RelocationValues {
                orig_val: id,
                new_val: id,
                ..RelocationValues::default()
            };
            return Ok(resolution);
        }
        if local_name.is_empty() {
            return Err(CoreError::AnonymousType { kind });
        }

        let targets = &self.targets;
        let candidates = self.candidates.entry(local_type_id).or_default();
        let mut matched: Vec<Candidate> = Vec::new();
        let mut first: Option<(Candidate, CoreSpec<'_>, RelocationValues)> = None;
        for (index, &candidate) in candidates.iter().enumerate() {
            let Some(target) = targets.get(candidate.target) else {
                continue;
            };
            let mut targ_spec = CoreSpec::empty(target.btf, candidate.type_id, kind);
            let is_match = match_spec(&local_spec, &mut targ_spec).map_err(|reason| {
                CoreError::CandidateMatch {
                    index,
                    spec: format_spec(&targ_spec),
                    reason,
                }
            })?;
            resolution.candidates_checked.push(CandidateCheck {
                candidate,
                matched: is_match,
                spec: format_spec(&targ_spec),
            });
            if !is_match {
                continue;
            }
            let values = calc_relocation(&local_spec, Some(&targ_spec))?;
            match &first {
                None => first = Some((candidate, targ_spec, values)),
                Some((_, first_spec, first_values)) => {
                    // Every candidate must lead to the same decision.
                    if targ_spec.bit_offset != first_spec.bit_offset {
                        return Err(CoreError::FieldOffsetAmbiguity {
                            first: first_spec.bit_offset,
                            candidate: targ_spec.bit_offset,
                        });
                    }
                    if values.poison != first_values.poison
                        || values.new_val != first_values.new_val
                    {
                        return Err(CoreError::DecisionAmbiguity {
                            first_poisoned: first_values.poison,
                            first_value: first_values.new_val,
                            candidate_poisoned: values.poison,
                            candidate_value: values.new_val,
                        });
                    }
                }
            }
            matched.push(candidate);
        }

        match first {
            Some((candidate, targ_spec, values)) => {
                // Later relocations of this type only look at candidates
                // that matched (none matching leaves the list alone).
                *candidates = matched;
                resolution.values = values;
                resolution.target = Some(TargetMatch {
                    candidate,
                    spec: format_spec(&targ_spec),
                    bit_offset: targ_spec.bit_offset,
                });
            }
            None => resolution.values = calc_relocation(&local_spec, None)?,
        }
        Ok(resolution)
    }
}

/// libbpf's log description of a relocation's local spec, e.g. `<byte_off>
/// [12] struct task_struct.pid (0:0 @ offset 0)`, without resolving it.
pub fn describe_relocation(local: &Btf, relo: &BpfCoreRelo) -> Result<String, CoreError> {
    Ok(format_spec(&parse_local_spec(local, relo)?))
}

/// The local spec of `relo`, with libbpf's error context on failure.
fn parse_local_spec<'a>(local: &'a Btf, relo: &BpfCoreRelo) -> Result<CoreSpec<'a>, CoreError> {
    let local_type = local
        .type_by_id(relo.type_id)
        .ok_or(CoreError::InvalidLocalType {
            type_id: relo.type_id,
        })?;
    parse_spec(local, relo).map_err(|reason| CoreError::BadSpec {
        type_id: relo.type_id,
        kind: local_type.kind(),
        name: display_name(name_at(local, local_type.name_off())),
        access: local
            .str_by_offset(relo.access_str_off)
            .map_or("<?>".into(), |s| s.to_string_lossy().into_owned()),
        reason,
    })
}
