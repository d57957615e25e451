//! Disassemblers: one that prints the bpf_conformance syntax read by
//! [`crate::asm`], and an `llvm-objdump -d` style listing.
//!
//! [`disassemble`] output always assembles back to the same slots:
//! jump targets are printed as literal `+N`/`-N` offsets (no labels), and
//! any slot the conformance syntax cannot express exactly (an unknown
//! opcode, a non-zero reserved field, an `lddw` without its second slot…)
//! is printed with the `.insn CODE, DST, SRC, OFF, IMM` extension. `lddw`
//! with a pseudo source prints as `lddw %rN, map_fd VALUE` (see the
//! [`crate::asm`] docs).

use std::fmt::Write;

use crate::asm::LDDW_PSEUDO;
use crate::isa::*;

/// Disassembles a program, one line per instruction (a well-formed `lddw`
/// takes one line for its two slots). Each line ends with `\n`.
pub fn disassemble(insns: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc < insns.len() {
        let (text, slots) = format_conformance(insns[pc], insns.get(pc + 1).copied());
        out.push_str(&text);
        out.push('\n');
        pc += slots;
    }
    out
}

/// Disassembles one instruction. `next` is the following slot, used only
/// when `insn` is `lddw`.
pub fn disassemble_insn(insn: Insn, next: Option<Insn>) -> String {
    format_conformance(insn, next).0
}

/// The text of one instruction and the number of slots it covers.
fn format_conformance(i: Insn, next: Option<Insn>) -> (String, usize) {
    if i.is_lddw() {
        if let Some(n) = next {
            if let Some(text) = lddw_text(i, n) {
                return (text, 2);
            }
        }
        return (raw(i), 1);
    }
    let text = match i.class() {
        BPF_ALU | BPF_ALU64 => alu_text(i),
        BPF_JMP | BPF_JMP32 => jmp_text(i),
        BPF_LDX => ldx_text(i),
        BPF_ST => st_text(i),
        BPF_STX => stx_text(i),
        _ => None,
    };
    (text.unwrap_or_else(|| raw(i)), 1)
}

fn reg(r: u8) -> String {
    format!("%r{r}")
}

/// Immediates as bpf_conformance's disassembler prints them: small and
/// negative values in decimal, the rest as unsigned hex. Both forms parse
/// back to the same bits.
fn imm(v: i32) -> String {
    if (-10..=10).contains(&v) || (v < 0 && v != i32::MIN) {
        v.to_string()
    } else {
        format!("{:#x}", v as u32)
    }
}

fn target(v: i64) -> String {
    format!("{v:+}")
}

fn mem(r: u8, off: i16) -> String {
    if off == 0 {
        format!("[{}]", reg(r))
    } else {
        format!("[{}{off:+}]", reg(r))
    }
}

fn raw(i: Insn) -> String {
    format!(
        ".insn {:#04x}, {}, {}, {}, {}",
        i.code,
        i.dst,
        i.src,
        i.off,
        imm(i.imm)
    )
}

fn size_suffix(size: u8) -> &'static str {
    match size {
        BPF_B => "b",
        BPF_H => "h",
        BPF_W => "w",
        _ => "dw",
    }
}

fn lddw_text(i: Insn, n: Insn) -> Option<String> {
    // The assembler only ever sets imm in the second slot.
    if i.off != 0 || n != Insn::new(0, 0, 0, 0, n.imm) {
        return None;
    }
    let value = lddw_imm(i, n);
    if i.src == BPF_PSEUDO_NONE {
        return Some(format!("lddw {}, {value:#x}", reg(i.dst)));
    }
    let (kind, _) = LDDW_PSEUDO.iter().find(|(_, src)| *src == i.src)?;
    // Pseudo values are fds and indices: decimal reads better when small.
    let value = if value >> 32 == 0 {
        value.to_string()
    } else {
        format!("{value:#x}")
    };
    Some(format!("lddw {}, {kind} {value}", reg(i.dst)))
}

/// The second operand of an ALU or conditional jump: `src` for BPF_X (then
/// imm must be 0), `imm` for BPF_K (then src must be 0).
fn source_operand(i: Insn) -> Option<String> {
    if i.source() == BPF_X {
        (i.imm == 0).then(|| reg(i.src))
    } else {
        (i.src == 0).then(|| imm(i.imm))
    }
}

