//! Assembler for the bpf_conformance text syntax (the `-- asm` sections of
//! the conformance and uBPF test vectors).
//!
//! The rules follow `lib/src/bpf_assembler.cc` of bpf_conformance (see
//! `shared/research/conformance.md` §3):
//!
//! * One instruction per line, split on whitespace; each operand loses one
//!   trailing comma, so memory operands hold no spaces (`[%r1+4]`).
//!   Everything from `#` to the end of the line is a comment.
//! * `name:` defines a label at the current slot. The first `exit`
//!   instruction also defines the label `exit`.
//! * Registers are `%r0`..`%r15` (`%r11`..`%r15` exist for negative tests).
//! * Immediates holding `0x` are unsigned hex (`<= 0xffffffff`), others are
//!   signed decimal in i32 range. Offsets: hex `<= 0xffff` (reinterpreted as
//!   i16) or decimal in i16 range. `lddw` takes any 64-bit value.
//! * Jump targets starting with `+`/`-` are slot offsets relative to the next
//!   instruction; anything else is a label. `call local` and `ja32` put the
//!   target in `imm`, every other jump in `off`.
//!
//! Deliberate differences from the C++ assembler, all of which only reject
//! input it would mangle or accept input it cannot express:
//!
//! * Numbers must be the whole token (C++ `stoll` stops at the first bad
//!   character, so `5abc` would be 5); the closing `]` of a memory operand
//!   is the only suffix allowed.
//! * Text after a label on the same line is an error (C++ drops it silently).
//! * A label jump whose distance does not fit the field is an error (C++
//!   truncates). Literal `ja32`/`call local` targets may use the full i32
//!   range (C++ limits them to i16), so `ja32 +100000` round-trips.
//! * `lock` with a missing operation (`lock fetch`) is an operand-count
//!   error, not undefined behaviour.
//!
//! Extensions, printed by [`crate::disasm`] so that every instruction
//! sequence round-trips:
//!
//! * `lddw %rN, KIND VALUE` with KIND one of `map_fd`, `map_value`,
//!   `btf_id`, `func`, `map_idx`, `map_idx_value` sets the `lddw` source to
//!   the matching `BPF_PSEUDO_*` value (1..=6). VALUE is a 64-bit immediate
//!   whose low half goes into the first slot and high half into the second,
//!   as for plain `lddw` (for `map_value` that is the fd plus the value
//!   offset shifted left by 32).
//! * `.insn CODE, DST, SRC, OFF, IMM` emits one raw slot. CODE is 0..=255
//!   (decimal or hex), DST and SRC are 0..=15, OFF and IMM follow the offset
//!   and immediate rules above.

use std::collections::HashMap;

use thiserror::Error;

use crate::isa::*;

/// An assembly error. `Display` gives `line N: <message>`, where the message
/// is the text bpf_conformance's assembler would report (see
/// [`AsmError::message`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AsmError {
    #[error("line {line}: Invalid mnemonic: {mnemonic}")]
    InvalidMnemonic { line: usize, mnemonic: String },
    #[error("line {line}: Invalid number of operands for mnemonic: {mnemonic}")]
    OperandCount { line: usize, mnemonic: String },
    #[error("line {line}: Invalid number of operands for lock")]
    LockOperandCount { line: usize },
    #[error("line {line}: Invalid register: {operand}")]
    InvalidRegister { line: usize, operand: String },
    #[error("line {line}: Failed to decode register and offset: {operand}")]
    InvalidMemoryOperand { line: usize, operand: String },
    #[error("line {line}: Offset out of 16-bit range: {value}")]
    OffsetOutOfRange { line: usize, value: String },
    #[error("line {line}: Immediate out of 32-bit range: {value}")]
    ImmediateOutOfRange { line: usize, value: String },
    #[error("line {line}: Immediate out of 64-bit range: {value}")]
    Immediate64OutOfRange { line: usize, value: String },
    #[error("line {line}: Invalid number: {token}")]
    InvalidNumber { line: usize, token: String },
    #[error("line {line}: Invalid call mode: {mode}")]
    InvalidCallMode { line: usize, mode: String },
    #[error("line {line}: Invalid label: {label}")]
    InvalidLabel { line: usize, label: String },
    #[error(
        "line {line}: Duplicate label ({label}) detected (previous declaration at line {previous})"
    )]
    DuplicateLabel {
        line: usize,
        label: String,
        previous: usize,
    },
    #[error("line {line}: Unexpected text after label: {label}")]
    TextAfterLabel { line: usize, label: String },
    #[error("line {line}: Jump to label {label} out of range: {distance} slots")]
    JumpOutOfRange {
        line: usize,
        label: String,
        distance: i64,
    },
    #[error("line {line}: Invalid {field}: {value}")]
    InvalidField {
        line: usize,
        field: &'static str,
        value: String,
    },
}

