//! Harness comparing userbpf with the real libbpf (issue 5; not implemented yet).
