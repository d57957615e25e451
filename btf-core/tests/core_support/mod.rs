//! Shared helpers of the CO-RE tests: raw instruction builders, a
//! "scenario" (local BTF, target BTFs, program sections, relocation
//! records) run through our relocator, the same scenario run through the
//! system libbpf's own relocation code (`oracle.c`, linked with libbpf.a),
//! and clang-built BPF objects.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use userbpf_btf_core::co_re::{CoreError, CoreOutcome, CoreRelocator, CoreTarget};
use userbpf_btf_core::{BpfCoreRelo, Btf, BtfExt, CoreReloKind};

// ---------------------------------------------------------------------------
// Instructions (little-endian host layout, as libbpf patches them).

pub type Slot = [u8; 8];

pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Slot {
    let off = off.to_le_bytes();
    let imm = imm.to_le_bytes();
    [
        code,
        dst | (src << 4),
        off[0],
        off[1],
        imm[0],
        imm[1],
        imm[2],
        imm[3],
    ]
}

/// `r{dst} = imm` (ALU64 MOV K).
pub fn mov64_imm(dst: u8, imm: i32) -> Slot {
    insn(0xb7, dst, 0, 0, imm)
}

/// `r{dst} += imm` (ALU64 ADD K).
pub fn add64_imm(dst: u8, imm: i32) -> Slot {
    insn(0x07, dst, 0, 0, imm)
}

/// `w{dst} = imm` (ALU MOV K).
pub fn mov32_imm(dst: u8, imm: i32) -> Slot {
    insn(0xb4, dst, 0, 0, imm)
}

/// `r{dst} += r{src}` (ALU64 ADD X).
pub fn add64_reg(dst: u8, src: u8) -> Slot {
    insn(0x0f, dst, src, 0, 0)
}

/// BPF_SIZE codes.
pub const W: u8 = 0x00;
pub const H: u8 = 0x08;
pub const B: u8 = 0x10;
pub const DW: u8 = 0x18;

/// `r{dst} = *(size *)(r{src} + off)`.
pub fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Slot {
    insn(0x61 | size, dst, src, off, 0)
}

/// `*(size *)(r{dst} + off) = r{src}`.
pub fn stx(size: u8, dst: u8, src: u8, off: i16) -> Slot {
    insn(0x63 | size, dst, src, off, 0)
}

/// `*(size *)(r{dst} + off) = imm`.
pub fn st(size: u8, dst: u8, off: i16, imm: i32) -> Slot {
    insn(0x62 | size, dst, 0, off, imm)
}

/// `r{dst} = imm64`: two slots.
pub fn ld_imm64(dst: u8, imm: u64) -> [Slot; 2] {
    [
        insn(0x18, dst, 0, 0, imm as u32 as i32),
        insn(0, 0, 0, 0, (imm >> 32) as u32 as i32),
    ]
}

pub fn exit() -> Slot {
    insn(0x95, 0, 0, 0, 0)
}

/// What a poisoned slot holds.
pub fn poisoned() -> Slot {
    insn(0x85, 0, 0, 0, 0x0bad_2310)
}

pub fn imm_of(slot: &Slot) -> i32 {
    i32::from_le_bytes([slot[4], slot[5], slot[6], slot[7]])
}

pub fn off_of(slot: &Slot) -> i16 {
    i16::from_le_bytes([slot[2], slot[3]])
}

// ---------------------------------------------------------------------------
// Scenarios.

/// One relocation record, placed in a program section.
#[derive(Clone, Debug)]
pub struct Record {
    pub section: String,
    pub insn_index: usize,
    pub relo: BpfCoreRelo,
}

impl Record {
    pub fn new(
        section: &str,
        insn_index: usize,
        type_id: u32,
        access_str_off: u32,
        kind: CoreReloKind,
    ) -> Record {
        Record {
            section: section.to_string(),
            insn_index,
            relo: BpfCoreRelo {
                insn_off: (insn_index * 8) as u32,
                type_id,
                access_str_off,
                kind: kind as u32,
            },
        }
    }
}