impl AsmError {
    /// The 1-based source line the error was found on.
    pub fn line(&self) -> usize {
        match self {
            AsmError::InvalidMnemonic { line, .. }
            | AsmError::OperandCount { line, .. }
            | AsmError::LockOperandCount { line }
            | AsmError::InvalidRegister { line, .. }
            | AsmError::InvalidMemoryOperand { line, .. }
            | AsmError::OffsetOutOfRange { line, .. }
            | AsmError::ImmediateOutOfRange { line, .. }
            | AsmError::Immediate64OutOfRange { line, .. }
            | AsmError::InvalidNumber { line, .. }
            | AsmError::InvalidCallMode { line, .. }
            | AsmError::InvalidLabel { line, .. }
            | AsmError::DuplicateLabel { line, .. }
            | AsmError::TextAfterLabel { line, .. }
            | AsmError::JumpOutOfRange { line, .. }
            | AsmError::InvalidField { line, .. } => *line,
        }
    }

    /// The message without the `line N: ` prefix.
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = format!("line {}: ", self.line());
        match full.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => full,
        }
    }
}

/// Assembles conformance-syntax source into instruction slots (`lddw` takes
/// two). Errors carry the source line.
pub fn assemble(src: &str) -> Result<Vec<Insn>, AsmError> {
    let mut out: Vec<Insn> = Vec::new();
    // Label name -> (slot, source line).
    let mut labels: HashMap<String, (usize, usize)> = HashMap::new();
    let mut fixups: Vec<Fixup> = Vec::new();
    let mut seen_exit = false;

    for (idx, raw) in src.lines().enumerate() {
        let line = idx + 1;
        let text = raw.split('#').next().unwrap_or("");
        let mut tokens = text.split_whitespace();
        let Some(mnemonic) = tokens.next() else {
            continue;
        };
        let operands: Vec<&str> = tokens.map(|t| t.strip_suffix(',').unwrap_or(t)).collect();

        if let Some(label) = mnemonic.strip_suffix(':') {
            if !operands.is_empty() {
                return Err(AsmError::TextAfterLabel {
                    line,
                    label: label.to_string(),
                });
            }
            if let Some(&(_, previous)) = labels.get(label) {
                return Err(AsmError::DuplicateLabel {
                    line,
                    label: label.to_string(),
                    previous,
                });
            }
            labels.insert(label.to_string(), (out.len(), line));
            continue;
        }

        // The reference assembler lets the first `exit` (re)define `exit`,
        // so `jne %r0, %r1, exit` works without a label line.
        if mnemonic == "exit" && !seen_exit {
            labels.insert("exit".to_string(), (out.len(), line));
            seen_exit = true;
        }

        let cx = Line { line };
        let enc = cx.encode(mnemonic, operands)?;
        let slot = out.len();
        if let Some((label, field)) = enc.target {
            fixups.push(Fixup {
                slot,
                line,
                label,
                field,
            });
        }
        out.push(enc.first);
        if let Some(second) = enc.second {
            out.push(second);
        }
    }

    for f in fixups {
        let Some(&(target, _)) = labels.get(&f.label) else {
            return Err(AsmError::InvalidLabel {
                line: f.line,
                label: f.label,
            });
        };
        let distance = target as i64 - f.slot as i64 - 1;
        let insn = &mut out[f.slot];
        let fits = match f.field {
            TargetField::Off => i16::try_from(distance).map(|d| insn.off = d).is_ok(),
            TargetField::Imm => i32::try_from(distance).map(|d| insn.imm = d).is_ok(),
        };
        if !fits {
            return Err(AsmError::JumpOutOfRange {
                line: f.line,
                label: f.label,
                distance,
            });
        }
    }
    Ok(out)
}

/// Where a label's distance goes once it is known.
#[derive(Clone, Copy, Debug)]
enum TargetField {
    Off,
    Imm,
}

struct Fixup {
    slot: usize,
    line: usize,
    label: String,
    field: TargetField,
}

/// One encoded source line.
struct Encoded {
    first: Insn,
    second: Option<Insn>,
    target: Option<(String, TargetField)>,
}

impl Encoded {
    fn one(insn: Insn) -> Self {
        Encoded {
            first: insn,
            second: None,
            target: None,
        }
    }
}

/// What a mnemonic assembles to, before its operands are read.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Two-operand ALU op; `off` is 1 for sdiv/smod, 8/16/32 for movsx.
    Alu {
        class: u8,
        op: u8,
        off: i16,
    },
    Neg {
        class: u8,
    },
    /// Byte swap: full opcode and width.
    End {
        code: u8,
        width: i32,
    },
    Lddw,
    Ldx {
        code: u8,
    },
    St {
        code: u8,
    },
    Stx {
        code: u8,
    },
    Ja,
    Ja32,
    Jcc {
        class: u8,
        op: u8,
    },
    Call,
    Exit,
    Raw,
}

impl Kind {
    fn operand_count(self) -> usize {
        match self {
            Kind::Exit => 0,
            Kind::Neg { .. } | Kind::End { .. } | Kind::Ja | Kind::Ja32 => 1,
            Kind::Alu { .. }
            | Kind::Lddw
            | Kind::Ldx { .. }
            | Kind::St { .. }
            | Kind::Stx { .. }
            | Kind::Call => 2,
            Kind::Jcc { .. } => 3,
            Kind::Raw => 5,
        }
    }
}

