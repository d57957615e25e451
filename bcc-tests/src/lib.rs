//! Real libbpf-tools programs on userbpf (issue 7).
//!
//! Everything lives in the tests and the C programs beside them:
//!
//! - `driver/driver.c`: the user-space half of opensnoop, statsnoop,
//!   syscount, sigsnoop (`-k`), mountsnoop and execsnoop (`-x -u UID`)
//!   (bcc v0.26.0), linked
//!   against our `libbpf.so.1`, run on the BPF object that Debian's
//!   binary in `/usr/sbin` embeds. It prints one line per event.
//! - `driver/target.c`: the traced program; it makes known system calls
//!   for one tool and reports what they returned (execsnoop: it execs
//!   itself as `bcc-stage2`, which is still traced).
//! - `tests/libbpf_tools.rs`: starts the target with `userbpf start` (the
//!   agent preloaded), runs the driver next to it (as `nobody` when the
//!   tests run as root, so nothing can go to the kernel), and compares the
//!   events with what the target did.
