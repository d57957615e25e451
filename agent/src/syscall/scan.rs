//! Syscall instructions in the loaded modules.
//!
//! Modules come from `dl_iterate_phdr` (the loader's own list, so
//! `dlopen`ed libraries show up and the callback runs under the loader's
//! lock: no `dlclose` while a module's text is read). Function boundaries
//! come from each module's `PT_GNU_EH_FRAME` (`.eh_frame_hdr`) search
//! table: distributions strip `.symtab`, but every compiled function (and
//! glibc's assembly, written with CFI) has an FDE. A function ends where
//! the next one starts, or at its segment's end.
//!
//! Each function holding the bytes `0f 05` is decoded with iced-x86 and
//! its `syscall` instructions recorded, except signal-return trampolines
//! (`mov $15, %eax; syscall`): unwinders recognise them by their bytes, so
//! they stay as they are (Syscall User Dispatch sees them).
//!
//! Skipped: the agent's own module, the vDSO (no syscall the application
//! makes through it is ours to rewrite; its fallbacks are covered by SUD),
//! and anonymous memory (JIT code: SUD).

use core::ffi::{c_int, c_void, CStr};
use core::ops::Range;
use iced_x86::{Code, Decoder, DecoderOptions, Mnemonic, OpKind, Register};

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;

/// One `syscall` instruction found in a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallSite {
    /// The instruction's address (2 bytes: `0f 05`).
    pub addr: usize,
    /// The function around it, from `.eh_frame_hdr`.
    pub func_range: Range<usize>,
    /// Another site follows within the bytes a jump here would displace:
    /// only a trap site (`int3` on this one) lets both be hooked.
    pub needs_trap: bool,
    /// The `mov $nr, %eax` (or `%rax`) right before the syscall, when it
    /// is at least 5 bytes long and nothing in the function jumps to the
    /// syscall itself: the hook goes there instead.
    pub setup: Option<Setup>,
}

/// A syscall number loaded right before the instruction. Hooking it (the
/// handler loads the number, as the instruction would have) keeps the
/// `syscall` and what follows in place: no bytes after the `syscall` are
/// patched, so a thread inside the call while the hook is written, or one
/// returning from it through `clone`, resumes in intact code; and the jump
/// fits where the syscall is followed by a bare `ret` (`getpid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The `mov`'s address.
    pub addr: usize,
    /// The number it loads.
    pub nr: u64,
}

/// One loaded module and what the scan found in it.
#[derive(Clone, Debug, Default)]
pub struct ModuleScan {
    /// `dlpi_name` ("" for the main program).
    pub name: String,
    /// Load bias (`dlpi_addr`).
    pub base: usize,
    /// The executable segments.
    pub text: Vec<Range<usize>>,
    /// The sites, by address.
    pub sites: Vec<SyscallSite>,
    /// Signal-return trampolines left alone.
    pub excluded: usize,
    /// Functions with `0f 05` bytes that did not decode cleanly (their
    /// sites, if any, are left to SUD).
    pub undecodable: usize,
    /// No usable `.eh_frame_hdr`: the module was not scanned.
    pub no_unwind_table: bool,
}

impl ModuleScan {
    /// The identity used to tell whether a module is still loaded.
    pub fn key(&self) -> (usize, &str) {
        (self.base, &self.name)
    }
}

/// The address of a function of this module: the agent's own module is
/// the one that contains it.
fn own_marker() -> usize {
    syscall_sites as *const () as usize
}

struct Collect {
    own: usize,
    vdso: usize,
    /// Modules already scanned (base, name): reported without their sites.
    skip: Vec<(usize, String)>,
    out: Vec<ModuleScan>,
}

/// Every module but the agent's and the vDSO, scanned for syscall sites
/// (modules whose `(base, name)` is in `known` are listed with no sites and
/// not scanned again).
pub fn scan_modules(known: &[(usize, String)]) -> Vec<ModuleScan> {
    // SAFETY: getauxval has no preconditions.
    let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    let mut c = Collect {
        own: own_marker(),
        vdso,
        skip: known.to_vec(),
        out: Vec::new(),
    };
    // SAFETY: the callback only reads the loader's structures during the
    // call and gets `c` back as its data.
    unsafe { libc::dl_iterate_phdr(Some(on_module), (&mut c as *mut Collect).cast()) };
    c.out
}

