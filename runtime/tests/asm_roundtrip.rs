//! The assembler and disassemblers against the bpf_conformance vectors.
//!
//! Vectors live in `$USERBPF_SHARED/vectors/` (default: the `shared`
//! directory next to the workspace). The LLVM comparisons run only when
//! `clang-16` and `llvm-objdump-16` are installed; they print a note and
//! pass otherwise.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use userbpf_runtime::asm::{assemble, AsmError};
use userbpf_runtime::disasm::{disassemble, objdump_listing};
use userbpf_runtime::isa::*;

const CONFORMANCE_VECTORS: usize = 313;

fn shared_dir() -> PathBuf {
    match std::env::var_os("USERBPF_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// The sections of a `.data` file, split as `bpf_test_parser.cc` does: a
/// line containing `--` starts a section, `#` starts a comment.
#[derive(Default, Debug)]
struct Vector {
    name: String,
    asm: Option<String>,
    raw: Option<Vec<String>>,
    error: Option<String>,
}

fn parse_vector(path: &Path) -> Vector {
    let text = fs::read_to_string(path).unwrap();
    let mut v = Vector {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        ..Vector::default()
    };
    let mut section = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap();
        if line.contains("--") {
            section = [
                "asm",
                "result",
                "mem",
                "raw",
                "error",
                "no register offset",
                " c",
            ]
            .iter()
            .find(|k| line.contains(*k))
            .map(|k| k.to_string())
            .unwrap_or_else(|| "unknown".to_string());
            match section.as_str() {
                "asm" => v.asm = Some(String::new()),
                "raw" => v.raw = Some(Vec::new()),
                "error" => v.error = Some(String::new()),
                _ => {}
            }
            continue;
        }
        match section.as_str() {
            "asm" => {
                let asm = v.asm.as_mut().unwrap();
                asm.push_str(line);
                asm.push('\n');
            }
            "raw" => v
                .raw
                .as_mut()
                .unwrap()
                .extend(line.split_whitespace().map(str::to_string)),
            "error" if !line.trim().is_empty() => v.error = Some(line.trim().to_string()),
            _ => {}
        }
    }
    v
}

fn vectors(dir: &str) -> Vec<Vector> {
    let dir = shared_dir().join("vectors").join(dir);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    paths.sort();
    paths.iter().map(|p| parse_vector(p)).collect()
}

fn conformance() -> Vec<(Vector, Vec<Insn>)> {
    let all = vectors("conformance");
    assert_eq!(all.len(), CONFORMANCE_VECTORS);
    all.into_iter()
        .map(|v| {
            let src = v
                .asm
                .as_deref()
                .unwrap_or_else(|| panic!("{}: no asm", v.name));
            let insns = assemble(src).unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert!(!insns.is_empty(), "{}", v.name);
            (v, insns)
        })
        .collect()
}

#[test]
fn every_vector_assembles_and_round_trips() {
    for (v, insns) in conformance() {
        let text = disassemble(&insns);
        assert!(
            !text.contains(".insn"),
            "{}: the conformance syntax should cover every vector:\n{text}",
            v.name
        );
        let again = assemble(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", v.name));
        assert_eq!(again, insns, "{}:\n{text}", v.name);
        // Disassembly is a fixed point after one round.
        assert_eq!(disassemble(&again), text, "{}", v.name);
    }
}

#[test]
fn lddw_raw_section_matches_asm() {
    let v = parse_vector(&shared_dir().join("vectors/conformance/lddw.data"));
    let raw: Vec<Insn> = v
        .raw
        .expect("lddw.data has a raw section")
        .iter()
        .map(|t| {
            let slot = match t.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
                None => t.parse().unwrap(),
            };
            Insn::from_bytes(slot.to_le_bytes())
        })
        .collect();
    assert_eq!(raw.len(), 3);
    assert_eq!(assemble(v.asm.as_deref().unwrap()).unwrap(), raw);
    assert_eq!(raw[0], Insn::new(LDDW, 0, 0, 0, 0x5566_7788));
}

/// Slot counts and the minimum ISA version per vector, checked against the
/// table in conformance.md §6, which was produced by an independent port of
/// the assembler.
#[test]
fn vectors_match_research_table() {
    let table = fs::read_to_string(shared_dir().join("research/conformance.md")).unwrap();
    let mut rows: HashMap<String, (String, String, usize)> = HashMap::new();
    for line in table.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        // | vector | ISA | groups | slots | mem bytes | expected r0 | notes |
        if cols.len() == 9 && cols[2].starts_with('v') {
            if let Ok(slots) = cols[4].parse() {
                rows.insert(
                    cols[1].to_string(),
                    (cols[2].to_string(), cols[3].to_string(), slots),
                );
            }
        }
    }
    assert_eq!(rows.len(), CONFORMANCE_VECTORS);
    for (v, insns) in conformance() {
        let (isa, groups, slots) = rows
            .get(&v.name)
            .unwrap_or_else(|| panic!("{} missing from table", v.name));
        assert_eq!(insns.len(), *slots, "{} slots", v.name);
        assert_eq!(&min_isa(&insns), isa, "{} ISA version", v.name);
        let expected: BTreeSet<&str> = groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .collect();
        assert_eq!(extra_groups(&insns), expected, "{} groups", v.name);
    }
}

