//! `bpf_program__attach_usdt` and USDT auto-attach (being written).

use crate::link_api::LinkHandle;
use crate::object_api::ProgramHandle;

/// Auto-attach for `SEC("usdt/PATH:PROVIDER:NAME")`: the link, `Ok(None)`
/// when the section names no target, or a positive errno.
///
/// # Safety
/// `prog` must be a live program handle.
pub(crate) unsafe fn auto_attach_usdt(
    _prog: *mut ProgramHandle,
) -> Result<Option<*mut LinkHandle>, i32> {
    Err(libc::EOPNOTSUPP)
}
