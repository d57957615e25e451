//! Backends: where a loaded object's maps and programs live.
//!
//! - [`userspace`]: maps in shared memory, programs in userbpf's VM (this
//!   process for `bpf_prog_test_run`, target processes through the
//!   registry).
//! - [`kernel`]: the running kernel, for program types only it can serve.
//! - [`placement`]: the backend switch and which side each map and program
//!   of an object goes to.

pub mod kernel;
pub mod placement;
pub mod userspace;