/// The ISA version an instruction sequence needs, after opcode_names.h.
fn min_isa(insns: &[Insn]) -> String {
    let mut v = 1;
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        let need = match (i.class(), i.op()) {
            _ if i.code == JA32 => 4,
            (BPF_ALU | BPF_ALU64, BPF_DIV | BPF_MOD) if i.off == 1 => 4,
            (BPF_ALU | BPF_ALU64, BPF_MOV) if i.off != 0 => 4,
            (BPF_ALU64, BPF_END) => 4,
            (BPF_LDX, _) if i.mode() == BPF_MEMSX => 4,
            (BPF_JMP32, _) => 3,
            (BPF_STX, _) if i.mode() == BPF_ATOMIC => 3,
            (BPF_JMP, BPF_CALL) if i.src == BPF_PSEUDO_CALL => 3,
            (BPF_JMP, BPF_JLT | BPF_JLE | BPF_JSLT | BPF_JSLE) => 2,
            _ => 1,
        };
        v = v.max(need);
        pc += if i.is_lddw() { 2 } else { 1 };
    }
    format!("v{v}")
}

/// Conformance groups beyond base32/base64.
fn extra_groups(insns: &[Insn]) -> BTreeSet<&'static str> {
    let mut g = BTreeSet::new();
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        match (i.class(), i.op()) {
            (BPF_ALU, BPF_MUL | BPF_DIV | BPF_MOD) => {
                g.insert("divmul32");
            }
            (BPF_ALU64, BPF_MUL | BPF_DIV | BPF_MOD) => {
                g.insert("divmul64");
            }
            (BPF_STX, _) if i.mode() == BPF_ATOMIC => {
                g.insert(if i.size() == BPF_W {
                    "atomic32"
                } else {
                    "atomic64"
                });
            }
            _ if i.code == CALLX => {
                g.insert("callx");
            }
            _ => {}
        }
        pc += if i.is_lddw() { 2 } else { 1 };
    }
    g
}

#[test]
fn spot_check_vector_encodings() {
    let all: HashMap<String, Vec<Insn>> = conformance()
        .into_iter()
        .map(|(v, i)| (v.name, i))
        .collect();
    // ja32 L2 skips two slots; ja32 L1 goes back four.
    assert_eq!(all["ja32"][1], Insn::new(JA32, 0, 0, 0, 2));
    assert_eq!(all["ja32"][5], Insn::new(JA32, 0, 0, 0, -4));
    assert_eq!(all["callx"][2], Insn::new(CALLX, 2, 0, 0, 0));
    assert_eq!(all["call_unwind_fail"][1], Insn::new(CALL, 0, 0, 0, 5));
    // call local func1 at slot 10, func1 at slot 20.
    assert_eq!(all["call_local"][10], Insn::new(CALL, 0, 1, 0, 9));
    // prime.data: `ja exit` at slot 4 to the only exit (slot 15).
    assert_eq!(all["prime"][4], Insn::new(JA, 0, 0, 10, 0));
    assert_eq!(all["movsx1664-reg"][2].off, 16);
    assert_eq!(all["lddw2"][0].imm, i32::MIN);
}

/// Expected assembler messages for the hand-written negative vectors, from
/// bpf_conformance's tools/tests.cmake. `None`: the file is not an
/// assembler error.
fn expected_negative(name: &str) -> Option<Option<&'static [&'static str]>> {
    Some(match name {
        "invalid_imm32_dec_range" => Some(&["Immediate out of 32-bit range: 2147483648"]),
        "invalid_imm32_hex_range" => Some(&["Immediate out of 32-bit range: 0x100000000"]),
        "invalid_label" => Some(&["Invalid label: NOT_A_LABEL"]),
        "invalid_lock" | "invalid_lock2" => Some(&["Invalid number of operands for lock"]),
        "invalid_mnemonic" => Some(&["Invalid mnemonic: ldxq"]),
        "invalid_offset" => Some(&["Failed to decode register and offset: %r1"]),
        "invalid_offset_range" => Some(&["Offset out of 16-bit range: ", "0x10000"]),
        "invalid_operand_count" => Some(&["Invalid number of operands for mnemonic: lddw"]),
        "invalid_register" => Some(&["Invalid register: %r50"]),
        // Runner and runtime tests: they assemble (or have nothing to).
        "empty"
        | "empty_instructions"
        | "error"
        | "incorrect_return_value_high_bits"
        | "invalid_unknown_directive" => None,
        _ => return None,
    })
}