/// Every syscall site of every scanned module.
pub fn syscall_sites() -> Vec<SyscallSite> {
    scan_modules(&[])
        .into_iter()
        .flat_map(|m| m.sites)
        .collect()
}

unsafe extern "C" fn on_module(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    // A panic must not unwind into the loader.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the loader passes a valid info and our Collect.
        unsafe { collect_module(&*info, &mut *data.cast::<Collect>()) }
    }));
    let _ = r;
    0
}

/// # Safety
/// `info` describes a module loaded right now (we are inside the loader's
/// callback).
unsafe fn collect_module(info: &libc::dl_phdr_info, c: &mut Collect) {
    let base = info.dlpi_addr as usize;
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let mut text = Vec::new();
    let mut eh_hdr = None;
    for ph in phdrs {
        let start = base.wrapping_add(ph.p_vaddr as usize);
        if ph.p_type == PT_LOAD && ph.p_flags & PF_X != 0 && ph.p_filesz > 0 {
            // Only the file-backed part holds code.
            text.push(start..start + ph.p_filesz as usize);
        } else if ph.p_type == PT_GNU_EH_FRAME {
            eh_hdr = Some(start);
        }
    }
    let is_vdso = phdrs
        .iter()
        .any(|p| p.p_type == PT_LOAD && base.wrapping_add(p.p_vaddr as usize) == c.vdso)
        || (c.vdso != 0 && base == c.vdso);
    let is_own = text.iter().any(|r| r.contains(&c.own));
    if is_vdso || is_own || text.is_empty() {
        return;
    }
    let mut m = ModuleScan {
        name,
        base,
        text,
        ..Default::default()
    };
    if c.skip.iter().any(|(b, n)| *b == m.base && *n == m.name) {
        c.out.push(m);
        return;
    }
    let funcs = match eh_hdr.and_then(|h| {
        // SAFETY: the segment is mapped while the module is loaded.
        unsafe { function_starts(h) }
    }) {
        Some(f) => f,
        None => {
            m.no_unwind_table = true;
            c.out.push(m);
            return;
        }
    };
    // SAFETY: the text segments are mapped while the module is loaded.
    unsafe { scan_text(&mut m, &funcs) };
    c.out.push(m);
}

/// Reads a pointer-encoded value (DWARF `DW_EH_PE_*`) at `*p`, advancing
/// it; `hdr` is the base of `datarel` values.
///
/// # Safety
/// `*p` points into the mapped `.eh_frame_hdr`.
unsafe fn read_encoded(p: &mut usize, enc: u8, hdr: usize) -> Option<u64> {
    if enc == 0xff {
        return None; // DW_EH_PE_omit
    }
    let at = *p;
    // SAFETY: caller contract; unaligned reads.
    let (v, n): (i64, usize) = unsafe {
        match enc & 0x0f {
            0x02 => ((at as *const u16).read_unaligned() as i64, 2),
            0x03 => ((at as *const u32).read_unaligned() as i64, 4),
            0x04 | 0x0c => ((at as *const i64).read_unaligned(), 8),
            0x0a => ((at as *const i16).read_unaligned() as i64, 2),
            0x0b => ((at as *const i32).read_unaligned() as i64, 4),
            _ => return None,
        }
    };
    *p += n;
    let base = match enc & 0x70 {
        0x00 => 0,
        0x10 => at as i64,  // pcrel
        0x30 => hdr as i64, // datarel
        _ => return None,
    };
    Some(base.wrapping_add(v) as u64)
}

