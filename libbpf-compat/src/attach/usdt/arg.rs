//! USDT argument specs (the `Arguments:` string of a stapsdt note, e.g.
//! `-4@-1204(%rbp) -4@%edi 8@$5`) parsed as libbpf 1.7's x86-64
//! `parse_usdt_spec` / `parse_usdt_arg` parse them: constants, registers,
//! memory at register + offset, and scale-index-base addressing.
//! Anything else, such as a symbol-relative `8@counter(%rip)`, is refused
//! with libbpf's "unrecognized arg" error.

use super::scan::scan;
use super::UsdtError;

/// `BPF_USDT_MAX_ARG_CNT`.
pub const MAX_ARGS: usize = 12;

/// `enum __bpf_usdt_arg_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ArgType {
    /// `val_off` is the value.
    #[default]
    Const = 0,
    /// The value is the register at `reg_off` in `struct pt_regs`.
    Reg = 1,
    /// The value is in memory at register + `val_off`.
    RegDeref = 2,
    /// The value is in memory at base + (index << scale) + `val_off`.
    Sib = 3,
}

/// `struct __bpf_usdt_arg_spec`, field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgSpec {
    pub val_off: u64,
    pub arg_type: ArgType,
    /// `offsetof(struct pt_regs, <index register>)` (SIB only).
    pub idx_reg_off: u16,
    /// log2 of the SIB scale.
    pub scale_bitshift: u8,
    /// `offsetof(struct pt_regs, <register>)`.
    pub reg_off: i16,
    pub arg_signed: bool,
    /// `64 - 8 * size`: how far `bpf_usdt_arg` shifts to truncate and
    /// extend the value.
    pub arg_bitshift: u8,
}

/// `struct __bpf_usdt_spec`: the arguments of one call site and the
/// attachment's USDT cookie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsdtSpec {
    /// At most [`MAX_ARGS`].
    pub args: Vec<ArgSpec>,
    pub usdt_cookie: u64,
}

/// The x86-64 kernel `struct pt_regs`: register names (64, 32, 16 and
/// 8-bit) and offsets, libbpf's `calc_pt_regs_off` table.
const PT_REGS: [([&str; 4], u16); 17] = [
    (["rip", "eip", "", ""], 128),
    (["rax", "eax", "ax", "al"], 80),
    (["rbx", "ebx", "bx", "bl"], 40),
    (["rcx", "ecx", "cx", "cl"], 88),
    (["rdx", "edx", "dx", "dl"], 96),
    (["rsi", "esi", "si", "sil"], 104),
    (["rdi", "edi", "di", "dil"], 112),
    (["rbp", "ebp", "bp", "bpl"], 32),
    (["rsp", "esp", "sp", "spl"], 152),
    (["r8", "r8d", "r8w", "r8b"], 72),
    (["r9", "r9d", "r9w", "r9b"], 64),
    (["r10", "r10d", "r10w", "r10b"], 56),
    (["r11", "r11d", "r11w", "r11b"], 48),
    (["r12", "r12d", "r12w", "r12b"], 24),
    (["r13", "r13d", "r13w", "r13b"], 16),
    (["r14", "r14d", "r14w", "r14b"], 8),
    (["r15", "r15d", "r15w", "r15b"], 0),
];

/// `offsetof(struct pt_regs, ...)` for a register name as the assembler
/// writes it (without `%`). The empty name matches `rip`'s unused slots,
/// as in libbpf.
pub fn pt_regs_offset(name: &str) -> Result<u16, UsdtError> {
    PT_REGS
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|&(_, off)| off)
        .ok_or_else(|| UsdtError::Register(name.to_owned()))
}

