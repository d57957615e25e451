//! The namespace: the per-user directory where a loader and the targets it
//! serves find each other (registry files, the trace pipe).
//!
//! Default: `/dev/shm/userbpf-<uid>/default`. `USERBPF_NAMESPACE=name`
//! picks another namespace of the same user; `USERBPF_DIR=/path` names the
//! directory outright. Directories are created mode 0700: only their user
//! can see what is loaded.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// Environment variable naming the namespace directory outright.
pub const ENV_DIR: &str = "USERBPF_DIR";
/// Environment variable naming a namespace under the user's root.
pub const ENV_NAMESPACE: &str = "USERBPF_NAMESPACE";

/// The namespace directory this process uses (not created).
pub fn namespace_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let name = std::env::var(ENV_NAMESPACE)
        .ok()
        .filter(|n| !n.is_empty() && !n.contains('/') && n != "." && n != "..")
        .unwrap_or_else(|| "default".to_string());
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/dev/shm/userbpf-{uid}")).join(name)
}

/// The namespace directory, created (mode 0700) if missing. Refuses a
/// directory owned by another user or open to others.
pub fn ensure_namespace_dir() -> io::Result<PathBuf> {
    let dir = namespace_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let meta = std::fs::metadata(&dir)?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} belongs to uid {}, not {uid}", dir.display(), meta.uid()),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Path of the trace pipe that `bpf_trace_printk` writes and
/// `userbpf trace-pipe` reads.
pub fn trace_pipe_path() -> PathBuf {
    namespace_dir().join("trace_pipe")
}
