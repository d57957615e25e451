//! Real libbpf-tools programs on userbpf (issue 7; not implemented yet).