/// Everything one relocation run needs.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// The object's `.BTF`.
    pub local: Vec<u8>,
    /// (name, raw BTF): the first is the main target, the others are split
    /// BTF on top of it.
    pub targets: Vec<(String, Vec<u8>)>,
    /// Program sections, by name.
    pub sections: BTreeMap<String, Vec<Slot>>,
    /// In `.BTF.ext` order.
    pub records: Vec<Record>,
}

impl Scenario {
    /// Each record's index within its section, as libbpf numbers them in
    /// its log ("relo #N").
    pub fn relo_indices(&self) -> Vec<usize> {
        let mut next: BTreeMap<&str, usize> = BTreeMap::new();
        self.records
            .iter()
            .map(|r| {
                let n = next.entry(r.section.as_str()).or_default();
                *n += 1;
                *n - 1
            })
            .collect()
    }
}

/// Our results: one per record until (and including) the first error.
pub struct Run {
    pub results: Vec<Result<CoreOutcome, CoreError>>,
    pub sections: BTreeMap<String, Vec<Slot>>,
}

impl Run {
    pub fn outcome(&self, i: usize) -> &CoreOutcome {
        match &self.results[i] {
            Ok(o) => o,
            Err(e) => panic!("relocation #{i} failed: {e}"),
        }
    }

    pub fn error(&self, i: usize) -> &CoreError {
        match &self.results[i] {
            Ok(o) => panic!("relocation #{i} succeeded: {o}"),
            Err(e) => e,
        }
    }

    pub fn slot(&self, section: &str, index: usize) -> Slot {
        self.sections[section][index]
    }
}

pub struct ParsedTargets {
    pub main: Arc<Btf>,
    pub modules: Vec<Btf>,
}

pub fn parse_targets(targets: &[(String, Vec<u8>)]) -> ParsedTargets {
    let main = Arc::new(Btf::parse(&targets[0].1).expect("main target parses"));
    let modules = targets[1..]
        .iter()
        .map(|(_, bytes)| Btf::parse_split(bytes, main.clone()).expect("module parses"))
        .collect();
    ParsedTargets { main, modules }
}

/// Runs the scenario through [`CoreRelocator`], stopping at the first
/// error as libbpf does.
pub fn run_ours(scenario: &Scenario) -> Run {
    let local = Btf::parse(&scenario.local).expect("local BTF parses");
    let parsed = parse_targets(&scenario.targets);
    let mut targets = vec![CoreTarget::new(scenario.targets[0].0.clone(), &parsed.main)];
    for (i, module) in parsed.modules.iter().enumerate() {
        targets.push(CoreTarget::new(scenario.targets[i + 1].0.clone(), module));
    }
    let mut relocator = CoreRelocator::with_targets(&local, targets);
    let mut sections = scenario.sections.clone();
    let mut results = Vec::new();
    for record in &scenario.records {
        let insns = sections.get_mut(&record.section).expect("section exists");
        let result = relocator.relocate(insns, &record.relo, record.insn_index);
        let failed = result.is_err();
        results.push(result);
        if failed {
            break;
        }
    }
    Run { results, sections }
}

// ---------------------------------------------------------------------------
// The libbpf oracle.

const ORACLE_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/core_support/oracle.c");

/// A scratch directory unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("btf-core-core-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds the oracle once per test binary; `None` (with a note) if there is
/// no C compiler or no libbpf.a.
pub fn oracle() -> Option<PathBuf> {
    static ORACLE: OnceLock<Option<PathBuf>> = OnceLock::new();
    ORACLE
        .get_or_init(|| {
            let exe = scratch("oracle").join("core_oracle");
            let built = Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&exe)
                .arg(ORACLE_SOURCE)
                .args(["-l:libbpf.a", "-lelf", "-lz"])
                .output();
            match built {
                Ok(out) if out.status.success() => Some(exe),
                Ok(out) => {
                    eprintln!(
                        "skipping libbpf comparison: cannot build the oracle (libbpf-dev missing?): {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    None
                }
                Err(err) => {
                    eprintln!("skipping libbpf comparison: no C compiler: {err}");
                    None
                }
            }
        })
        .clone()
}