fn alu_text(i: Insn) -> Option<String> {
    let is64 = i.class() == BPF_ALU64;
    let sfx = if is64 { "" } else { "32" };
    let x = i.source() == BPF_X;
    let dst = reg(i.dst);
    match i.op() {
        BPF_END => {
            let name = match (is64, x) {
                (false, false) => "le",
                (false, true) => "be",
                (true, false) => "swap",
                (true, true) => return None,
            };
            let ok = i.src == 0 && i.off == 0 && matches!(i.imm, 16 | 32 | 64);
            ok.then(|| format!("{name}{} {dst}", i.imm))
        }
        BPF_NEG => {
            let ok = !x && i.src == 0 && i.off == 0 && i.imm == 0;
            ok.then(|| format!("neg{sfx} {dst}"))
        }
        op => {
            let name = match (op, i.off) {
                (BPF_DIV, 1) => format!("sdiv{sfx}"),
                (BPF_MOD, 1) => format!("smod{sfx}"),
                (BPF_MOV, 8 | 16) => format!("movsx{}{}", i.off, if is64 { 64 } else { 32 }),
                (BPF_MOV, 32) if is64 => "movsx3264".to_string(),
                (_, 0) => {
                    let base = match op {
                        BPF_ADD => "add",
                        BPF_SUB => "sub",
                        BPF_MUL => "mul",
                        BPF_DIV => "div",
                        BPF_OR => "or",
                        BPF_AND => "and",
                        BPF_LSH => "lsh",
                        BPF_RSH => "rsh",
                        BPF_MOD => "mod",
                        BPF_XOR => "xor",
                        BPF_MOV => "mov",
                        BPF_ARSH => "arsh",
                        _ => return None,
                    };
                    format!("{base}{sfx}")
                }
                _ => return None,
            };
            Some(format!("{name} {dst}, {}", source_operand(i)?))
        }
    }
}

fn jcc_name(op: u8) -> Option<&'static str> {
    Some(match op {
        BPF_JEQ => "jeq",
        BPF_JGT => "jgt",
        BPF_JGE => "jge",
        BPF_JSET => "jset",
        BPF_JNE => "jne",
        BPF_JSGT => "jsgt",
        BPF_JSGE => "jsge",
        BPF_JLT => "jlt",
        BPF_JLE => "jle",
        BPF_JSLT => "jslt",
        BPF_JSLE => "jsle",
        _ => return None,
    })
}

fn jmp_text(i: Insn) -> Option<String> {
    let is32 = i.class() == BPF_JMP32;
    let zero = |d: u8, s: u8, off: i16, imm: i32| i == Insn::new(i.code, d, s, off, imm);
    match i.code {
        JA => zero(0, 0, i.off, 0).then(|| format!("ja {}", target(i.off.into()))),
        JA32 => zero(0, 0, 0, i.imm).then(|| format!("ja32 {}", target(i.imm.into()))),
        EXIT => zero(0, 0, 0, 0).then(|| "exit".to_string()),
        CALLX => zero(i.dst, 0, 0, 0).then(|| format!("call {}", reg(i.dst))),
        CALL => {
            if !zero(0, i.src, 0, i.imm) {
                return None;
            }
            match i.src {
                BPF_CALL_HELPER => Some(format!("call {}", imm(i.imm))),
                BPF_PSEUDO_CALL => Some(format!("call local {}", target(i.imm.into()))),
                BPF_PSEUDO_KFUNC_CALL => Some(format!("call runtime {}", imm(i.imm))),
                _ => None,
            }
        }
        _ => {
            let name = jcc_name(i.op())?;
            let sfx = if is32 { "32" } else { "" };
            Some(format!(
                "{name}{sfx} {}, {}, {}",
                reg(i.dst),
                source_operand(i)?,
                target(i.off.into())
            ))
        }
    }
}

fn ldx_text(i: Insn) -> Option<String> {
    let name = match (i.mode(), i.size()) {
        (BPF_MEM, size) => format!("ldx{}", size_suffix(size)),
        (BPF_MEMSX, size) if size != BPF_DW => format!("ldxs{}", size_suffix(size)),
        _ => return None,
    };
    (i.imm == 0).then(|| format!("{name} {}, {}", reg(i.dst), mem(i.src, i.off)))
}