/// The sorted function start addresses of `.eh_frame_hdr`'s binary search
/// table at `hdr`.
///
/// # Safety
/// `hdr` is the address of a loaded module's `PT_GNU_EH_FRAME` segment.
unsafe fn function_starts(hdr: usize) -> Option<Vec<usize>> {
    // SAFETY: the header's 4 bytes are mapped (caller).
    let [version, eh_ptr_enc, count_enc, table_enc] = unsafe { (hdr as *const [u8; 4]).read() };
    if version != 1 {
        return None;
    }
    let mut p = hdr + 4;
    // SAFETY: the encoded values follow the header.
    unsafe { read_encoded(&mut p, eh_ptr_enc, hdr)? };
    // SAFETY: as above.
    let count = unsafe { read_encoded(&mut p, count_enc, hdr)? } as usize;
    // The table: (initial location, FDE address) pairs, sorted.
    if table_enc != 0x3b || count > 1 << 24 {
        return None; // not DW_EH_PE_datarel | DW_EH_PE_sdata4: no table
    }
    // SAFETY: `count` pairs of two i32 follow (the segment holds them).
    let table = unsafe { core::slice::from_raw_parts(p as *const [i32; 2], count) };
    let mut v: Vec<usize> = table
        .iter()
        .map(|e| (hdr as i64).wrapping_add(e[0] as i64) as usize)
        .collect();
    v.sort_unstable();
    v.dedup();
    Some(v)
}

fn contains_syscall_bytes(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == [0x0f, 0x05])
}

/// The number `i` loads into the syscall number register, if it is a
/// `mov $imm, %eax|%rax`.
fn loads_nr(i: &iced_x86::Instruction) -> Option<u64> {
    (i.mnemonic() == Mnemonic::Mov
        && i.op0_kind() == OpKind::Register
        && matches!(i.op0_register(), Register::EAX | Register::RAX)
        && matches!(
            i.op1_kind(),
            OpKind::Immediate32 | OpKind::Immediate32to64 | OpKind::Immediate64
        ))
    .then(|| i.immediate(1))
}

/// `mov $15, %eax` or `mov $15, %rax` (`__NR_rt_sigreturn`).
fn is_sigreturn_setup(i: &iced_x86::Instruction) -> bool {
    loads_nr(i) == Some(15)
}

/// The bytes of `mov $15, %rax` or `mov $15, %eax` end at `at`. The FDE
/// of a signal trampoline starts one byte early (glibc: the unwinder does
/// not subtract 1 from a signal frame's return address), so decoding from
/// it does not see the `mov`: the bytes are checked too.
fn follows_sigreturn_bytes(bytes: &[u8], at: usize) -> bool {
    const MOV_RAX: [u8; 7] = [0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0];
    const MOV_EAX: [u8; 5] = [0xb8, 0x0f, 0, 0, 0];
    at.checked_sub(7)
        .is_some_and(|s| bytes.get(s..at) == Some(&MOV_RAX[..]))
        || at
            .checked_sub(5)
            .is_some_and(|s| bytes.get(s..at) == Some(&MOV_EAX[..]))
}

/// Finds the sites of `m`'s text; `funcs` are the sorted function starts.
///
/// # Safety
/// `m.text` is mapped and readable.
unsafe fn scan_text(m: &mut ModuleScan, funcs: &[usize]) {
    for seg in m.text.clone() {
        // SAFETY: caller contract.
        let bytes = unsafe { core::slice::from_raw_parts(seg.start as *const u8, seg.len()) };
        let lo = funcs.partition_point(|&f| f < seg.start);
        let hi = funcs.partition_point(|&f| f < seg.end);
        let starts = &funcs[lo..hi];
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(seg.end);
            let code = &bytes[start - seg.start..end - seg.start];
            if !contains_syscall_bytes(code) {
                continue;
            }
            let mut d = Decoder::with_ip(64, code, start as u64, DecoderOptions::NONE);
            let mut prev: Option<iced_x86::Instruction> = None;
            let mut found: Vec<SyscallSite> = Vec::new();
            let mut targets = Vec::new();
            let mut bad = false;
            while d.can_decode() {
                let i = d.decode();
                if i.is_invalid() {
                    bad = true;
                    break;
                }
                if i.code() == Code::Syscall {
                    let at = i.ip() as usize - seg.start;
                    if prev.as_ref().is_some_and(is_sigreturn_setup)
                        || follows_sigreturn_bytes(bytes, at)
                    {
                        m.excluded += 1;
                    } else {
                        let setup = prev
                            .as_ref()
                            .filter(|p| p.len() >= 5 && p.next_ip() == i.ip())
                            .and_then(|p| {
                                loads_nr(p).map(|nr| Setup {
                                    addr: p.ip() as usize,
                                    nr,
                                })
                            });
                        found.push(SyscallSite {
                            addr: i.ip() as usize,
                            func_range: start..end,
                            needs_trap: false,
                            setup,
                        });
                    }
                }
                if i.op_count() > 0 && i.op0_kind() == OpKind::NearBranch64 {
                    targets.push(i.near_branch_target() as usize);
                }
                prev = Some(i);
            }
            if bad {
                m.undecodable += 1;
            } else {
                for s in &mut found {
                    // A branch to the syscall itself would bypass a hook
                    // on the `mov`.
                    if targets.contains(&s.addr) {
                        s.setup = None;
                    }
                }
                m.sites.extend(found);
            }
        }
        mark_adjacent(&mut m.sites, bytes, seg.start);
    }
}