/// libbpf's answer for a scenario.
#[derive(Debug, Default)]
pub struct LibbpfRun {
    /// Per record until the first error: `Ok(())` or `Err(errno)`.
    pub results: Vec<Result<(), i32>>,
    /// libbpf's messages for each record ((level, text)).
    pub logs: Vec<Vec<(char, String)>>,
    pub sections: BTreeMap<String, Vec<Slot>>,
}

/// Runs the scenario through libbpf; `None` if the oracle is unavailable.
pub fn run_libbpf(scenario: &Scenario, name: &str) -> Option<LibbpfRun> {
    let oracle = oracle()?;
    let dir = scratch(&format!("scenario-{name}"));
    let mut script = String::new();
    let local = dir.join("local.btf");
    std::fs::write(&local, &scenario.local).unwrap();
    script += &format!("local {}\n", local.display());
    for (i, (target_name, bytes)) in scenario.targets.iter().enumerate() {
        let path = dir.join(format!("target{i}.btf"));
        std::fs::write(&path, bytes).unwrap();
        script += &format!("target {target_name} {}\n", path.display());
    }
    for (i, (section, insns)) in scenario.sections.iter().enumerate() {
        let path = dir.join(format!("section{i}.insns"));
        std::fs::write(&path, insns.concat()).unwrap();
        script += &format!("insns {section} {}\n", path.display());
    }
    for (record, relo_index) in scenario.records.iter().zip(scenario.relo_indices()) {
        let r = &record.relo;
        script += &format!(
            "relo {} {} {} {} {} {relo_index}\n",
            record.section, record.insn_index, r.type_id, r.access_str_off, r.kind
        );
    }
    let script_path = dir.join("script");
    std::fs::write(&script_path, script).unwrap();
    let out = Command::new(&oracle).arg(&script_path).output().unwrap();
    assert!(out.status.success(), "oracle failed: {out:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = LibbpfRun::default();
    let mut pending = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("log ") {
            let (level, message) = rest.split_at(1);
            pending.push((
                level.chars().next().unwrap(),
                message.trim_start().to_string(),
            ));
        } else if let Some(rest) = line.strip_prefix("result ") {
            let fields: Vec<&str> = rest.split(' ').collect();
            run.results.push(match fields[1] {
                "ok" => Ok(()),
                _ => Err(fields[2].parse().unwrap()),
            });
            run.logs.push(std::mem::take(&mut pending));
        } else if let Some(rest) = line.strip_prefix("insns ") {
            let (section, hex) = rest.split_once(' ').unwrap_or((rest, ""));
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let slots = bytes
                .chunks_exact(8)
                .map(|c| c.try_into().unwrap())
                .collect();
            run.sections.insert(section.to_string(), slots);
        } else {
            panic!("unexpected oracle output: {line}");
        }
    }
    Some(run)
}