fn st_text(i: Insn) -> Option<String> {
    let ok = i.mode() == BPF_MEM && i.src == 0;
    ok.then(|| {
        format!(
            "st{} {}, {}",
            size_suffix(i.size()),
            mem(i.dst, i.off),
            imm(i.imm)
        )
    })
}

fn stx_text(i: Insn) -> Option<String> {
    let operands = format!("{}, {}", mem(i.dst, i.off), reg(i.src));
    match i.mode() {
        BPF_MEM => (i.imm == 0).then(|| format!("stx{} {operands}", size_suffix(i.size()))),
        BPF_ATOMIC => {
            let width = match i.size() {
                BPF_W => "32",
                BPF_DW => "",
                _ => return None,
            };
            let op = match i.imm & !BPF_FETCH {
                _ if i.imm == BPF_XCHG => "xchg",
                _ if i.imm == BPF_CMPXCHG => "cmpxchg",
                BPF_ATOMIC_ADD => "add",
                BPF_ATOMIC_OR => "or",
                BPF_ATOMIC_AND => "and",
                BPF_ATOMIC_XOR => "xor",
                _ => return None,
            };
            let fetch = if matches!(op, "add" | "or" | "and" | "xor") && i.imm & BPF_FETCH != 0 {
                "fetch "
            } else {
                ""
            };
            Some(format!("lock {fetch}{op}{width} {operands}"))
        }
        _ => None,
    }
}

/// A listing in the style of `llvm-objdump -d` (LLVM 15 and later, which
/// print immediates in hex): `%8d:` slot index, tab, the slot's bytes (16
/// for `lddw`), tab, LLVM's BPF assembly. Slots LLVM cannot decode print as
/// `<unknown>`. Differences from LLVM 16: `ST` stores, `jset`, `gotol`,
/// `callx`, sdiv/smod, movsx, sign-extending loads and `bswap` use the
/// syntax of newer LLVM releases, and 32-bit atomics use the `w` register
/// names LLVM prints with `--mattr=+alu32`. Jump lines carry no `<label>`
/// suffix.
pub fn objdump_listing(insns: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        let mut bytes = i.to_bytes().to_vec();
        let (text, slots) = match (i.is_lddw(), insns.get(pc + 1)) {
            (true, Some(&n)) => {
                bytes.extend_from_slice(&n.to_bytes());
                (llvm_lddw(i, n), 2)
            }
            (true, None) => ("<unknown>".to_string(), 1),
            (false, _) => (llvm_text(i).unwrap_or_else(|| "<unknown>".to_string()), 1),
        };
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "{pc:>8}:\t{}\t{text}", hex.join(" "));
        pc += slots;
    }
    out
}

/// Signed hex as LLVM prints it with `--print-imm-hex`: `0x5`, `-0xa`.
fn hx(v: i64) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

/// Jump offsets always carry a sign: `+0x1`, `-0x2`.
fn hx_target(v: i64) -> String {
    if v < 0 {
        hx(v)
    } else {
        format!("+{v:#x}")
    }
}

/// `r1 + 0x8` / `r10 - 0x8`.
fn llvm_addr(r: u8, off: i16) -> String {
    if off < 0 {
        format!("r{r} - {:#x}", off.unsigned_abs())
    } else {
        format!("r{r} + {off:#x}")
    }
}

fn llvm_lddw(i: Insn, n: Insn) -> String {
    let value = lddw_imm(i, n) as i64;
    if i.src == BPF_PSEUDO_NONE {
        format!("r{} = {} ll", i.dst, hx(value))
    } else {
        format!("ld_pseudo r{}, {}, {}", i.dst, hx(i.src.into()), hx(value))
    }
}

fn llvm_size(size: u8) -> &'static str {
    match size {
        BPF_B => "8",
        BPF_H => "16",
        BPF_W => "32",
        _ => "64",
    }
}