fn alu_op(name: &str) -> Option<(u8, i16)> {
    Some(match name {
        "add" => (BPF_ADD, 0),
        "sub" => (BPF_SUB, 0),
        "mul" => (BPF_MUL, 0),
        "div" => (BPF_DIV, 0),
        "sdiv" => (BPF_DIV, 1),
        "or" => (BPF_OR, 0),
        "and" => (BPF_AND, 0),
        "lsh" => (BPF_LSH, 0),
        "rsh" => (BPF_RSH, 0),
        "mod" => (BPF_MOD, 0),
        "smod" => (BPF_MOD, 1),
        "xor" => (BPF_XOR, 0),
        "mov" => (BPF_MOV, 0),
        "arsh" => (BPF_ARSH, 0),
        _ => return None,
    })
}

fn jmp_op(name: &str) -> Option<u8> {
    Some(match name {
        "jeq" => BPF_JEQ,
        "jgt" => BPF_JGT,
        "jge" => BPF_JGE,
        "jset" => BPF_JSET,
        "jne" => BPF_JNE,
        "jsgt" => BPF_JSGT,
        "jsge" => BPF_JSGE,
        "jlt" => BPF_JLT,
        "jle" => BPF_JLE,
        "jslt" => BPF_JSLT,
        "jsle" => BPF_JSLE,
        _ => return None,
    })
}

/// The mnemonic table of bpf_conformance (plus `.insn`). Note that a `64`
/// suffix (`add64`) is not accepted: no suffix means 64-bit.
fn lookup(mnemonic: &str) -> Option<Kind> {
    let mem = |mode: u8, size: u8| mode | size;
    Some(match mnemonic {
        "neg" => Kind::Neg { class: BPF_ALU64 },
        "neg32" => Kind::Neg { class: BPF_ALU },
        "movsx864" => Kind::Alu {
            class: BPF_ALU64,
            op: BPF_MOV,
            off: 8,
        },
        "movsx1664" => Kind::Alu {
            class: BPF_ALU64,
            op: BPF_MOV,
            off: 16,
        },
        "movsx3264" => Kind::Alu {
            class: BPF_ALU64,
            op: BPF_MOV,
            off: 32,
        },
        "movsx832" => Kind::Alu {
            class: BPF_ALU,
            op: BPF_MOV,
            off: 8,
        },
        "movsx1632" => Kind::Alu {
            class: BPF_ALU,
            op: BPF_MOV,
            off: 16,
        },
        "be16" | "be32" | "be64" | "le16" | "le32" | "le64" | "swap16" | "swap32" | "swap64"
        | "bswap16" | "bswap32" | "bswap64" => {
            let (name, width) = mnemonic.split_at(mnemonic.len() - 2);
            let code = match name {
                "be" => BPF_ALU | BPF_END | BPF_TO_BE,
                "le" => BPF_ALU | BPF_END | BPF_TO_LE,
                _ => BPF_ALU64 | BPF_END | BPF_TO_LE,
            };
            let width = width.parse().ok()?;
            Kind::End { code, width }
        }
        "lddw" => Kind::Lddw,
        "ldxb" => Kind::Ldx {
            code: BPF_LDX | mem(BPF_MEM, BPF_B),
        },
        "ldxh" => Kind::Ldx {
            code: BPF_LDX | mem(BPF_MEM, BPF_H),
        },
        "ldxw" => Kind::Ldx {
            code: BPF_LDX | mem(BPF_MEM, BPF_W),
        },
        "ldxdw" => Kind::Ldx {
            code: BPF_LDX | mem(BPF_MEM, BPF_DW),
        },
        "ldxsb" => Kind::Ldx {
            code: BPF_LDX | mem(BPF_MEMSX, BPF_B),
        },
        "ldxsh" => Kind::Ldx {
            code: BPF_LDX | mem(BPF_MEMSX, BPF_H),
        },
        "ldxsw" => Kind::Ldx {
            code: BPF_LDX | mem(BPF_MEMSX, BPF_W),
        },
        "stb" => Kind::St {
            code: BPF_ST | mem(BPF_MEM, BPF_B),
        },
        "sth" => Kind::St {
            code: BPF_ST | mem(BPF_MEM, BPF_H),
        },
        "stw" => Kind::St {
            code: BPF_ST | mem(BPF_MEM, BPF_W),
        },
        "stdw" => Kind::St {
            code: BPF_ST | mem(BPF_MEM, BPF_DW),
        },
        "stxb" => Kind::Stx {
            code: BPF_STX | mem(BPF_MEM, BPF_B),
        },
        "stxh" => Kind::Stx {
            code: BPF_STX | mem(BPF_MEM, BPF_H),
        },
        "stxw" => Kind::Stx {
            code: BPF_STX | mem(BPF_MEM, BPF_W),
        },
        "stxdw" => Kind::Stx {
            code: BPF_STX | mem(BPF_MEM, BPF_DW),
        },
        "ja" => Kind::Ja,
        "ja32" => Kind::Ja32,
        "call" => Kind::Call,
        "exit" => Kind::Exit,
        ".insn" => Kind::Raw,
        _ => {
            let (base, is32) = match mnemonic.strip_suffix("32") {
                Some(base) => (base, true),
                None => (mnemonic, false),
            };
            if let Some((op, off)) = alu_op(base) {
                let class = if is32 { BPF_ALU } else { BPF_ALU64 };
                Kind::Alu { class, op, off }
            } else if let Some(op) = jmp_op(base) {
                let class = if is32 { BPF_JMP32 } else { BPF_JMP };
                Kind::Jcc { class, op }
            } else {
                return None;
            }
        }
    })
}

