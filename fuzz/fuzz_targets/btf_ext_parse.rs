//! `BtfExt::parse` on arbitrary bytes; whatever parses has every record of
//! every subsection read, and round-trips through the other byte order
//! when the swapped blob parses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use userbpf_btf_core::{BtfExt, Endianness};

fuzz_target!(|data: &[u8]| {
    let Ok(ext) = BtfExt::parse(data) else {
        return;
    };
    let _ = ext.header();
    if let Some(info) = ext.func_info() {
        let _ = (
            info.record_size(),
            info.record_count(),
            info.raw_bytes().len(),
        );
        for sec in info.sections() {
            let _ = (sec.sec_name_off(), sec.len(), sec.get(sec.len()));
            for r in sec.records() {
                let _ = (r.insn_off, r.type_id);
            }
        }
    }
    if let Some(info) = ext.line_info() {
        for sec in info.sections() {
            for r in sec.records() {
                let _ = (r.insn_off, r.line_off);
            }
        }
    }
    if let Some(info) = ext.core_relo() {
        for sec in info.sections() {
            let _ = sec.raw_records().len();
            for r in sec.records() {
                let _ = (r.insn_off, r.type_id, r.access_str_off, r.kind);
            }
        }
    }
    let other = match ext.endianness() {
        Endianness::Little => Endianness::Big,
        Endianness::Big => Endianness::Little,
    };
    // Swapped blobs may be refused (libbpf accepts non-native records only
    // at their exact size), but what parses must come back unchanged.
    let swapped = ext.raw_data_in(other);
    if let Ok(again) = BtfExt::parse(&swapped) {
        assert_eq!(again.raw_data(), ext.raw_data());
    }
});
