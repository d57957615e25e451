//! Reading and writing the target's memory: `process_vm_readv`/`writev`,
//! or `/proc/PID/mem` where those are not available.

use std::os::unix::fs::FileExt;

use super::error::InjectError;

fn proc_mem(pid: i32, write: bool) -> Result<std::fs::File, InjectError> {
    let path = format!("/proc/{pid}/mem");
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)
        .map_err(|e| InjectError::io(format!("cannot open {path}"), e))
}

/// Writes `data` at `addr` in process `pid`.
pub fn write(pid: i32, addr: u64, data: &[u8]) -> Result<(), InjectError> {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: the local iovec describes `data`; the kernel checks the
    // remote one against the target's mappings.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if n == data.len() as isize {
        return Ok(());
    }
    proc_mem(pid, true)?.write_all_at(data, addr).map_err(|e| {
        InjectError::io(
            format!("cannot write process {pid}'s memory at {addr:#x}"),
            e,
        )
    })
}

/// Reads `len` bytes at `addr` in process `pid`.
pub fn read(pid: i32, addr: u64, len: usize) -> Result<Vec<u8>, InjectError> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: the local iovec describes `buf`; the kernel checks the
    // remote one.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n == len as isize {
        return Ok(buf);
    }
    proc_mem(pid, false)?
        .read_exact_at(&mut buf, addr)
        .map_err(|e| {
            InjectError::io(
                format!("cannot read process {pid}'s memory at {addr:#x}"),
                e,
            )
        })?;
    Ok(buf)
}

/// A NUL-terminated string at `addr` (at most `max` bytes), read a page
/// at a time so that the end of a mapping is not crossed needlessly.
pub fn read_c_string(pid: i32, addr: u64, max: usize) -> Result<String, InjectError> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let to_page_end = (4096 - (at % 4096)) as usize;
        let chunk = read(pid, at, to_page_end.min(max - out.len()))?;
        if let Some(nul) = chunk.iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..nul]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&chunk);
        at += chunk.len() as u64;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
