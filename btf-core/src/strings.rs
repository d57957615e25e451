//! The string section: libbpf's `btf_parse_str_sec` checks and offset
//! lookups. Offsets of split BTF continue after its base's section; the
//! dispatch between the two is in `Btf::str_by_offset`.

use std::ffi::CStr;

use crate::error::BtfError;
use crate::uapi::BTF_MAX_STR_OFFSET;

/// Checks a string section. Because its last byte must be NUL, every offset
/// inside it starts a NUL-terminated string.
pub(crate) fn check_string_section(strings: &[u8], is_split: bool) -> Result<(), BtfError> {
    if is_split && strings.is_empty() {
        return Ok(());
    }
    let Some(&last) = strings.last() else {
        return Err(BtfError::StringSectionEmpty);
    };
    if strings.len() - 1 > BTF_MAX_STR_OFFSET as usize {
        return Err(BtfError::StringSectionTooLarge {
            len: strings.len() as u32,
        });
    }
    if last != 0 {
        return Err(BtfError::StringSectionNotTerminated);
    }
    // Offset 0 means "no name", so a base section must start with "".
    if !is_split && strings[0] != 0 {
        return Err(BtfError::StringSectionNoEmptyString);
    }
    Ok(())
}

/// The string starting at `off` in a checked section.
pub(crate) fn c_str_at(strings: &[u8], off: usize) -> Option<&CStr> {
    CStr::from_bytes_until_nul(strings.get(off..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libbpf_string_section_rules() {
        assert_eq!(
            check_string_section(b"", false),
            Err(BtfError::StringSectionEmpty)
        );
        assert_eq!(check_string_section(b"", true), Ok(()));
        assert_eq!(
            check_string_section(b"\0abc", false),
            Err(BtfError::StringSectionNotTerminated)
        );
        assert_eq!(
            check_string_section(b"a\0", false),
            Err(BtfError::StringSectionNoEmptyString)
        );
        assert_eq!(check_string_section(b"a\0", true), Ok(()));
        assert_eq!(check_string_section(b"\0int\0", false), Ok(()));
    }

    #[test]
    fn strings_end_at_nul() {
        let s = b"\0int\0long\0";
        assert_eq!(c_str_at(s, 1).unwrap().to_bytes(), b"int");
        assert_eq!(c_str_at(s, 2).unwrap().to_bytes(), b"nt");
        assert_eq!(c_str_at(s, 0).unwrap().to_bytes(), b"");
        assert!(c_str_at(s, s.len()).is_none());
    }
}