/// Runs the scenario through both and asserts that they agree: results
/// and errnos, libbpf's debug log for each relocation, and every patched
/// instruction. Returns our run; skips the comparison (with a note) when the
/// oracle is unavailable.
pub fn run_and_compare(scenario: &Scenario, name: &str) -> Run {
    let ours = run_ours(scenario);
    let Some(theirs) = run_libbpf(scenario, name) else {
        return ours;
    };
    assert_eq!(
        ours.results.len(),
        theirs.results.len(),
        "{name}: number of relocations processed differs; libbpf: {:?}, log {:#?}",
        theirs.results,
        theirs.logs
    );
    let indices = scenario.relo_indices();
    for (i, (our, their)) in ours.results.iter().zip(&theirs.results).enumerate() {
        let record = &scenario.records[i];
        match (our, their) {
            (Ok(outcome), Ok(())) => {
                // Debug lines, plus the one warning our log reproduces.
                let expected: Vec<String> = theirs.logs[i]
                    .iter()
                    .filter(|(level, text)| *level == 'D' || text.contains("accesses field incorrectly"))
                    .map(|(_, text)| text.clone())
                    .collect();
                let actual = outcome.log_lines(&record.section, indices[i]);
                assert_eq!(actual, expected, "{name}: log of relocation #{i} ({outcome})");
            }
            (Err(e), Err(errno)) => {
                assert_eq!(e.errno(), *errno, "{name}: errno of relocation #{i}: {e}; libbpf log {:#?}", theirs.logs[i]);
            }
            (ours, theirs_result) => panic!(
                "{name}: relocation #{i}: ours {ours:?}, libbpf {theirs_result:?}; libbpf log {:#?}",
                theirs.logs[i]
            ),
        }
    }
    assert_eq!(
        ours.sections, theirs.sections,
        "{name}: patched instructions differ"
    );
    ours
}

// ---------------------------------------------------------------------------
// Real BPF objects.

/// Compiles `source` (C) for the BPF target with clang-16 (`$CLANG` if
/// set), once per `name` and process: parallel tests building one name
/// would rewrite the source under the other's clang. `None` (with a note)
/// if clang cannot run.
pub fn compile_bpf(name: &str, source: &str) -> Option<PathBuf> {
    static BUILT: Mutex<BTreeMap<String, Option<PathBuf>>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(obj) = built.get(name) {
        return obj.clone();
    }
    let obj = build_bpf(name, source);
    built.insert(name.to_string(), obj.clone());
    obj
}

fn build_bpf(name: &str, source: &str) -> Option<PathBuf> {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang-16".into());
    let dir = scratch("objects");
    let src = dir.join(format!("{name}.bpf.c"));
    let obj = dir.join(format!("{name}.bpf.o"));
    std::fs::write(&src, source).unwrap();
    let result = Command::new(&clang)
        .args(["-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86"])
        // linux/types.h needs asm/types.h from the multiarch directory.
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output();
    match result {
        Ok(o) if o.status.success() => Some(obj),
        Ok(o) => panic!("{clang} failed:\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(err) => {
            eprintln!("skipping: cannot run {clang}: {err}");
            None
        }
    }
}

/// A BPF object's `.BTF`, program sections and CO-RE records, as a
/// scenario against `targets`.
pub fn object_scenario(path: &Path, targets: Vec<(String, Vec<u8>)>) -> Scenario {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let section = |name: &str| -> Vec<u8> {
        file.section_by_name(name)
            .unwrap_or_else(|| panic!("no section {name}"))
            .data()
            .unwrap()
            .to_vec()
    };
    let local_bytes = section(".BTF");
    let local = Btf::parse(&local_bytes).unwrap();
    let ext = BtfExt::parse(&section(".BTF.ext")).unwrap();
    let mut scenario = Scenario {
        local: local_bytes.clone(),
        targets,
        ..Scenario::default()
    };
    let core_relo = ext.core_relo().expect("object has CO-RE relocations");
    for sec in core_relo.sections() {
        let name = sec.sec_name(&local).unwrap().to_string();
        let bytes = section(&name);
        let slots: Vec<Slot> = bytes
            .chunks_exact(8)
            .map(|c| c.try_into().unwrap())
            .collect();
        scenario.sections.insert(name.clone(), slots);
        for relo in sec.records() {
            scenario.records.push(Record {
                section: name.clone(),
                insn_index: (relo.insn_off / 8) as usize,
                relo: *relo,
            });
        }
    }
    scenario
}

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF as the main target, or `None` (with a note).
pub fn vmlinux_target() -> Option<Vec<(String, Vec<u8>)>> {
    match std::fs::read(VMLINUX) {
        Ok(bytes) => Some(vec![("vmlinux".to_string(), bytes)]),
        Err(err) => {
            eprintln!("skipping: cannot read {VMLINUX}: {err}");
            None
        }
    }
}
