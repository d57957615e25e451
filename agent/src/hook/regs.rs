//! `struct pt_regs` as the kernel lays it out on x86-64, the context a
//! uprobe program sees.

/// The x86-64 `struct pt_regs`: the runtime's definition (the context its
/// programs read), which the stubs fill field for field (offsets below).
/// `PT_REGS_PARM1..6` are `di si dx cx r8 r9`, `PT_REGS_RC` is `ax`,
/// `PT_REGS_SP` is `sp` and `PT_REGS_IP` is `ip`.
///
/// At an entry hook `ip` is the probed address (the function's address for
/// a function that starts with `endbr64`, although the jump is written after
/// it) and `sp` is the stack pointer at that address. At a return hook `ip`
/// is the address the function returns to and `sp` the stack pointer after
/// the return, as in the kernel's uretprobes.
pub use userbpf_runtime::helpers::run_info::PtRegs;

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

/// What a hook handler can do with the registers beyond writing them.
pub trait Redirect {
    /// Skip the function and return `rc` to its caller: what
    /// `bpf_override_return` does for a kprobe. Only meaningful at a
    /// function-entry hook (the stack pointer must point at the return
    /// address); the hook then resumes at a `ret` instruction instead of the
    /// function, with `ax = rc`. A return hook on the same site does not
    /// fire for that call.
    fn override_return(&mut self, rc: u64);
}

impl Redirect for PtRegs {
    fn override_return(&mut self, rc: u64) {
        self.ax = rc;
        self.ip = super::stub::ret_gadget() as u64;
    }
}
