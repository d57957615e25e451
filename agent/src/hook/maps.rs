//! The process's own memory map (`/proc/self/maps`), for the two questions
//! the control path asks: how is the code at an address mapped, and where is
//! there free address space near it.

use super::error::HookError;

/// One line of `/proc/self/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: usize,
    pub end: usize,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    /// Offset in the mapped file.
    pub offset: u64,
    /// The file's device (as `st_dev`: `makedev(major, minor)`) and inode;
    /// 0 for anonymous mappings.
    pub dev: u64,
    pub inode: u64,
    pub path: String,
}

impl Mapping {
    /// The `PROT_*` bits of this mapping.
    pub fn prot(&self) -> i32 {
        let mut p = libc::PROT_NONE;
        if self.read {
            p |= libc::PROT_READ;
        }
        if self.write {
            p |= libc::PROT_WRITE;
        }
        if self.exec {
            p |= libc::PROT_EXEC;
        }
        p
    }
}

/// Parses the text of a maps file. Lines that do not parse are skipped.
pub(crate) fn parse(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16))
        else {
            continue;
        };
        let p = perms.as_bytes();
        if p.len() < 4 {
            continue;
        }
        // offset, dev, inode, then the path (which may contain spaces).
        let offset = fields
            .next()
            .and_then(|o| u64::from_str_radix(o, 16).ok())
            .unwrap_or(0);
        let dev = fields
            .next()
            .and_then(|d| d.split_once(':'))
            .and_then(|(ma, mi)| {
                Some(libc::makedev(
                    u32::from_str_radix(ma, 16).ok()?,
                    u32::from_str_radix(mi, 16).ok()?,
                ))
            })
            .unwrap_or(0);
        let inode = fields.next().and_then(|i| i.parse().ok()).unwrap_or(0);
        let path = fields.next().map(|first| {
            let rest: Vec<&str> = fields.collect();
            if rest.is_empty() {
                first.to_string()
            } else {
                format!("{first} {}", rest.join(" "))
            }
        });
        out.push(Mapping {
            start,
            end,
            read: p[0] == b'r',
            write: p[1] == b'w',
            exec: p[2] == b'x',
            shared: p[3] == b's',
            offset,
            dev,
            inode,
            path: path.unwrap_or_default(),
        });
    }
    out.sort_by_key(|m| m.start);
    out
}

/// The current mappings of this process, sorted by address.
pub(crate) fn read() -> Result<Vec<Mapping>, HookError> {
    if let Some(v) = BATCH.with(|b| b.borrow().as_ref().and_then(|s| s.clone())) {
        return Ok(v);
    }
    let v = read_fresh()?;
    BATCH.with(|b| {
        if let Some(slot) = b.borrow_mut().as_mut() {
            *slot = Some(v.clone());
        }
    });
    Ok(v)
}

thread_local! {
    /// While [`batch`] runs on this thread: the snapshot [`read`] returns
    /// (None inside: not read yet, or invalidated).
    static BATCH: core::cell::RefCell<Option<Option<Vec<Mapping>>>> =
        const { core::cell::RefCell::new(None) };
}

/// Runs `f` with `/proc/self/maps` read once for the hook operations this
/// thread makes meanwhile (many installs or removals in a row: reading and
/// parsing the file is most of an install's cost). The engine's own new
/// mappings (trampoline chunks) refresh the snapshot; changes others make
/// are not seen until the batch ends, which suits the agent's control path:
/// the code it hooks stays mapped while it works (a module unloaded
/// meanwhile fails the write, as without a batch).
pub(crate) fn batch<R>(f: impl FnOnce() -> R) -> R {
    struct End(bool);
    impl Drop for End {
        fn drop(&mut self) {
            if self.0 {
                BATCH.with(|b| *b.borrow_mut() = None);
            }
        }
    }
    let outer = BATCH.with(|b| {
        let mut b = b.borrow_mut();
        let outer = b.is_none();
        if outer {
            *b = Some(None);
        }
        outer
    });
    let _end = End(outer);
    f()
}

/// Drops the [`batch`] snapshot (the mappings changed).
pub(crate) fn invalidate() {
    BATCH.with(|b| {
        if let Some(slot) = b.borrow_mut().as_mut() {
            *slot = None;
        }
    });
}

/// Reads and parses `/proc/self/maps` now.
pub(crate) fn read_fresh() -> Result<Vec<Mapping>, HookError> {
    let text = std::fs::read_to_string("/proc/self/maps").map_err(|e| HookError::Os {
        op: "reading /proc/self/maps",
        errno: e.raw_os_error().unwrap_or(0),
    })?;
    Ok(parse(&text))
}

/// The mapping that contains `addr`.
pub(crate) fn find(maps: &[Mapping], addr: usize) -> Option<&Mapping> {
    let i = maps.partition_point(|m| m.end <= addr);
    maps.get(i).filter(|m| m.start <= addr)
}

/// The free ranges of the address space between `lo` and `hi`.
pub(crate) fn gaps(maps: &[Mapping], lo: usize, hi: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut cursor = lo;
    for m in maps {
        if m.end <= cursor {
            continue;
        }
        if m.start >= hi {
            break;
        }
        if m.start > cursor {
            out.push((cursor, m.start));
        }
        cursor = cursor.max(m.end);
    }
    if cursor < hi {
        out.push((cursor, hi));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 123 /usr/bin/my prog
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 123 /usr/bin/my prog
55d0c0c00000-55d0c0c21000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 r-xs 00000000 00:05 9 /dev/shm/x
";

    #[test]
    fn parses_and_finds() {
        let maps = parse(SAMPLE);
        assert_eq!(maps.len(), 4);
        let m = find(&maps, 0x55d0c0a01800).unwrap();
        assert!(m.exec && !m.write && !m.shared);
        assert_eq!(m.path, "/usr/bin/my prog");
        assert_eq!(m.prot(), libc::PROT_READ | libc::PROT_EXEC);
        assert!(find(&maps, 0x55d0c0a02000).is_none());
        assert!(find(&maps, 0x7f0000000010).unwrap().shared);
        assert_eq!(maps[2].path, "[heap]");
        assert_eq!((maps[1].offset, maps[1].inode), (0x1000, 123));
        assert_eq!(maps[1].dev, libc::makedev(8, 1));
        assert_eq!((maps[2].dev, maps[2].inode), (0, 0));
    }

    #[test]
    fn gaps_between_mappings() {
        let maps = parse(SAMPLE);
        let g = gaps(&maps, 0x55d0c0900000, 0x55d0c0d00000);
        assert_eq!(
            g,
            vec![
                (0x55d0c0900000, 0x55d0c0a00000),
                (0x55d0c0a02000, 0x55d0c0c00000),
                (0x55d0c0c21000, 0x55d0c0d00000)
            ]
        );
    }
}