/// One argument at the start of `s`: its location, its signed size and
/// the bytes it takes (trailing white space included).
pub fn parse_arg(s: &str, arg_num: usize) -> Result<(ArgSpec, i64, usize), UsdtError> {
    let mut arg = ArgSpec::default();
    // A pattern matches when all its conversions are assigned. libbpf
    // then uses the `%n` count, which is only stored if the text after
    // the last conversion matched too (else libbpf reads an
    // uninitialized `len`): such a spec is refused here.
    let try_scan = |fmt: &str, want: usize| {
        let r = scan(s, fmt);
        (r.values.len() == want).then_some(r)
    };
    let unrecognized = || UsdtError::Arg {
        arg_num,
        rest: s.to_owned(),
    };
    let sib = try_scan(" %d @ %ld ( %%%15[^,] , %%%15[^,] , %d ) %n", 5)
        .map(|r| (r.int(0), r.int(1), r.str(2), r.str(3), r.int(4), r.consumed))
        .or_else(|| {
            try_scan(" %d @ ( %%%15[^,] , %%%15[^,] , %d ) %n", 4)
                .map(|r| (r.int(0), 0, r.str(1), r.str(2), r.int(3), r.consumed))
        })
        .or_else(|| {
            try_scan(" %d @ %ld ( %%%15[^,] , %%%15[^)] ) %n", 4)
                .map(|r| (r.int(0), r.int(1), r.str(2), r.str(3), 1, r.consumed))
        })
        .or_else(|| {
            try_scan(" %d @ ( %%%15[^,] , %%%15[^)] ) %n", 3)
                .map(|r| (r.int(0), 0, r.str(1), r.str(2), 1, r.consumed))
        });
    let (size, len) = if let Some((size, off, reg, idx, scale, len)) = sib {
        arg.arg_type = ArgType::Sib;
        arg.val_off = off as u64;
        arg.reg_off = pt_regs_offset(reg)? as i16;
        arg.idx_reg_off = pt_regs_offset(idx)?;
        arg.scale_bitshift = match scale {
            1 => 0,
            2 => 1,
            4 => 2,
            8 => 3,
            _ => return Err(UsdtError::Scale(scale)),
        };
        (size, len)
    } else if let Some(r) = try_scan(" %d @ %ld ( %%%15[^)] ) %n", 3) {
        arg.arg_type = ArgType::RegDeref;
        arg.val_off = r.int(1) as u64;
        arg.reg_off = pt_regs_offset(r.str(2))? as i16;
        (r.int(0), r.consumed)
    } else if let Some(r) = try_scan(" %d @ ( %%%15[^)] ) %n", 2) {
        arg.arg_type = ArgType::RegDeref;
        arg.reg_off = pt_regs_offset(r.str(1))? as i16;
        (r.int(0), r.consumed)
    } else if let Some(r) = try_scan(" %d @ %%%15s %n", 2) {
        arg.arg_type = ArgType::Reg;
        arg.reg_off = pt_regs_offset(r.str(1))? as i16;
        (r.int(0), r.consumed)
    } else if let Some(r) = try_scan(" %d @ $%ld %n", 2) {
        arg.arg_type = ArgType::Const;
        arg.val_off = r.int(1) as u64;
        (r.int(0), r.consumed)
    } else {
        return Err(unrecognized());
    };
    let len = len.ok_or_else(unrecognized)?;
    Ok((arg, size, len))
}

/// libbpf's `parse_usdt_spec`: every argument of `args` (a note's
/// `Arguments:` string) with its size turned into `arg_signed` and
/// `arg_bitshift`. `provider` and `name` are for messages.
pub fn parse_spec(
    provider: &str,
    name: &str,
    args: &str,
    usdt_cookie: u64,
) -> Result<UsdtSpec, UsdtError> {
    let mut spec = UsdtSpec {
        args: Vec::new(),
        usdt_cookie,
    };
    let mut s = args;
    while !s.is_empty() {
        if spec.args.len() >= MAX_ARGS {
            return Err(UsdtError::TooManyArgs {
                provider: provider.to_owned(),
                name: name.to_owned(),
                args: args.to_owned(),
            });
        }
        let (mut arg, size, len) = parse_arg(s, spec.args.len())?;
        arg.arg_signed = size < 0;
        arg.arg_bitshift = match size.unsigned_abs() {
            n @ (1 | 2 | 4 | 8) => 64 - 8 * n as u8,
            _ => {
                return Err(UsdtError::ArgSize {
                    arg_num: spec.args.len(),
                    rest: s.to_owned(),
                    size: size.abs(),
                })
            }
        };
        spec.args.push(arg);
        s = &s[len..];
    }
    Ok(spec)
}