#[test]
fn negative_vectors_give_reference_messages() {
    let mut checked_errors = 0;
    let mut hand_written = 0;
    for v in vectors("conformance-negative") {
        if v.name.starts_with("unused-") {
            continue;
        }
        hand_written += 1;
        let expected = expected_negative(&v.name)
            .unwrap_or_else(|| panic!("{}: new negative vector, add it here", v.name));
        let result = assemble(v.asm.as_deref().unwrap_or(""));
        match expected {
            Some(parts) => {
                let err: AsmError = result.expect_err(&v.name);
                let msg = err.message();
                for p in parts {
                    assert!(msg.contains(p), "{}: {msg:?} lacks {p:?}", v.name);
                }
                // The asm errors sit on the first instruction line.
                let asm = v.asm.as_deref().unwrap();
                let first = asm
                    .lines()
                    .position(|l| !l.trim().is_empty())
                    .map(|p| p + 1);
                assert_eq!(Some(err.line()), first, "{}", v.name);
                if let Some(text) = v.error.as_deref().filter(|t| !t.is_empty()) {
                    assert!(
                        msg.contains(text),
                        "{}: {msg:?} vs -- error {text:?}",
                        v.name
                    );
                }
                checked_errors += 1;
            }
            None => {
                result.unwrap_or_else(|e| panic!("{}: {e}", v.name));
            }
        }
    }
    assert_eq!(hand_written, 15);
    assert_eq!(checked_errors, 10);
}

/// The `unused-*` vectors set a reserved field; the disassembler must fall
/// back to `.insn` for that slot and still round-trip.
#[test]
fn unused_field_vectors_print_raw() {
    let mut n = 0;
    for v in vectors("conformance-negative") {
        if !v.name.starts_with("unused-") {
            continue;
        }
        let bytes: Vec<u8> = v
            .raw
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| u8::from_str_radix(t, 16).unwrap())
            .collect();
        let insns = Insn::decode_all(&bytes).unwrap();
        let text = disassemble(&insns);
        assert!(
            text.lines().next().unwrap().starts_with(".insn "),
            "{}: {text}",
            v.name
        );
        assert_eq!(assemble(&text).unwrap(), insns, "{}: {text}", v.name);
        n += 1;
    }
    assert_eq!(n, 45);
}

#[test]
fn objdump_listing_covers_every_slot() {
    for (v, insns) in conformance() {
        let listing = objdump_listing(&insns);
        let lddw = insns.iter().filter(|i| i.is_lddw()).count();
        assert_eq!(listing.lines().count(), insns.len() - lddw, "{}", v.name);
        assert!(!listing.contains("<unknown>"), "{}:\n{listing}", v.name);
    }
}

// ---- comparison with LLVM ------------------------------------------------

fn tool(name: &str) -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(name),
        PathBuf::from("/usr/lib/llvm-16/bin").join(name.trim_end_matches("-16")),
    ];
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("16."))
    })
}

struct Llvm {
    clang: PathBuf,
    objdump: PathBuf,
}

/// LLVM 16 only: other releases print some instructions differently.
fn llvm() -> Option<Llvm> {
    let found = tool("clang-16").zip(tool("llvm-objdump-16"));
    if found.is_none() {
        eprintln!("clang-16 or llvm-objdump-16 not found; skipping LLVM comparison");
    }
    found.map(|(clang, objdump)| Llvm { clang, objdump })
}

