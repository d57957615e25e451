//! `cargo bench -p userbpf-benches` (and `make bench`): the same run as the
//! `userbpf-jit-bench` binary.

fn main() -> anyhow::Result<()> {
    userbpf_benches::harness::run(std::env::args().skip(1))
}
