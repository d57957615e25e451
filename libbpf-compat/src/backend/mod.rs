//! Backends: where a loaded object's maps and programs live.
//!
//! - [`userspace`]: maps in shared memory, programs in userbpf's VM (this
//!   process for `bpf_prog_test_run`, target processes through the
//!   registry).
//!
//! The kernel backend (issue 8) will sit next to it.

pub mod userspace;
