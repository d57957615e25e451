//! The bpf_conformance suite: every vector in `<shared>/vectors/conformance`
//! on every available engine in process, and through
//! `bpf-conformance-plugin` fed exactly as the upstream runner feeds it.
//! Also the negative vectors in `<shared>/vectors/conformance-negative`.
//!
//! The shared directory is `$USERBPF_SHARED`, by default
//! `<crate>/../../shared`. Run with `--nocapture` to see the counts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use userbpf_runtime::asm::assemble;
use userbpf_runtime::helpers::{HelperEnv, HelperRegistry};
use userbpf_runtime::isa::Insn;
use userbpf_runtime::program::{Program, ProgramError};
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

/// Vectors in the pinned snapshot; a missing one must fail the test.
const EXPECTED_VECTORS: usize = 313;

const PLUGIN: &str = env!("CARGO_BIN_EXE_bpf-conformance-plugin");

fn shared_dir() -> PathBuf {
    let dir = match std::env::var_os("USERBPF_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    assert!(
        dir.join("vectors").is_dir(),
        "shared directory {} has no vectors/ (set USERBPF_SHARED)",
        dir.display()
    );
    dir
}

/// The `.data` files of a directory, sorted by name.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "data"))
        .collect();
    files.sort();
    files
}

fn name_of(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// The vector format (bpf_conformance `bpf_test_parser.cc`, conformance.md §2)
// ---------------------------------------------------------------------------

/// One parsed vector.
#[derive(Debug, Default)]
struct Vector {
    asm: String,
    /// `-- raw` lines, uninterpreted (the main and negative suites differ).
    raw: Vec<String>,
    mem: Vec<u8>,
    result: Option<u64>,
    /// `-- error`: `Some("")` when the section is present but empty.
    error: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    Asm,
    Result,
    Mem,
    Raw,
    Ignored,
    Error,
}

/// Parses a vector; `Err` says why the upstream parser would skip it.
fn parse_vector(text: &str) -> Result<Vector, String> {
    let mut v = Vector::default();
    let mut section = Section::None;
    let mut result_line: Option<String> = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.split('#').next().unwrap_or("");
        if line.contains("--") {
            // The kind is chosen by substring, in this order.
            section = if line.contains("asm") {
                Section::Asm
            } else if line.contains("result") {
                Section::Result
            } else if line.contains("mem") {
                Section::Mem
            } else if line.contains("raw") {
                Section::Raw
            } else if line.contains("no register offset") || line.contains(" c") {
                Section::Ignored
            } else if line.contains("error") {
                v.error.get_or_insert_with(String::new);
                Section::Error
            } else {
                return Err(format!("unknown directive {:?}", line.trim()));
            };
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        match section {
            Section::Asm => {
                v.asm.push_str(line);
                v.asm.push('\n');
            }
            Section::Result => result_line = Some(line.trim().to_string()),
            Section::Mem => {
                for token in line.split_whitespace() {
                    let byte = u8::from_str_radix(token, 16)
                        .map_err(|_| format!("bad memory byte {token:?}"))?;
                    v.mem.push(byte);
                }
            }
            Section::Raw => v.raw.push(line.trim().to_string()),
            Section::Error => v.error = Some(line.trim().to_string()),
            Section::None | Section::Ignored => {}
        }
    }
    if let Some(text) = result_line {
        v.result = Some(parse_result(&text)?);
    }
    if v.result.is_none() && v.error.is_none() {
        return Err("neither a result nor an error".into());
    }
    Ok(v)
}

/// `0x…` is hex (either case), anything else unsigned decimal.
fn parse_result(text: &str) -> Result<u64, String> {
    let parsed = match text.find("0x") {
        Some(at) => u64::from_str_radix(&text[at + 2..], 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("bad result {text:?}"))
}

/// Main-suite `-- raw`: each token is one 64-bit slot (hex or decimal),
/// stored little-endian.
fn raw_slots(lines: &[String]) -> Result<Vec<Insn>, String> {
    let mut insns = Vec::new();
    for token in lines.iter().flat_map(|l| l.split_whitespace()) {
        let slot = match token.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => token.parse(),
        }
        .map_err(|_| format!("bad raw slot {token:?}"))?;
        insns.push(Insn::from_bytes(slot.to_le_bytes()));
    }
    Ok(insns)
}

/// Negative-suite `-- raw`: 8 hex bytes per line, one slot per line.
fn raw_byte_lines(lines: &[String]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for line in lines {
        let slot: Vec<&str> = line.split_whitespace().collect();
        if slot.len() != 8 {
            return Err(format!("raw line {line:?} does not hold 8 bytes"));
        }
        for token in slot {
            bytes.push(u8::from_str_radix(token, 16).map_err(|_| format!("bad byte {token:?}"))?);
        }
    }
    Ok(bytes)
}

/// The program of a vector: `-- raw` when present, else `-- asm`.
fn instructions(v: &Vector) -> Result<Vec<Insn>, String> {
    if v.raw.is_empty() {
        assemble(&v.asm).map_err(|e| format!("assembler: {e}"))
    } else {
        raw_slots(&v.raw)
    }
}

// ---------------------------------------------------------------------------
// Engines
// ---------------------------------------------------------------------------

/// uBPF's "unwind" helper 5, as the plugin registers it.
unsafe extern "C" fn unwind(r1: u64, _: u64, _: u64, _: u64, _: u64, _: *mut HelperEnv) -> u64 {
    r1
}

fn helpers() -> HelperRegistry {
    let mut h = HelperRegistry::new();
    h.register(5, "unwind", unwind);
    h
}

fn run_in_process(engine: Engine, insns: &[Insn], mem: &[u8]) -> Result<u64, String> {
    let vm = Vm::from_insns(insns.to_vec(), helpers(), VmOptions::with_engine(engine))
        .map_err(|e| format!("load: {e}"))?;
    let mut copy = mem.to_vec();
    vm.run(&mut copy).map_err(|e| format!("run: {e}"))
}

/// The upstream runner's encoding: `%02x` and two spaces per byte.
fn base16(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}  ")).collect()
}