/// Bytes a jump at a site displaces: instructions from the site on until
/// 5 bytes are covered (what the hook engine moves).
fn displaced_end(bytes: &[u8], seg_start: usize, addr: usize) -> usize {
    let off = addr - seg_start;
    let Some(rest) = bytes.get(off..(off + 32).min(bytes.len())) else {
        return addr + 5;
    };
    let mut d = Decoder::with_ip(64, rest, addr as u64, DecoderOptions::NONE);
    let mut end = addr;
    while end < addr + 5 && d.can_decode() {
        let i = d.decode();
        if i.is_invalid() {
            return addr + 5;
        }
        end = i.next_ip() as usize;
    }
    end.max(addr + 5)
}

/// Marks the sites followed by another one within the bytes a jump would
/// displace: the second would only run, unobserved, as part of the first
/// one's relocated code, so the first becomes a trap site (its `int3`
/// displaces only itself).
///
/// Direct branches from outside the function into those bytes (a
/// compiler-split `.cold` part jumping back) need nothing here: the engine
/// leaves an `int3` at every displaced instruction start inside the jump
/// and sends a thread that lands there to the relocated copy.
fn mark_adjacent(sites: &mut [SyscallSite], bytes: &[u8], seg_start: usize) {
    sites.sort_by_key(|s| s.addr);
    for k in 1..sites.len() {
        let prev = &sites[k - 1];
        let next_hook = sites[k].setup.map_or(sites[k].addr, |s| s.addr);
        if prev.setup.is_none() && next_hook < displaced_end(bytes, seg_start, prev.addr) {
            sites[k - 1].needs_trap = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_has_sites_and_no_restorer() {
        let mods = scan_modules(&[]);
        let libc = mods
            .iter()
            .find(|m| m.name.contains("libc.so"))
            .expect("libc is loaded");
        assert!(!libc.no_unwind_table);
        assert!(libc.sites.len() > 50, "{} sites", libc.sites.len());
        // __restore_rt is excluded.
        assert!(libc.excluded >= 1);
        for s in &libc.sites {
            // SAFETY: libc's text is mapped.
            let b = unsafe { core::slice::from_raw_parts(s.addr as *const u8, 2) };
            assert_eq!(b, [0x0f, 0x05]);
            assert!(s.func_range.contains(&s.addr));
        }
        // Ours is skipped.
        let own = own_marker();
        assert!(mods
            .iter()
            .all(|m| m.text.iter().all(|r| !r.contains(&own))));
    }

    #[test]
    fn adjacent_sites_force_trap() {
        // syscall; mov al, 24; syscall; cmp rax, -4095; ret
        let b = [
            0x0f, 0x05, 0xb0, 0x18, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0xc3,
        ];
        let base = 0x1000;
        let site = |addr| SyscallSite {
            addr,
            func_range: base..base + b.len(),
            needs_trap: false,
            setup: None,
        };
        let mut sites = vec![site(base + 4), site(base)];
        mark_adjacent(&mut sites, &b, base);
        assert_eq!(sites[0].addr, base);
        assert!(sites[0].needs_trap);
        assert!(!sites[1].needs_trap);
        let mut one = vec![site(base + 4)];
        mark_adjacent(&mut one, &b, base);
        assert!(!one[0].needs_trap);
    }
}
