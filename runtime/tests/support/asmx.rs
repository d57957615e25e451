//! The assembler with one extension for callback references:
//! `ldfunc %rN, label` assembles to `lddw %rN, <label>` with source
//! `BPF_PSEUDO_FUNC` and the immediate relative to the next instruction,
//! as libbpf emits `r2 = callback ll`.

use userbpf_runtime::asm;
use userbpf_runtime::isa::*;

/// Assembles `src`; panics with the assembler's message on an error.
pub fn assemble(src: &str) -> Vec<Insn> {
    let mut text = String::new();
    for line in src.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        if let Some(rest) = code.strip_prefix("ldfunc ") {
            let (reg, label) = rest.split_once(',').expect("ldfunc %rN, label");
            let reg: u8 = reg
                .trim()
                .trim_start_matches("%r")
                .parse()
                .expect("ldfunc register");
            // `call local` computes the same relative offset; the raw slot
            // after it carries the register and becomes the lddw's tail.
            text.push_str(&format!(
                "call local {}\n.insn 0, {reg}, 0, 0, 0\n",
                label.trim()
            ));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let mut insns = asm::assemble(&text).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let mut pc = 0;
    while pc + 1 < insns.len() {
        let (head, tail) = (insns[pc], insns[pc + 1]);
        if head.code == CALL && head.src == BPF_PSEUDO_CALL && tail.code == 0 {
            insns[pc] = Insn::new(LDDW, tail.dst, BPF_PSEUDO_FUNC, 0, head.imm);
            insns[pc + 1] = Insn::new(0, 0, 0, 0, 0);
            pc += 2;
        } else {
            pc += if head.is_lddw() { 2 } else { 1 };
        }
    }
    insns
}
