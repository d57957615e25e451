//! What libuserbpf_agent.so exports: its entry points (start, stop), the signal
//! interposers and `pthread_create` (Syscall User Dispatch in new threads),
//! nothing else (the version script below; the names are assembly aliases,
//! see `export_c_name!`).

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let map = out.join("agent.map");
    std::fs::write(
        &map,
        "{\n\tglobal:\n\t\tuserbpf_agent_start;\n\t\tuserbpf_agent_stop;\n\t\tsigaction;\n\t\tsignal;\n\t\tpthread_sigmask;\n\t\tsigprocmask;\n\t\tpthread_create;\n\tlocal: *;\n};\n",
    )
    .expect("write agent.map");
    println!("cargo:rerun-if-changed=build.rs");
    // Only the cdylib: the rlib (tests, libbpf.so.1) links normally.
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
}