/// Atomic operations after `lock`: (name, imm, fetch allowed).
fn atomic_op(name: &str) -> Option<(u8, i32, bool)> {
    let (base, size) = match name.strip_suffix("32") {
        Some(base) => (base, BPF_W),
        None => (name, BPF_DW),
    };
    let (imm, fetchable) = match base {
        "add" => (BPF_ATOMIC_ADD, true),
        "or" => (BPF_ATOMIC_OR, true),
        "and" => (BPF_ATOMIC_AND, true),
        "xor" => (BPF_ATOMIC_XOR, true),
        "xchg" => (BPF_XCHG, false),
        "cmpxchg" => (BPF_CMPXCHG, false),
        _ => return None,
    };
    Some((BPF_STX | BPF_ATOMIC | size, imm, fetchable))
}

/// Pseudo sources accepted in the `lddw %rN, KIND VALUE` extension.
pub(crate) const LDDW_PSEUDO: [(&str, u8); 6] = [
    ("map_fd", BPF_PSEUDO_MAP_FD),
    ("map_value", BPF_PSEUDO_MAP_VALUE),
    ("btf_id", BPF_PSEUDO_BTF_ID),
    ("func", BPF_PSEUDO_FUNC),
    ("map_idx", BPF_PSEUDO_MAP_IDX),
    ("map_idx_value", BPF_PSEUDO_MAP_IDX_VALUE),
];

const REGISTERS: [&str; 16] = [
    "%r0", "%r1", "%r2", "%r3", "%r4", "%r5", "%r6", "%r7", "%r8", "%r9", "%r10", "%r11", "%r12",
    "%r13", "%r14", "%r15",
];

/// Why a number did not parse.
enum NumError {
    Invalid,
    Overflow,
}

/// Parses `[+-]digits` (hex digits after an optional `0x` when `hex`),
/// like C's `strtoull` but demanding the whole token. A `-` negates modulo
/// 2^64, as `strtoull` does.
fn parse_u64(s: &str, hex: bool) -> Result<u64, NumError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (digits, radix) = if hex {
        let d = body
            .strip_prefix("0x")
            .or_else(|| body.strip_prefix("0X"))
            .unwrap_or(body);
        (d, 16)
    } else {
        (body, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(NumError::Invalid);
    }
    let v = u64::from_str_radix(digits, radix).map_err(|_| NumError::Overflow)?;
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Signed decimal, like `stoll` on the whole token.
fn parse_i64(s: &str) -> Result<i64, NumError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit()) {
        return Err(NumError::Invalid);
    }
    let mag = body.parse::<u64>().map_err(|_| NumError::Overflow)?;
    if neg {
        0i64.checked_sub_unsigned(mag).ok_or(NumError::Overflow)
    } else {
        i64::try_from(mag).map_err(|_| NumError::Overflow)
    }
}

/// Per-line parsing context, so every error gets the line number.
struct Line {
    line: usize,
}

impl Line {
    fn invalid_number(&self, token: &str) -> AsmError {
        AsmError::InvalidNumber {
            line: self.line,
            token: token.to_string(),
        }
    }

    fn reg(&self, s: &str) -> Result<u8, AsmError> {
        REGISTERS
            .iter()
            .position(|r| *r == s)
            .map(|r| r as u8)
            .ok_or_else(|| AsmError::InvalidRegister {
                line: self.line,
                operand: s.to_string(),
            })
    }

    fn imm32(&self, s: &str) -> Result<i32, AsmError> {
        let range = || AsmError::ImmediateOutOfRange {
            line: self.line,
            value: s.to_string(),
        };
        if s.contains("0x") {
            match parse_u64(s, true) {
                Ok(v) => u32::try_from(v).map(|v| v as i32).map_err(|_| range()),
                Err(NumError::Overflow) => Err(range()),
                Err(NumError::Invalid) => Err(self.invalid_number(s)),
            }
        } else {
            match parse_i64(s) {
                Ok(v) => i32::try_from(v).map_err(|_| range()),
                Err(NumError::Overflow) => Err(range()),
                Err(NumError::Invalid) => Err(self.invalid_number(s)),
            }
        }
    }

    fn imm64(&self, s: &str) -> Result<u64, AsmError> {
        let parsed = if s.contains("0x") {
            parse_u64(s, true)
        } else if s.starts_with('-') {
            parse_i64(s).map(|v| v as u64)
        } else {
            parse_u64(s, false)
        };
        parsed.map_err(|e| match e {
            NumError::Overflow => AsmError::Immediate64OutOfRange {
                line: self.line,
                value: s.to_string(),
            },
            NumError::Invalid => self.invalid_number(s),
        })
    }

