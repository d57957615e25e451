//! Finds the BPF objects embedded in a binary: a skeleton (`bpftool gen
//! skeleton`) compiles the whole BPF ELF object into the program as a byte
//! array, so a libbpf-tools binary contains one or more ELF images with
//! `e_machine == EM_BPF`. Their size is not recorded anywhere but in the
//! ELF header itself: the section header table and the furthest section
//! data bound it.

use std::path::Path;

/// An ELF image found inside a larger file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedObject<'a> {
    /// Byte offset of the image in the file.
    pub offset: usize,
    pub bytes: &'a [u8],
}

const EHDR_SIZE: usize = 64;
const SHDR_SIZE: usize = 64;
const EM_BPF: u16 = 247;
const SHT_NOBITS: u32 = 8;

fn u16_at(b: &[u8], at: usize, le: bool) -> Option<u16> {
    let raw: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if le {
        u16::from_le_bytes(raw)
    } else {
        u16::from_be_bytes(raw)
    })
}

fn u32_at(b: &[u8], at: usize, le: bool) -> Option<u32> {
    let raw: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if le {
        u32::from_le_bytes(raw)
    } else {
        u32::from_be_bytes(raw)
    })
}

fn u64_at(b: &[u8], at: usize, le: bool) -> Option<u64> {
    let raw: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(if le {
        u64::from_le_bytes(raw)
    } else {
        u64::from_be_bytes(raw)
    })
}

/// The size of the 64-bit BPF ELF image starting at `image[0]`, or `None`
/// if it is not one (or runs past the end of `image`).
fn bpf_image_size(image: &[u8]) -> Option<usize> {
    let header = image.get(..EHDR_SIZE)?;
    if header[..4] != *b"\x7fELF" || header[4] != 2 {
        return None;
    }
    let le = match header[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    if u16_at(header, 18, le)? != EM_BPF {
        return None;
    }
    let shoff = u64_at(header, 40, le)?;
    let shentsize = u64::from(u16_at(header, 58, le)?);
    let shnum = u64::from(u16_at(header, 60, le)?);
    if shentsize != SHDR_SIZE as u64 {
        return None;
    }
    let table_end = shoff.checked_add(shnum.checked_mul(shentsize)?)?;
    let mut end = table_end.max(EHDR_SIZE as u64);
    let table = image.get(usize::try_from(shoff).ok()?..usize::try_from(table_end).ok()?)?;
    // Section data normally precedes the table, but nothing requires it.
    for sh in table.chunks_exact(SHDR_SIZE) {
        if u32_at(sh, 4, le)? == SHT_NOBITS {
            continue;
        }
        let data_end = u64_at(sh, 24, le)?.checked_add(u64_at(sh, 32, le)?)?;
        end = end.max(data_end);
    }
    let end = usize::try_from(end).ok()?;
    (end <= image.len()).then_some(end)
}

/// Every BPF ELF image in `bytes`, in file order. Images do not overlap:
/// scanning resumes after each one found.
pub fn find_bpf_objects(bytes: &[u8]) -> Vec<EmbeddedObject<'_>> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(pos) = find_magic(&bytes[at..]) {
        let offset = at + pos;
        match bpf_image_size(&bytes[offset..]) {
            Some(size) => {
                found.push(EmbeddedObject {
                    offset,
                    bytes: &bytes[offset..offset + size],
                });
                at = offset + size;
            }
            None => at = offset + 1,
        }
    }
    found
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\x7fELF")
}

/// Reads `path` and returns copies of the BPF objects embedded in it.
pub fn extract_bpf_objects(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path)?;
    Ok(find_bpf_objects(&bytes)
        .into_iter()
        .map(|o| o.bytes.to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_non_bpf_and_truncated_images() {
        let mut blob = b"junk\x7fELF".to_vec();
        blob.extend_from_slice(&[0u8; 80]);
        assert!(find_bpf_objects(&blob).is_empty());
        assert!(find_bpf_objects(b"").is_empty());
        assert!(find_bpf_objects(b"\x7fEL").is_empty());
    }

    #[test]
    fn finds_an_empty_bpf_image() {
        let mut image = vec![0u8; EHDR_SIZE];
        image[..4].copy_from_slice(b"\x7fELF");
        image[4] = 2;
        image[5] = 1;
        image[18..20].copy_from_slice(&EM_BPF.to_le_bytes());
        image[58..60].copy_from_slice(&64u16.to_le_bytes());
        let mut blob = b"prefix".to_vec();
        blob.extend_from_slice(&image);
        blob.extend_from_slice(b"suffix");
        let found = find_bpf_objects(&blob);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, 6);
        assert_eq!(found[0].bytes.len(), EHDR_SIZE);
    }
}