/// One instruction line of `llvm-objdump -d`: (slot, bytes, text).
fn parse_objdump(out: &str) -> Vec<(usize, Vec<u8>, String)> {
    out.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let idx = parts.next()?.trim().strip_suffix(':')?.parse().ok()?;
            let bytes = parts
                .next()?
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            let mut text = parts.next()?.to_string();
            // Drop the `<LBB0_2>` / `<f+0x8>` branch annotation.
            if text.ends_with('>') && !text.ends_with("<unknown>") {
                if let Some(at) = text.rfind(" <") {
                    text.truncate(at);
                }
            }
            Some((
                idx,
                bytes,
                text.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .collect()
}

fn objdump(llvm: &Llvm, obj: &Path, alu32: bool) -> Vec<(usize, Vec<u8>, String)> {
    let mut cmd = Command::new(&llvm.objdump);
    cmd.arg("-d");
    if alu32 {
        cmd.arg("--mattr=+alu32");
    }
    let out = cmd.arg(obj).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_objdump(&String::from_utf8(out.stdout).unwrap())
}

/// Compares our listing of the object's bytes with LLVM's, slot by slot.
/// Returns how many lines were compared.
fn compare_with_llvm(llvm: &Llvm, obj: &Path, expect: Option<&[Insn]>) -> usize {
    let plain = objdump(llvm, obj, false);
    let alu32: HashMap<usize, String> = objdump(llvm, obj, true)
        .into_iter()
        .map(|(i, _, t)| (i, t))
        .collect();
    let bytes: Vec<u8> = plain.iter().flat_map(|(_, b, _)| b.clone()).collect();
    let insns = Insn::decode_all(&bytes).expect("whole slots");
    if let Some(expect) = expect {
        assert_eq!(insns, expect);
    }
    let ours: HashMap<usize, String> = parse_objdump(&objdump_listing(&insns))
        .into_iter()
        .map(|(i, _, t)| (i, t))
        .collect();
    let mut compared = 0;
    for (idx, _, text) in &plain {
        let insn = insns[*idx];
        // LLVM 16 decodes 32-bit atomics only with alu32, reads the callx
        // register from imm rather than dst, and ignores the v4 offsets of
        // sdiv/smod/movsx.
        let want = match insn.code {
            _ if min_isa(&[insn]) == "v4" => continue,
            0xc3 => &alu32[idx],
            CALLX => continue,
            _ => text,
        };
        if want == "<unknown>" {
            continue;
        }
        assert_eq!(ours.get(idx), Some(want), "slot {idx}: {insn:?}");
        compared += 1;
    }
    compared
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("userbpf-asm-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn listing_matches_llvm_on_vectors() {
    let Some(llvm) = llvm() else { return };
    let all: Vec<Insn> = conformance().into_iter().flat_map(|(_, i)| i).collect();
    let mut src = String::from(".text\n.globl f\nf:\n");
    for b in Insn::encode_all(&all) {
        src.push_str(&format!(".byte {b:#04x}\n"));
    }
    let dir = scratch("vectors");
    let (s, o) = (dir.join("v.s"), dir.join("v.o"));
    fs::write(&s, src).unwrap();
    let st = Command::new(&llvm.clang)
        .args(["-target", "bpf", "-c"])
        .arg(&s)
        .arg("-o")
        .arg(&o)
        .status()
        .unwrap();
    assert!(st.success());
    let compared = compare_with_llvm(&llvm, &o, Some(&all));
    fs::remove_dir_all(&dir).ok();
    // The 2762 slots include v4, ST and jset ones LLVM 16 cannot decode.
    assert!(compared > 2000, "only {compared} slots compared");
}

#[test]
fn listing_matches_llvm_on_compiled_c() {
    let Some(llvm) = llvm() else { return };
    let c = r#"
struct S { long a; int b; short c; signed char d; unsigned long e; };
static long (*helper5)(long) = (void *)5;
__attribute__((noinline)) static int callee(int x) { return x * 3 + 1; }
long prog(struct S *s, unsigned long n) {
    long r = s->a;
    int w = s->b;
    if (n > 2) r += w;
    if ((int)n < 7) w ^= 0x1234;
    if (r & 8) r = -r;
    if ((unsigned)w <= 99) w = -w;
    __sync_fetch_and_add(&s->a, n);
    long old = __sync_fetch_and_or(&s->a, 3);
    __sync_fetch_and_add(&s->b, 5);
    long x = __sync_lock_test_and_set(&s->a, 7);
    long y = __sync_val_compare_and_swap(&s->a, 7, 9);
    r += old + x + y + callee(w) + helper5(r);
    r = (signed char)r + (short)w + s->c + s->d;
    s->c = 1; s->d = r; s->b = w; s->e = -1;
    r += 0x1122334455667788;
    r /= n; r %= (n + 1); r <<= 3; r >>= w;
    unsigned u = (unsigned)r / (unsigned)(w | 1);
    u %= 77; u -= 5; u *= 3; u >>= 2;
    long z = (long)r >> 7;
    for (int i = 0; i < (int)n && i < 40; i++) z += i * u;
    return z + __builtin_bswap64(r) + __builtin_bswap32(w) + __builtin_bswap16(u);
}
"#;
    let dir = scratch("c");
    let (src, obj) = (dir.join("t.c"), dir.join("t.o"));
    fs::write(&src, c).unwrap();
    let mut total = 0;
    for cpu in ["-mcpu=v1", "-mcpu=v2", "-mcpu=v3"] {
        let st = Command::new(&llvm.clang)
            .args(["-target", "bpf", "-O2", "-c"])
            .arg(cpu)
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap();
        assert!(st.success(), "{cpu}");
        total += compare_with_llvm(&llvm, &obj, None);
    }
    fs::remove_dir_all(&dir).ok();
    eprintln!("compared {total} lines");
    assert!(total > 150, "only {total} lines compared");
}