    fn offset(&self, s: &str) -> Result<i16, AsmError> {
        let range = || AsmError::OffsetOutOfRange {
            line: self.line,
            value: s.to_string(),
        };
        if s.contains("0x") {
            // `-0x10` parses to a huge unsigned value and is rejected here,
            // as in the reference.
            match parse_u64(s, true) {
                Ok(v) => u16::try_from(v).map(|v| v as i16).map_err(|_| range()),
                Err(NumError::Overflow) => Err(range()),
                Err(NumError::Invalid) => Err(self.invalid_number(s)),
            }
        } else {
            match parse_i64(s) {
                Ok(v) => i16::try_from(v).map_err(|_| range()),
                Err(NumError::Overflow) => Err(range()),
                Err(NumError::Invalid) => Err(self.invalid_number(s)),
            }
        }
    }

    /// `[%rN]`, `[%rN+OFF]` or `[%rN-OFF]`.
    fn mem(&self, s: &str) -> Result<(u8, i16), AsmError> {
        let inner = s
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or_else(|| AsmError::InvalidMemoryOperand {
                line: self.line,
                operand: s.to_string(),
            })?;
        // The register ends at the first `+`, else the first `-`.
        let split = inner.find('+').or_else(|| inner.find('-'));
        match split {
            None => Ok((self.reg(inner)?, 0)),
            Some(at) => {
                let (reg, off) = inner.split_at(at);
                Ok((self.reg(reg)?, self.offset(off)?))
            }
        }
    }

    /// A literal `+N`/`-N` offset, or a label to fix up later.
    fn target_off(&self, s: &str) -> Result<(i16, Option<String>), AsmError> {
        if s.starts_with('+') || s.starts_with('-') {
            Ok((self.offset(s)?, None))
        } else {
            Ok((0, Some(s.to_string())))
        }
    }

    /// Like [`Line::target_off`] for targets held in `imm` (wider range).
    fn target_imm(&self, s: &str) -> Result<(i32, Option<String>), AsmError> {
        if s.starts_with('+') || s.starts_with('-') {
            Ok((self.imm32(s)?, None))
        } else {
            Ok((0, Some(s.to_string())))
        }
    }

    fn count_error(&self, mnemonic: &str) -> AsmError {
        AsmError::OperandCount {
            line: self.line,
            mnemonic: mnemonic.to_string(),
        }
    }

    fn encode(&self, mnemonic: &str, mut ops: Vec<&str>) -> Result<Encoded, AsmError> {
        if mnemonic == "lock" {
            return self.encode_lock(ops);
        }
        let kind = lookup(mnemonic).ok_or_else(|| AsmError::InvalidMnemonic {
            line: self.line,
            mnemonic: mnemonic.to_string(),
        })?;
        if matches!(kind, Kind::Call) && ops.len() == 1 {
            ops.insert(0, "helper");
        }
        let pseudo_lddw = matches!(kind, Kind::Lddw) && ops.len() == 3;
        if ops.len() != kind.operand_count() && !pseudo_lddw {
            return Err(self.count_error(mnemonic));
        }

        let insn = match kind {
            Kind::Alu { class, op, off } => {
                let dst = self.reg(ops[0])?;
                if ops[1].starts_with('%') {
                    let src = self.reg(ops[1])?;
                    Insn::new(class | op | BPF_X, dst, src, off, 0)
                } else {
                    let imm = self.imm32(ops[1])?;
                    Insn::new(class | op | BPF_K, dst, 0, off, imm)
                }
            }
            Kind::Neg { class } => Insn::new(class | BPF_NEG, self.reg(ops[0])?, 0, 0, 0),
            Kind::End { code, width } => Insn::new(code, self.reg(ops[0])?, 0, 0, width),
            Kind::Lddw => return self.encode_lddw(mnemonic, &ops),
            Kind::Ldx { code } => {
                let dst = self.reg(ops[0])?;
                let (src, off) = self.mem(ops[1])?;
                Insn::new(code, dst, src, off, 0)
            }
            Kind::St { code } => {
                let (dst, off) = self.mem(ops[0])?;
                Insn::new(code, dst, 0, off, self.imm32(ops[1])?)
            }
            Kind::Stx { code } => {
                let (dst, off) = self.mem(ops[0])?;
                Insn::new(code, dst, self.reg(ops[1])?, off, 0)
            }
            Kind::Ja => {
                let (off, label) = self.target_off(ops[0])?;
                return Ok(Encoded {
                    first: Insn::new(JA, 0, 0, off, 0),
                    second: None,
                    target: label.map(|l| (l, TargetField::Off)),
                });
            }
            Kind::Ja32 => {
                let (imm, label) = self.target_imm(ops[0])?;
                return Ok(Encoded {
                    first: Insn::new(JA32, 0, 0, 0, imm),
                    second: None,
                    target: label.map(|l| (l, TargetField::Imm)),
                });
            }
            Kind::Jcc { class, op } => {
                let dst = self.reg(ops[0])?;
                let (off, label) = self.target_off(ops[2])?;
                let first = if ops[1].starts_with('%') {
                    Insn::new(class | op | BPF_X, dst, self.reg(ops[1])?, off, 0)
                } else {
                    Insn::new(class | op | BPF_K, dst, 0, off, self.imm32(ops[1])?)
                };
                return Ok(Encoded {
                    first,
                    second: None,
                    target: label.map(|l| (l, TargetField::Off)),
                });
            }
            Kind::Call => return self.encode_call(ops[0], ops[1]),
            Kind::Exit => Insn::new(EXIT, 0, 0, 0, 0),
            Kind::Raw => self.encode_raw(&ops)?,
        };
        Ok(Encoded::one(insn))
    }

