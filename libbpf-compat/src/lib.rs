//! libbpf.so.1: the libbpf C ABI on userbpf (issue 5; not implemented yet).
