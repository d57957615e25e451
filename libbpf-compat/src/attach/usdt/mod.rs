//! USDT (statically defined tracepoints in user binaries) as libbpf 1.7
//! attaches them, for programs that use libbpf's `usdt.bpf.h`
//! (`bpf_usdt_arg`, `bpf_usdt_arg_cnt`, `bpf_usdt_cookie`, `BPF_USDT`).
//!
//! - [`elf`]: `.note.stapsdt` notes, and where each probe and semaphore
//!   sits in the file;
//! - [`arg`]: argument specs (`-4@-20(%rbp)`) as `struct
//!   __bpf_usdt_arg_spec` fields;
//! - [`spec`]: `struct __bpf_usdt_spec` as bytes, in the layout of the
//!   object's usdt.bpf.h;
//! - [`ids`]: spec ids per object;
//! - [`attach`]: one link per attachment, one uprobe target per call site.
//!
//! How it runs: the BPF side finds the call site's spec with
//! `bpf_get_attach_cookie` (the spec id) and reads each argument from the
//! `struct pt_regs` context or from memory. The agent increments the
//! 16-bit semaphore at the record's `ref_ctr_offset` in each mapping of
//! the binary while the probe is installed, as the kernel's uprobe
//! reference counter does.

pub mod arg;
pub mod attach;
pub mod elf;
mod error;
pub mod ids;
mod scan;
pub mod spec;

pub use arg::{parse_spec, pt_regs_offset, ArgSpec, ArgType, UsdtSpec, MAX_ARGS};
pub use attach::{attach_usdt, prepare_usdt, SpecMap, UsdtLink, UsdtManager, UsdtRequest};
pub use elf::{ProbeLocation, Segment, UsdtElf, UsdtNote, UsdtTarget};
pub use error::UsdtError;
pub use spec::{encode_spec, SpecLayout};

/// `SEC("usdt/PATH:PROVIDER:NAME")` read as libbpf's `attach_usdt` reads
/// it (`sscanf(sec, "usdt/%m[^:]:%m[^:]:%m[^:]")`): `Ok(None)` for a bare
/// `SEC("usdt")`, `Err(())` for anything else that does not give three
/// non-empty fields (libbpf's "invalid section" error). Text after the
/// name is ignored, and `usdt.s/...` does not match, as in libbpf.
#[allow(clippy::result_unit_err)]
pub fn parse_usdt_section(sec: &str) -> Result<Option<(String, String, String)>, ()> {
    if sec == "usdt" {
        return Ok(None);
    }
    let r = scan::scan(sec, "usdt/%m[^:]:%m[^:]:%m[^:]");
    if r.values.len() != 3 {
        return Err(());
    }
    Ok(Some((
        r.str(0).to_owned(),
        r.str(1).to_owned(),
        r.str(2).to_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections() {
        assert_eq!(parse_usdt_section("usdt"), Ok(None));
        assert_eq!(
            parse_usdt_section("usdt//usr/bin/app:prov:probe"),
            Ok(Some(("/usr/bin/app".into(), "prov".into(), "probe".into())))
        );
        assert_eq!(
            parse_usdt_section("usdt/libc.so.6:libc:setjmp:extra"),
            Ok(Some(("libc.so.6".into(), "libc".into(), "setjmp".into())))
        );
        assert_eq!(parse_usdt_section("usdt/app:prov"), Err(()));
        assert_eq!(parse_usdt_section("usdt/app::probe"), Err(()));
        assert_eq!(parse_usdt_section("usdt/"), Err(()));
        assert_eq!(parse_usdt_section("usdt.s/app:prov:probe"), Err(()));
    }
}
