//! Whether this process may use the kernel's BPF, found by trying (libbpf
//! probes features the same way).

use std::sync::OnceLock;

use super::sys::{self, cmd, ProgLoadAttr};

/// `BPF_PROG_TYPE_TRACEPOINT`: the type that needs what every tracing
/// fallback needs (CAP_BPF and CAP_PERFMON, or root).
const PROBE_PROG_TYPE: u32 = 5;

/// The errno of loading a two-instruction tracepoint program, once per
/// process: `Ok(())` when the kernel accepted it.
pub fn kernel_access() -> Result<(), i32> {
    static ACCESS: OnceLock<Result<(), i32>> = OnceLock::new();
    *ACCESS.get_or_init(|| {
        // r0 = 0; exit
        let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
        let license = c"GPL";
        let mut attr = ProgLoadAttr {
            prog_type: PROBE_PROG_TYPE,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: the instructions and license outlive the call.
        unsafe { sys::bpf_fd(cmd::PROG_LOAD, &mut attr) }.map(drop)
    })
}

/// Whether kernel programs can be loaded here.
pub fn kernel_permitted() -> bool {
    kernel_access().is_ok()
}

/// A sentence saying why the kernel refused, for error messages.
pub fn why_not() -> String {
    match kernel_access() {
        Ok(()) => "the kernel accepts BPF programs from this process".into(),
        Err(libc::EPERM) | Err(libc::EACCES) => {
            "this process may not load kernel BPF programs (run as root, or with CAP_BPF and CAP_PERFMON)".into()
        }
        Err(libc::ENOSYS) => "this kernel has no bpf(2)".into(),
        Err(e) => format!(
            "the kernel refused a test program: {}",
            crate::errstr::errstr(e)
        ),
    }
}
