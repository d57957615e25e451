//! `struct pt_regs` as the kernel lays it out on x86-64, the context a
//! uprobe program sees.

/// The x86-64 `struct pt_regs` (arch/x86/include/asm/ptrace.h), field for
/// field. `PT_REGS_PARM1..6` are `di si dx cx r8 r9`, `PT_REGS_RC` is `ax`,
/// `PT_REGS_SP` is `sp` and `PT_REGS_IP` is `ip`.
///
/// At an entry hook `ip` is the probed address (the function's address for
/// a function that starts with `endbr64`, although the jump is written after
/// it) and `sp` is the stack pointer at that address. At a return hook `ip`
/// is the address the function returns to and `sp` the stack pointer after
/// the return, as in the kernel's uretprobes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PtRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub bp: u64,
    pub bx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    /// -1, as for every pt_regs that is not a system call's.
    pub orig_ax: u64,
    pub ip: u64,
    /// The user code segment selector (0x33).
    pub cs: u64,
    pub flags: u64,
    pub sp: u64,
    /// The user stack segment selector (0x2b).
    pub ss: u64,
}

/// Byte offsets of the fields, for the assembly that fills the structure.
pub(crate) mod off {
    pub const R15: usize = 0;
    pub const R14: usize = 8;
    pub const R13: usize = 16;
    pub const R12: usize = 24;
    pub const BP: usize = 32;
    pub const BX: usize = 40;
    pub const R11: usize = 48;
    pub const R10: usize = 56;
    pub const R9: usize = 64;
    pub const R8: usize = 72;
    pub const AX: usize = 80;
    pub const CX: usize = 88;
    pub const DX: usize = 96;
    pub const SI: usize = 104;
    pub const DI: usize = 112;
    pub const ORIG_AX: usize = 120;
    pub const IP: usize = 128;
    pub const CS: usize = 136;
    pub const FLAGS: usize = 144;
    pub const SP: usize = 152;
    pub const SS: usize = 160;
    pub const SIZE: usize = 168;
}

const _: () = {
    assert!(core::mem::size_of::<PtRegs>() == off::SIZE);
    assert!(core::mem::offset_of!(PtRegs, r15) == off::R15);
    assert!(core::mem::offset_of!(PtRegs, r14) == off::R14);
    assert!(core::mem::offset_of!(PtRegs, r13) == off::R13);
    assert!(core::mem::offset_of!(PtRegs, r12) == off::R12);
    assert!(core::mem::offset_of!(PtRegs, bp) == off::BP);
    assert!(core::mem::offset_of!(PtRegs, bx) == off::BX);
    assert!(core::mem::offset_of!(PtRegs, r11) == off::R11);
    assert!(core::mem::offset_of!(PtRegs, r10) == off::R10);
    assert!(core::mem::offset_of!(PtRegs, r9) == off::R9);
    assert!(core::mem::offset_of!(PtRegs, r8) == off::R8);
    assert!(core::mem::offset_of!(PtRegs, ax) == off::AX);
    assert!(core::mem::offset_of!(PtRegs, cx) == off::CX);
    assert!(core::mem::offset_of!(PtRegs, dx) == off::DX);
    assert!(core::mem::offset_of!(PtRegs, si) == off::SI);
    assert!(core::mem::offset_of!(PtRegs, di) == off::DI);
    assert!(core::mem::offset_of!(PtRegs, orig_ax) == off::ORIG_AX);
    assert!(core::mem::offset_of!(PtRegs, ip) == off::IP);
    assert!(core::mem::offset_of!(PtRegs, cs) == off::CS);
    assert!(core::mem::offset_of!(PtRegs, flags) == off::FLAGS);
    assert!(core::mem::offset_of!(PtRegs, sp) == off::SP);
    assert!(core::mem::offset_of!(PtRegs, ss) == off::SS);
};

impl PtRegs {
    /// `PT_REGS_PARM1..6`: the `n`th integer argument (1-based) under the
    /// System V ABI, valid at a function-entry hook.
    pub fn arg(&self, n: usize) -> Option<u64> {
        match n {
            1 => Some(self.di),
            2 => Some(self.si),
            3 => Some(self.dx),
            4 => Some(self.cx),
            5 => Some(self.r8),
            6 => Some(self.r9),
            _ => None,
        }
    }

    /// `PT_REGS_RC`.
    pub fn rc(&self) -> u64 {
        self.ax
    }

    /// Skip the function and return `rc` to its caller: what
    /// `bpf_override_return` does for a kprobe. Only meaningful at a
    /// function-entry hook (the stack pointer must point at the return
    /// address); the hook then resumes at a `ret` instruction instead of the
    /// function, with `ax = rc`. A return hook on the same site does not
    /// fire for that call.
    pub fn override_return(&mut self, rc: u64) {
        self.ax = rc;
        self.ip = super::stub::ret_gadget() as u64;
    }
}
