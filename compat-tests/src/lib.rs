//! The compat harness: our ELF object loader against the real libbpf.
//!
//! The corpus ([`corpus`]) is the BPF objects embedded in Debian's
//! libbpf-tools binaries (`/usr/sbin/*`, extracted at run time with our
//! loader's `object::embedded`) plus the objects of our own C tests
//! (`bpf/*.bpf.c`). Each object is relocated twice:
//!
//! - by the real libbpf 1.7 (crate `libbpf-sys`, vendored and linked
//!   statically) in the `libbpf-oracle` binary: `bpf_object__open_mem`,
//!   every program's autoload on, `bpf_object__prepare` (maps created in
//!   the kernel, everything relocated, no program loaded; root only), then
//!   `bpf_program__insns`. Map fds are mapped back to map indexes
//!   ([`normalize`]) and the result crosses a pipe ([`dump`]);
//! - by our loader (`userbpf-libbpf-compat`'s `object`), in-process
//!   ([`ours`]).
//!
//! [`compare`] then checks them slot by slot.
//!
//! Why a separate process for libbpf: our `libbpf-compat` exports the same
//! C symbols as libbpf (`bpf_object__open_mem`, ...). Linking both into one
//! binary would clash, or worse, silently resolve some calls to the wrong
//! one. So only `libbpf-oracle` links `libbpf-sys`, and it does not link
//! this library (it compiles in just [`dump`] and [`normalize`], which
//! depend on nothing but `userbpf-runtime`). The process boundary also
//! frees the kernel maps of each run, and a libbpf crash cannot take the
//! test down with it.

pub mod compare;
pub mod corpus;
pub mod dump;
pub mod normalize;
pub mod oracle_client;
pub mod ours;
pub mod verdict;