fn llvm_text(i: Insn) -> Option<String> {
    match i.class() {
        BPF_ALU | BPF_ALU64 => llvm_alu(i),
        BPF_JMP | BPF_JMP32 => llvm_jmp(i),
        BPF_LD => {
            let size = llvm_size(i.size());
            match i.mode() {
                _ if i.size() == BPF_DW => None,
                BPF_ABS => Some(format!("r0 = *(u{size} *)skb[{}]", hx(i.imm.into()))),
                BPF_IND => Some(format!("r0 = *(u{size} *)skb[r{}]", i.src)),
                _ => None,
            }
        }
        BPF_LDX => {
            let sign = match i.mode() {
                BPF_MEM => "u",
                BPF_MEMSX if i.size() != BPF_DW => "s",
                _ => return None,
            };
            Some(format!(
                "r{} = *({sign}{} *)({})",
                i.dst,
                llvm_size(i.size()),
                llvm_addr(i.src, i.off)
            ))
        }
        BPF_ST => (i.mode() == BPF_MEM).then(|| {
            format!(
                "*(u{} *)({}) = {}",
                llvm_size(i.size()),
                llvm_addr(i.dst, i.off),
                hx(i.imm.into())
            )
        }),
        _ => llvm_stx(i),
    }
}

fn llvm_stx(i: Insn) -> Option<String> {
    let size = llvm_size(i.size());
    let addr = llvm_addr(i.dst, i.off);
    match i.mode() {
        BPF_MEM => Some(format!("*(u{size} *)({addr}) = r{}", i.src)),
        BPF_ATOMIC => {
            let (r, suffix) = match i.size() {
                BPF_W => ('w', "32_32"),
                BPF_DW => ('r', "_64"),
                _ => return None,
            };
            let s = i.src;
            let (op, name) = match i.imm & !BPF_FETCH {
                _ if i.imm == BPF_XCHG => {
                    return Some(format!("{r}{s} = xchg{suffix}({addr}, {r}{s})"))
                }
                _ if i.imm == BPF_CMPXCHG => {
                    return Some(format!("{r}0 = cmpxchg{suffix}({addr}, {r}0, {r}{s})"))
                }
                BPF_ATOMIC_ADD => ("+=", "add"),
                BPF_ATOMIC_OR => ("|=", "or"),
                BPF_ATOMIC_AND => ("&=", "and"),
                BPF_ATOMIC_XOR => ("^=", "xor"),
                _ => return None,
            };
            Some(if i.imm & BPF_FETCH != 0 {
                format!("{r}{s} = atomic_fetch_{name}((u{size} *)({addr}), {r}{s})")
            } else {
                format!("lock *(u{size} *)({addr}) {op} {r}{s}")
            })
        }
        _ => None,
    }
}

fn llvm_alu(i: Insn) -> Option<String> {
    let r = if i.class() == BPF_ALU64 { 'r' } else { 'w' };
    let d = format!("{r}{}", i.dst);
    let src = if i.source() == BPF_X {
        format!("{r}{}", i.src)
    } else {
        hx(i.imm.into())
    };
    let op = match (i.op(), i.off) {
        (BPF_END, _) => {
            let name = match (i.class(), i.source()) {
                (BPF_ALU, BPF_TO_LE) => "le",
                (BPF_ALU, _) => "be",
                (_, BPF_TO_LE) => "bswap",
                _ => return None,
            };
            if !matches!(i.imm, 16 | 32 | 64) {
                return None;
            }
            return Some(format!("r{0} = {name}{1} r{0}", i.dst, i.imm));
        }
        (BPF_NEG, _) => return Some(format!("{d} = -{d}")),
        (BPF_MOV, 8 | 16 | 32) if i.source() == BPF_X => {
            if i.off == 32 && r == 'w' {
                return None;
            }
            return Some(format!("{d} = (s{}){r}{}", i.off, i.src));
        }
        (BPF_DIV, 1) => "s/=",
        (BPF_MOD, 1) => "s%=",
        (_, 0) => match i.op() {
            BPF_ADD => "+=",
            BPF_SUB => "-=",
            BPF_MUL => "*=",
            BPF_DIV => "/=",
            BPF_OR => "|=",
            BPF_AND => "&=",
            BPF_LSH => "<<=",
            BPF_RSH => ">>=",
            BPF_MOD => "%=",
            BPF_XOR => "^=",
            BPF_MOV => "=",
            BPF_ARSH => "s>>=",
            _ => return None,
        },
        _ => return None,
    };
    Some(format!("{d} {op} {src}"))
}