    fn encode_lddw(&self, mnemonic: &str, ops: &[&str]) -> Result<Encoded, AsmError> {
        let dst = self.reg(ops[0])?;
        let (src, value) = match ops {
            [_, value] => (BPF_PSEUDO_NONE, *value),
            [_, kind, value] => {
                let src = LDDW_PSEUDO
                    .iter()
                    .find(|(name, _)| name == kind)
                    .map(|(_, src)| *src)
                    .ok_or_else(|| self.count_error(mnemonic))?;
                (src, *value)
            }
            _ => return Err(self.count_error(mnemonic)),
        };
        let imm = self.imm64(value)?;
        Ok(Encoded {
            first: Insn::new(LDDW, dst, src, 0, imm as u32 as i32),
            second: Some(Insn::new(0, 0, 0, 0, (imm >> 32) as u32 as i32)),
            target: None,
        })
    }

    fn encode_call(&self, mode: &str, target: &str) -> Result<Encoded, AsmError> {
        let insn = match mode {
            "helper" if target.starts_with('%') => Insn::new(CALLX, self.reg(target)?, 0, 0, 0),
            "helper" => Insn::new(CALL, 0, BPF_CALL_HELPER, 0, self.imm32(target)?),
            "local" => {
                let (imm, label) = self.target_imm(target)?;
                return Ok(Encoded {
                    first: Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, imm),
                    second: None,
                    target: label.map(|l| (l, TargetField::Imm)),
                });
            }
            "runtime" => Insn::new(CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, self.imm32(target)?),
            _ => {
                return Err(AsmError::InvalidCallMode {
                    line: self.line,
                    mode: mode.to_string(),
                })
            }
        };
        Ok(Encoded::one(insn))
    }

    /// `lock [fetch] OP [%rD±off], %rS`, rewritten the way the reference
    /// does: insert a `no_fetch` marker, then swap it with the operation.
    fn encode_lock(&self, mut ops: Vec<&str>) -> Result<Encoded, AsmError> {
        let count = || AsmError::LockOperandCount { line: self.line };
        if ops.len() > 1 && ops[0] != "fetch" {
            ops.insert(0, "no_fetch");
        }
        if ops.len() < 2 {
            return Err(count());
        }
        ops.swap(0, 1);
        let name = ops.remove(0);
        let (code, imm, fetchable) = atomic_op(name).ok_or_else(|| AsmError::InvalidMnemonic {
            line: self.line,
            mnemonic: format!("lock {name}"),
        })?;
        if ops.len() != 3 {
            return Err(count());
        }
        let (dst, off) = self.mem(ops[1])?;
        let src = self.reg(ops[2])?;
        // xchg/cmpxchg always fetch; an explicit `fetch` is accepted and
        // changes nothing, as in the reference.
        let imm = if fetchable && ops[0] == "fetch" {
            imm | BPF_FETCH
        } else {
            imm
        };
        Ok(Encoded::one(Insn::new(code, dst, src, off, imm)))
    }

    fn encode_raw(&self, ops: &[&str]) -> Result<Insn, AsmError> {
        let field = |field: &'static str, s: &str, max: u64| -> Result<u8, AsmError> {
            match parse_u64(s, s.contains("0x")) {
                Ok(v) if v <= max && !s.starts_with('-') => Ok(v as u8),
                _ => Err(AsmError::InvalidField {
                    line: self.line,
                    field,
                    value: s.to_string(),
                }),
            }
        };
        Ok(Insn::new(
            field("opcode", ops[0], 0xff)?,
            field("dst register", ops[1], 15)?,
            field("src register", ops[2], 15)?,
            self.offset(ops[3])?,
            self.imm32(ops[4])?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Insn {
        let v = assemble(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(v.len(), 1, "{src}");
        v[0]
    }

    fn err(src: &str) -> AsmError {
        match assemble(src) {
            Ok(v) => panic!("{src} assembled to {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn alu_encodings() {
        assert_eq!(one("add %r1, %r2"), Insn::new(0x0f, 1, 2, 0, 0));
        assert_eq!(one("add32 %r1, 5"), Insn::new(0x04, 1, 0, 0, 5));
        assert_eq!(one("mov %r0, -10"), Insn::new(0xb7, 0, 0, 0, -10));
        assert_eq!(one("mov32 %r0, 0xffffffff"), Insn::new(0xb4, 0, 0, 0, -1));
        assert_eq!(one("neg %r3"), Insn::new(0x87, 3, 0, 0, 0));
        assert_eq!(one("neg32 %r3"), Insn::new(0x84, 3, 0, 0, 0));
        assert_eq!(one("sdiv %r1, %r2"), Insn::new(0x3f, 1, 2, 1, 0));
        assert_eq!(one("smod32 %r1, -3"), Insn::new(0x94, 1, 0, 1, -3));
        assert_eq!(one("movsx1664 %r0, %r1"), Insn::new(0xbf, 0, 1, 16, 0));
        assert_eq!(one("movsx832 %r0, %r1"), Insn::new(0xbc, 0, 1, 8, 0));
        assert_eq!(one("movsx3264 %r0, %r1"), Insn::new(0xbf, 0, 1, 32, 0));
        assert_eq!(one("arsh32 %r1, %r2"), Insn::new(0xcc, 1, 2, 0, 0));
    }

    #[test]
    fn byte_swap_encodings() {
        assert_eq!(one("be16 %r1"), Insn::new(0xdc, 1, 0, 0, 16));
        assert_eq!(one("le64 %r1"), Insn::new(0xd4, 1, 0, 0, 64));
        assert_eq!(one("swap32 %r1"), Insn::new(0xd7, 1, 0, 0, 32));
        assert_eq!(one("bswap64 %r2"), Insn::new(0xd7, 2, 0, 0, 64));
    }

    #[test]
    fn memory_encodings() {
        assert_eq!(one("ldxb %r0, [%r1]"), Insn::new(0x71, 0, 1, 0, 0));
        assert_eq!(one("ldxdw %r0, [%r10-8]"), Insn::new(0x79, 0, 10, -8, 0));
        assert_eq!(one("ldxsh %r0, [%r1+0x2]"), Insn::new(0x89, 0, 1, 2, 0));
        assert_eq!(one("ldxh %r0, [%r1+0xffff]"), Insn::new(0x69, 0, 1, -1, 0));
        assert_eq!(
            one("stw [%r1+4], 0x80000000"),
            Insn::new(0x62, 1, 0, 4, i32::MIN)
        );
        assert_eq!(one("stxdw [%r10-16], %r3"), Insn::new(0x7b, 10, 3, -16, 0));
    }

    #[test]
    fn atomic_encodings() {
        assert_eq!(
            one("lock fetch add32 [%r10-4], %r1"),
            Insn::new(0xc3, 10, 1, -4, 0x01)
        );
        assert_eq!(one("lock add [%r10-8], %r1"), Insn::new(0xdb, 10, 1, -8, 0));
        assert_eq!(one("lock or32 [%r1], %r2"), Insn::new(0xc3, 1, 2, 0, 0x40));
        assert_eq!(
            one("lock fetch xor [%r1+8], %r2"),
            Insn::new(0xdb, 1, 2, 8, 0xa1)
        );
        assert_eq!(one("lock xchg [%r1], %r2"), Insn::new(0xdb, 1, 2, 0, 0xe1));
        assert_eq!(
            one("lock cmpxchg32 [%r1], %r2"),
            Insn::new(0xc3, 1, 2, 0, 0xf1)
        );
    }

    #[test]
    fn jumps_and_labels() {
        let p = assemble("ja32 l\nexit\nl:\nja32 -3\n").unwrap();
        assert_eq!(p[0], Insn::new(0x06, 0, 0, 0, 1));
        assert_eq!(p[2], Insn::new(0x06, 0, 0, 0, -3));
        let p = assemble("jne %r0, 5, exit\nmov %r0, 1\nexit\n").unwrap();
        assert_eq!(p[0], Insn::new(0x55, 0, 0, 1, 5));
        let p = assemble("jsle32 %r1, %r2, +0x7fff").unwrap();
        assert_eq!(p[0], Insn::new(0xde, 1, 2, 0x7fff, 0));
        // lddw takes two slots, both count towards the distance.
        let p = assemble("ja end\nlddw %r0, 1\nend:\nexit").unwrap();
        assert_eq!(p[0].off, 2);
        // Labels may come before their use.
        let p = assemble("top:\nmov %r0, 0\nja top").unwrap();
        assert_eq!(p[1].off, -2);
    }

    #[test]
    fn call_encodings() {
        assert_eq!(one("call 5"), Insn::new(0x85, 0, 0, 0, 5));
        assert_eq!(one("call helper 0x1"), Insn::new(0x85, 0, 0, 0, 1));
        assert_eq!(one("call %r2"), Insn::new(0x8d, 2, 0, 0, 0));
        assert_eq!(one("call runtime 7"), Insn::new(0x85, 0, 2, 0, 7));
        let p = assemble("call local f\nexit\nf:\nexit").unwrap();
        assert_eq!(p[0], Insn::new(0x85, 0, 1, 0, 1));
        assert_eq!(one("call local -1"), Insn::new(0x85, 0, 1, 0, -1));
    }

    #[test]
    fn lddw_encodings() {
        let p = assemble("lddw %r0, 0x1122334455667788").unwrap();
        assert_eq!(p[0], Insn::new(0x18, 0, 0, 0, 0x55667788));
        assert_eq!(p[1], Insn::new(0, 0, 0, 0, 0x11223344));
        let p = assemble("lddw %r1, -2").unwrap();
        assert_eq!((p[0].imm, p[1].imm), (-2, -1));
        let p = assemble("lddw %r1, 18446744073709551615").unwrap();
        assert_eq!((p[0].imm, p[1].imm), (-1, -1));
        let p = assemble("lddw %r2, map_fd 7").unwrap();
        assert_eq!(p[0], Insn::new(0x18, 2, 1, 0, 7));
        let p = assemble("lddw %r2, map_value 0x1000000003").unwrap();
        assert_eq!(p[0], Insn::new(0x18, 2, 2, 0, 3));
        assert_eq!(p[1], Insn::new(0, 0, 0, 0, 0x10));
    }

    #[test]
    fn raw_slot_extension() {
        assert_eq!(
            one(".insn 0xff, 15, 3, -8, 0x10"),
            Insn::new(0xff, 15, 3, -8, 16)
        );
        assert!(matches!(
            err(".insn 0x100, 0, 0, 0, 0"),
            AsmError::InvalidField { .. }
        ));
        assert!(matches!(
            err(".insn 1, 16, 0, 0, 0"),
            AsmError::InvalidField { .. }
        ));
    }

    #[test]
    fn comments_and_whitespace() {
        let p = assemble("  # nothing\n\tmov   %r0,\t1   # set r0\r\n\nexit\n").unwrap();
        assert_eq!(
            p,
            vec![Insn::new(0xb7, 0, 0, 0, 1), Insn::new(0x95, 0, 0, 0, 0)]
        );
        assert_eq!(assemble("").unwrap(), vec![]);
    }

    #[test]
    fn error_messages() {
        let e = err("or %r0, %r50");
        assert_eq!(e.message(), "Invalid register: %r50");
        assert_eq!(e.line(), 1);
        assert_eq!(e.to_string(), "line 1: Invalid register: %r50");
        assert_eq!(
            err("ldxb %r0, %r1").message(),
            "Failed to decode register and offset: %r1"
        );
        assert_eq!(
            err("\nldxb %r0, [%r1+0x10000]").to_string(),
            "line 2: Offset out of 16-bit range: +0x10000"
        );
        assert_eq!(
            err("mov32 %r0, 0x100000000").message(),
            "Immediate out of 32-bit range: 0x100000000"
        );
        assert_eq!(
            err("mov32 %r0, 2147483648").message(),
            "Immediate out of 32-bit range: 2147483648"
        );
        assert_eq!(
            err("mov %r0, -2147483649").message(),
            "Immediate out of 32-bit range: -2147483649"
        );
        assert_eq!(err("ldxq %r0, %r1").message(), "Invalid mnemonic: ldxq");
        assert_eq!(err("add64 %r0, 1").message(), "Invalid mnemonic: add64");
        assert_eq!(
            err("lddw %r0").message(),
            "Invalid number of operands for mnemonic: lddw"
        );
        assert_eq!(
            err("ja NOT_A_LABEL\nexit").message(),
            "Invalid label: NOT_A_LABEL"
        );
        assert_eq!(err("lock").message(), "Invalid number of operands for lock");
        assert_eq!(
            err("lock or [%r10-8]").message(),
            "Invalid number of operands for lock"
        );
        assert_eq!(
            err("lock fetch").message(),
            "Invalid number of operands for lock"
        );
        assert_eq!(err("call foo 1").message(), "Invalid call mode: foo");
        assert_eq!(
            err("ldxb %r0, [%r1-0x10]").message(),
            "Offset out of 16-bit range: -0x10"
        );
        assert_eq!(err("mov %r0, 5abc").message(), "Invalid number: 5abc");
        assert!(matches!(
            err("a:\nexit\na:\nexit"),
            AsmError::DuplicateLabel {
                line: 3,
                previous: 1,
                ..
            }
        ));
        assert!(matches!(
            err("exit\nexit:\n"),
            AsmError::DuplicateLabel { .. }
        ));
        assert!(matches!(err("l: exit"), AsmError::TextAfterLabel { .. }));
    }

    #[test]
    fn garbage_never_panics() {
        let words = [
            "lock",
            "fetch",
            "add",
            "xchg32",
            "call",
            "local",
            "helper",
            "lddw",
            "map_fd",
            ".insn",
            "ja32",
            "jeq32",
            "exit",
            "l:",
            "l",
            "%r1",
            "%r16",
            "[%r1",
            "[%r1+]",
            "[-1]",
            "[]",
            "+",
            "-",
            "0x",
            "-0x1",
            "+99999999999999999999",
            "é",
            "[%r1+é]",
            ",",
            "",
            "be16",
            "movsx864",
            "stw",
            "ldxsb",
            "#",
        ];
        let mut s: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut src = String::new();
            for _ in 0..3 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let n = (s % 5) as usize;
                for k in 0..n {
                    src.push_str(words[((s >> (8 * k + 8)) % words.len() as u64) as usize]);
                    src.push_str(if k == 0 { " " } else { ", " });
                }
                src.push('\n');
            }
            let _ = assemble(&src);
        }
    }

    #[test]
    fn label_out_of_range_is_an_error() {
        let mut src = String::from("ja far\n");
        for _ in 0..40_000 {
            src.push_str("mov %r0, 0\n");
        }
        src.push_str("far:\nexit\n");
        assert!(matches!(
            assemble(&src),
            Err(AsmError::JumpOutOfRange {
                distance: 40_000,
                ..
            })
        ));
        // ja32 holds the distance in imm, so it fits.
        let src = src.replacen("ja far", "ja32 far", 1);
        assert_eq!(assemble(&src).unwrap()[0].imm, 40_000);
    }
}
