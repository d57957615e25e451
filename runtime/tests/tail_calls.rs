//! Tail calls through a program array on both engines, with the kernel's
//! limit of 33 chained calls.

use userbpf_runtime::helpers::HelperRegistry;
use userbpf_runtime::isa::*;
use userbpf_runtime::tailcall::{ProgArray, MAX_TAIL_CALL_CNT};
use userbpf_runtime::vm::{Engine, Vm, VmOptions};

const ENGINES: [Engine; 2] = [Engine::Interpreter, Engine::Jit];

fn lddw(dst: u8, value: u64) -> [Insn; 2] {
    [
        Insn::new(LDDW, dst, 0, 0, value as u32 as i32),
        Insn::new(0, 0, 0, 0, (value >> 32) as u32 as i32),
    ]
}

/// `ctx[0] += 1; tail_call(ctx, array, next); r0 = ctx[0]; exit`: each
/// program counts itself in ctx[0] and jumps to the next slot.
fn counting_program(array: &ProgArray, next: u32) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 6, 1, 0, 0),
        Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 6, 0, 0, 1),
        Insn::new(BPF_STX | BPF_MEM | BPF_DW, 1, 6, 0, 0),
    ];
    p.extend(lddw(2, array.as_addr()));
    p.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, next as i32));
    p.push(Insn::new(CALL, 0, 0, 0, 12));
    p.push(Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 0, 1, 0, 0));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    p
}

#[test]
fn a_chain_of_40_stops_after_33_tail_calls() {
    for engine in ENGINES {
        let array = ProgArray::new(40);
        let mut vms = Vec::new();
        for slot in 0..40u32 {
            let vm = Vm::from_insns(
                counting_program(&array, slot + 1),
                HelperRegistry::new(),
                VmOptions::with_engine(engine),
            )
            .unwrap();
            array.set(slot, vm.tail_target()).unwrap();
            vms.push(vm);
        }
        let mut ctx = [0u8; 8];
        let r0 = vms[0].run(&mut ctx).unwrap();
        // The entry program plus 33 tail calls ran; the last one's call failed
        // and it fell through to `r0 = ctx[0]`.
        assert_eq!(r0, u64::from(MAX_TAIL_CALL_CNT) + 1, "{engine:?}");
    }
}

#[test]
fn an_empty_slot_falls_through() {
    for engine in ENGINES {
        let array = ProgArray::new(2);
        let vm = Vm::from_insns(
            counting_program(&array, 1),
            HelperRegistry::new(),
            VmOptions::with_engine(engine),
        )
        .unwrap();
        let mut ctx = [0u8; 8];
        assert_eq!(vm.run(&mut ctx).unwrap(), 1, "{engine:?}");
    }
}

#[test]
fn the_interpreter_ignores_a_bogus_array_pointer() {
    // r2 = 0xdeadbeef is no live array: the tail call fails and the program
    // goes on. The interpreter must never dereference it.
    let mut p = vec![];
    p.extend(lddw(2, 0xdead_beef));
    p.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, 0));
    p.push(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 7));
    p.push(Insn::new(CALL, 0, 0, 0, 12));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    let vm = Vm::from_insns(
        p,
        HelperRegistry::new(),
        VmOptions::with_engine(Engine::Interpreter),
    )
    .unwrap();
    assert_eq!(vm.run(&mut []).unwrap(), 7);
}

#[test]
fn a_slot_of_another_engine_counts_as_empty() {
    let array = ProgArray::new(1);
    let jit = Vm::from_insns(
        counting_program(&array, 0),
        HelperRegistry::new(),
        VmOptions::with_engine(Engine::Jit),
    )
    .unwrap();
    array.set(0, jit.tail_target()).unwrap();
    let interp = Vm::from_insns(
        counting_program(&array, 0),
        HelperRegistry::new(),
        VmOptions::with_engine(Engine::Interpreter),
    )
    .unwrap();
    let mut ctx = [0u8; 8];
    assert_eq!(interp.run(&mut ctx).unwrap(), 1);
}
