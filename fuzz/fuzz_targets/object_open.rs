//! `Object::open` on arbitrary bytes; whatever opens is relocated against a
//! small fixed target BTF (`target.btf`: the `.BTF` of libbpf-tools'
//! `runqslower`, standing in for vmlinux) with a fixed kernel environment
//! (no host files read), and every relocated program is read.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use userbpf_btf_core::Btf;
use userbpf_libbpf_compat::object::{
    kernel_version_code, KconfigSource, KernelEnv, Object, OpenOptions, TargetBtf,
};

static TARGET_BTF: &[u8] = include_bytes!("../target.btf");

fn target() -> &'static TargetBtf {
    static TARGET: OnceLock<TargetBtf> = OnceLock::new();
    TARGET.get_or_init(|| {
        TargetBtf::from_vmlinux(Btf::parse(TARGET_BTF).expect("fuzz/target.btf parses"))
    })
}

fn env() -> &'static KernelEnv {
    static ENV: OnceLock<KernelEnv> = OnceLock::new();
    ENV.get_or_init(|| KernelEnv {
        release: "6.1.0-fuzz".to_string(),
        kernel_version: kernel_version_code(6, 1, 0),
        has_bpf_cookie: true,
        has_syscall_wrapper: true,
        kconfig: KconfigSource::Nothing,
    })
}

fuzz_target!(|data: &[u8]| {
    let opts = OpenOptions {
        object_name: Some("fuzz".to_string()),
        ..Default::default()
    };
    let Ok(mut obj) = Object::open(data, opts) else {
        return;
    };
    let _ = (obj.name(), obj.license(), obj.core_relo_records());
    if obj.relocate_with(target(), env()).is_ok() {
        for prog in obj.programs() {
            if let Some(r) = prog.relocated() {
                let _ = r.insns.len();
            }
        }
    }
});