fn run_plugin(engine: &str, insns: &[Insn], mem: &[u8]) -> Result<u64, String> {
    let mut cmd = Command::new(PLUGIN);
    if !mem.is_empty() {
        cmd.arg(base16(mem));
    }
    // Plugin options come after the memory, as the upstream runner passes them.
    cmd.args(["--engine", engine]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {PLUGIN}: {e}"))?;
    let program = base16(&Insn::encode_all(insns));
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        writeln!(stdin, "{program}").map_err(|e| format!("writing stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!("exit {}: {stdout}{stderr}", out.status));
    }
    let digits = stdout.strip_prefix("0x").unwrap_or(&stdout);
    u64::from_str_radix(digits, 16).map_err(|_| format!("unparsable output {stdout:?}"))
}

/// How a vector is run: in process on an engine, or through the plugin
/// binary with `--engine NAME`.
#[derive(Clone, Copy)]
enum Runner {
    InProcess(Engine),
    Plugin(&'static str),
}

const RUNNERS: [(&str, Runner); 4] = [
    ("interpreter", Runner::InProcess(Engine::Interpreter)),
    ("jit", Runner::InProcess(Engine::Jit)),
    ("plugin interp", Runner::Plugin("interp")),
    ("plugin jit", Runner::Plugin("jit")),
];

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn conformance_vectors() {
    let dir = shared_dir().join("vectors/conformance");
    let files = data_files(&dir);

    // Parse and build every vector first: a vector that cannot be built
    // fails on every engine.
    let mut vectors = Vec::new();
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &files {
        let name = name_of(path);
        let text = std::fs::read_to_string(path).expect("readable vector");
        let built = parse_vector(&text).and_then(|v| {
            let expected = v.result.ok_or("no -- result")?;
            Ok((instructions(&v)?, v.mem, expected))
        });
        match built {
            Ok(vector) => vectors.push((name, vector)),
            Err(why) => {
                failures
                    .entry(name)
                    .or_default()
                    .push(format!("all: {why}"));
            }
        }
    }

    for (label, runner) in RUNNERS {
        let mut passed = 0;
        let mut failed = files.len() - vectors.len();
        for (name, (insns, mem, expected)) in &vectors {
            let got = match runner {
                Runner::InProcess(engine) => run_in_process(engine, insns, mem),
                Runner::Plugin(engine) => run_plugin(engine, insns, mem),
            };
            match got {
                Ok(r0) if r0 == *expected => passed += 1,
                Ok(r0) => {
                    failed += 1;
                    failures
                        .entry(name.clone())
                        .or_default()
                        .push(format!("{label}: got {r0:#x}, expected {expected:#x}"));
                }
                Err(why) => {
                    failed += 1;
                    failures
                        .entry(name.clone())
                        .or_default()
                        .push(format!("{label}: {why}"));
                }
            }
        }
        println!("{label}: {passed} passed, {failed} failed");
    }

    for (name, why) in &failures {
        println!("FAIL {name}: {}", why.join("; "));
    }
    let failed = failures.len();
    println!("{} passed, {failed} failed", files.len() - failed);
    assert_eq!(failed, 0, "conformance vectors failed");
    assert_eq!(
        files.len(),
        EXPECTED_VECTORS,
        "expected {EXPECTED_VECTORS} vectors in {}",
        dir.display()
    );
}

#[test]
fn negative_vectors() {
    let dir = shared_dir().join("vectors/conformance-negative");
    let files = data_files(&dir);
    let mut rejected_by_validation = 0;
    let mut rejected_by_assembler = 0;
    let mut other_checks = 0;
    let mut problems = Vec::new();

    for path in &files {
        let name = name_of(path);
        let text = std::fs::read_to_string(path).expect("readable vector");
        let mut problem = |why: String| problems.push(format!("{name}: {why}"));

        if name.starts_with("unused-") {
            // A non-zero field the ISA says must be zero: validation refuses.
            let bytes = match parse_vector(&text).and_then(|v| raw_byte_lines(&v.raw)) {
                Ok(bytes) if !bytes.is_empty() => bytes,
                Ok(_) => return problem("no -- raw program".into()),
                Err(why) => return problem(why),
            };
            match Program::from_bytes(&bytes) {
                Ok(_) => problem("accepted by Program validation".into()),
                Err(_) => rejected_by_validation += 1,
            }
            continue;
        }

        match name.as_str() {
            // No program at all: "no instructions".
            "empty" | "empty_instructions" => {
                let asm = parse_vector(&text).map(|v| v.asm).unwrap_or_default();
                match assemble(&asm) {
                    Err(_) => rejected_by_assembler += 1,
                    Ok(insns) => match Program::new(insns) {
                        Err(ProgramError::Empty) => rejected_by_assembler += 1,
                        other => problem(format!("expected \"no instructions\", got {other:?}")),
                    },
                }
            }
            // The runner must compare all 64 bits: the expected value is
            // wrong in the high half on purpose.
            "incorrect_return_value_high_bits" => {
                let checked = parse_vector(&text).and_then(|v| {
                    let expected = v.result.ok_or("no -- result")?;
                    let r0 = run_in_process(Engine::Interpreter, &instructions(&v)?, &v.mem)?;
                    Ok((r0, expected))
                });
                match checked {
                    Ok((r0, expected)) if r0 != expected && r0 as u32 == expected as u32 => {
                        other_checks += 1
                    }
                    Ok((r0, expected)) => problem(format!("r0 {r0:#x} vs expected {expected:#x}")),
                    Err(why) => problem(why),
                }
            }
            // The upstream parser skips files with an unknown directive.
            "invalid_unknown_directive" => match parse_vector(&text) {
                Err(_) => other_checks += 1,
                Ok(_) => problem("parsed despite its unknown directive".into()),
            },
            // A test of the runner's error matching (upstream runs it with a
            // fake plugin): the program itself is valid and must load.
            "error" => {
                let loaded = parse_vector(&text)
                    .and_then(|v| instructions(&v))
                    .and_then(|insns| Program::new(insns).map_err(|e| e.to_string()));
                match loaded {
                    Ok(_) => other_checks += 1,
                    Err(why) => problem(why),
                }
            }
            // Everything else is an assembler error.
            _ => match parse_vector(&text) {
                Err(why) => problem(why),
                Ok(v) => match assemble(&v.asm) {
                    Err(e) => {
                        rejected_by_assembler += 1;
                        println!("  {name}: {}", e.message());
                    }
                    Ok(insns) => problem(format!("assembled to {} slots", insns.len())),
                },
            },
        }
    }

    println!(
        "negative: {} files: {rejected_by_validation} rejected by validation, \
         {rejected_by_assembler} rejected by the assembler, {other_checks} other checks passed, \
         {} problems",
        files.len(),
        problems.len()
    );
    for p in &problems {
        println!("PROBLEM {p}");
    }
    assert!(problems.is_empty(), "negative vectors misbehaved");
    assert_eq!(rejected_by_validation, 45, "unused-* vectors");
    assert_eq!(files.len(), 60, "negative vectors in {}", dir.display());
}