fn llvm_jmp(i: Insn) -> Option<String> {
    let r = if i.class() == BPF_JMP32 { 'w' } else { 'r' };
    match i.code {
        JA => return Some(format!("goto {}", hx_target(i.off.into()))),
        JA32 => return Some(format!("gotol {}", hx_target(i.imm.into()))),
        EXIT => return Some("exit".to_string()),
        CALL => return Some(format!("call {}", hx(i.imm.into()))),
        CALLX => return Some(format!("callx r{}", i.dst)),
        _ => {}
    }
    let op = match i.op() {
        BPF_JEQ => "==",
        BPF_JGT => ">",
        BPF_JGE => ">=",
        BPF_JSET => "&",
        BPF_JNE => "!=",
        BPF_JSGT => "s>",
        BPF_JSGE => "s>=",
        BPF_JLT => "<",
        BPF_JLE => "<=",
        BPF_JSLT => "s<",
        BPF_JSLE => "s<=",
        _ => return None,
    };
    let src = if i.source() == BPF_X {
        format!("{r}{}", i.src)
    } else {
        hx(i.imm.into())
    };
    Some(format!(
        "if {r}{} {op} {src} goto {}",
        i.dst,
        hx_target(i.off.into())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;

    fn round_trip(src: &str) -> String {
        let insns = assemble(src).unwrap();
        let text = disassemble(&insns);
        assert_eq!(assemble(&text).unwrap(), insns, "{text}");
        text
    }

    #[test]
    fn prints_conformance_syntax() {
        let src = "\
mov %r0, 1
add32 %r1, 0x64
sub %r1, -5
lddw %r2, 0x1122334455667788
ldxsh %r3, [%r10-8]
stb [%r1+2], 0x80000000
stxdw [%r1], %r2
lock fetch add32 [%r10-4], %r1
lock cmpxchg [%r1], %r2
jsgt32 %r1, %r2, -3
ja32 +100000
call local +2
call %r2
call 5
call runtime 9
movsx1664 %r0, %r1
sdiv32 %r0, 3
be16 %r1
swap64 %r1
neg %r4
exit
";
        // Every line is already in canonical form.
        assert_eq!(round_trip(src), src);
    }

    #[test]
    fn labels_become_offsets() {
        let text = round_trip("ja l\nlddw %r0, 5\nl:\njne %r0, 0, exit\nexit\n");
        assert_eq!(text, "ja +2\nlddw %r0, 0x5\njne %r0, 0, +0\nexit\n");
    }

    #[test]
    fn pseudo_lddw_round_trips() {
        let text = round_trip("lddw %r1, map_fd 3\nlddw %r2, map_value 0x1000000004\n");
        assert_eq!(
            text,
            "lddw %r1, map_fd 3\nlddw %r2, map_value 0x1000000004\n"
        );
    }

    #[test]
    fn odd_slots_print_raw_and_round_trip() {
        let insns = vec![
            Insn::new(0xff, 1, 2, 3, 4),        // unknown opcode
            Insn::new(0x07, 1, 3, 0, 5),        // add imm with src set
            Insn::new(0x18, 1, 0, 0, 5),        // lddw whose 2nd slot is bad
            Insn::new(0x00, 1, 0, 0, 7),        //
            Insn::new(0xdb, 1, 2, 0, 0x02),     // unknown atomic op
            Insn::new(0x95, 0, 0, 0, 1),        // exit with imm
            Insn::new(0x3f, 1, 2, 2, 0),        // div with offset 2
            Insn::new(0x18, 1, 7, 0, i32::MIN), // lddw with unknown pseudo
            Insn::new(0x00, 0, 0, 0, 0),        //
            Insn::new(0x18, 1, 0, 0, 1),        // truncated lddw
        ];
        let text = disassemble(&insns);
        assert!(text.starts_with(".insn 0xff, 1, 2, 3, 4\n.insn 0x07, 1, 3, 0, 5\n"));
        assert!(text.contains(".insn 0x18, 1, 7, 0, 0x80000000\n"));
        assert_eq!(assemble(&text).unwrap(), insns, "{text}");
    }

    #[test]
    fn random_slots_round_trip() {
        // xorshift: deterministic, no dependency.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..20_000 {
            let r = next();
            // Bias fields towards the values the ISA uses.
            let code = (r & 0xff) as u8;
            let dst = ((r >> 8) & 0xf) as u8;
            let src = if r & (1 << 12) != 0 {
                ((r >> 13) & 0xf) as u8
            } else {
                0
            };
            let off = match (r >> 17) & 3 {
                0 => 0,
                1 => ((r >> 19) & 0x3f) as i16 - 8,
                _ => (r >> 25) as i16,
            };
            let imm = match (r >> 41) & 3 {
                0 => 0,
                1 => [16, 32, 64, 1, 0xe1, 0xf1, 0x41][((r >> 43) % 7) as usize],
                _ => (r >> 32) as i32,
            };
            let a = Insn::new(code, dst, src, off, imm);
            let b = Insn::new(0, 0, 0, 0, (next() >> 16) as i32);
            let prog = [a, b];
            let text = disassemble(&prog);
            assert_eq!(assemble(&text).unwrap(), prog, "{text}");
        }
    }

    #[test]
    fn single_insn_api() {
        let lo = Insn::new(LDDW, 3, 0, 0, -1);
        let hi = Insn::new(0, 0, 0, 0, 0);
        assert_eq!(disassemble_insn(lo, Some(hi)), "lddw %r3, 0xffffffff");
        assert_eq!(disassemble_insn(lo, None), ".insn 0x18, 3, 0, 0, -1");
        assert_eq!(
            disassemble_insn(Insn::new(0x6a, 1, 0, -2, 7), None),
            "sth [%r1-2], 7"
        );
    }

    #[test]
    fn llvm_listing() {
        let insns = assemble(
            "mov %r0, 1
add32 %r0, %r1
ldxdw %r1, [%r10-8]
jgt %r1, 2, +3
lddw %r1, 0x1122334455667788
lock add [%r10-8], %r1
lock fetch or32 [%r1+4], %r2
lock cmpxchg32 [%r1], %r2
mov32 %r1, -10
call 5
call local -2
ja -1
movsx832 %r1, %r2
ldxsb %r1, [%r2]
be32 %r2
bswap16 %r2
sdiv %r1, 3
jset32 %r1, %r2, +0
exit",
        )
        .unwrap();
        let expected = "       0:\tb7 00 00 00 01 00 00 00\tr0 = 0x1
       1:\t0c 10 00 00 00 00 00 00\tw0 += w1
       2:\t79 a1 f8 ff 00 00 00 00\tr1 = *(u64 *)(r10 - 0x8)
       3:\t25 01 03 00 02 00 00 00\tif r1 > 0x2 goto +0x3
       4:\t18 01 00 00 88 77 66 55 00 00 00 00 44 33 22 11\tr1 = 0x1122334455667788 ll
       6:\tdb 1a f8 ff 00 00 00 00\tlock *(u64 *)(r10 - 0x8) += r1
       7:\tc3 21 04 00 41 00 00 00\tw2 = atomic_fetch_or((u32 *)(r1 + 0x4), w2)
       8:\tc3 21 00 00 f1 00 00 00\tw0 = cmpxchg32_32(r1 + 0x0, w0, w2)
       9:\tb4 01 00 00 f6 ff ff ff\tw1 = -0xa
      10:\t85 00 00 00 05 00 00 00\tcall 0x5
      11:\t85 10 00 00 fe ff ff ff\tcall -0x2
      12:\t05 00 ff ff 00 00 00 00\tgoto -0x1
      13:\tbc 21 08 00 00 00 00 00\tw1 = (s8)w2
      14:\t91 21 00 00 00 00 00 00\tr1 = *(s8 *)(r2 + 0x0)
      15:\tdc 02 00 00 20 00 00 00\tr2 = be32 r2
      16:\td7 02 00 00 10 00 00 00\tr2 = bswap16 r2
      17:\t37 01 01 00 03 00 00 00\tr1 s/= 0x3
      18:\t4e 21 00 00 00 00 00 00\tif w1 & w2 goto +0x0
      19:\t95 00 00 00 00 00 00 00\texit
";
        assert_eq!(objdump_listing(&insns), expected);
        let odd = objdump_listing(&[Insn::new(0xff, 0, 0, 0, 0), Insn::new(LDDW, 0, 0, 0, 0)]);
        assert_eq!(
            odd,
            "       0:\tff 00 00 00 00 00 00 00\t<unknown>\n       1:\t18 00 00 00 00 00 00 00\t<unknown>\n"
        );
    }
}
