//! Values of `__kconfig` externs: `CONFIG_*` from the kernel config (the
//! `kconfig` open option first, then `/boot/config-$(uname -r)` or
//! `/proc/config.gz`), and libbpf's virtual `LINUX_*` externs, written into
//! the `.kconfig` map's initial data (`bpf_object__resolve_externs`,
//! `bpf_object__process_kconfig_line`).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::object::error::{ObjectError, EINVAL, ERANGE, ESRCH};
use crate::object::externs::{Extern, ExternKind, KcfgType};
use crate::object::log::Logger;

/// Where the system kernel config is read from when an object needs
/// `CONFIG_*` values the `kconfig` option did not give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KconfigSource {
    /// `/boot/config-<release>`, else `/proc/config.gz` (libbpf's choice).
    System,
    /// These files, in order (gzip-compressed or plain).
    Files(Vec<PathBuf>),
    /// None: unresolved `CONFIG_*` externs stay unset.
    Nothing,
}

/// What the running kernel tells about itself: the inputs of `.kconfig`
/// externs besides the config text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEnv {
    /// `uname -r`.
    pub release: String,
    /// `LINUX_KERNEL_VERSION`: `KERNEL_VERSION(a, b, c)` as libbpf's
    /// `get_kernel_version` computes it; also the object's default
    /// `kern_version`.
    pub kernel_version: u32,
    /// `LINUX_HAS_BPF_COOKIE`.
    pub has_bpf_cookie: bool,
    /// `LINUX_HAS_SYSCALL_WRAPPER`.
    pub has_syscall_wrapper: bool,
    pub kconfig: KconfigSource,
}

/// `KERNEL_VERSION(a, b, c)`, with the patch level capped at 255.
pub fn kernel_version_code(major: u32, minor: u32, patch: u32) -> u32 {
    (major << 16) + (minor << 8) + patch.min(255)
}

/// Leading `%u.%u.%u` of `s`, as `sscanf` reads it.
fn parse_three_numbers(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.trim_start().splitn(3, '.');
    let mut number = |last: bool| -> Option<u32> {
        let part = parts.next()?;
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !last && digits.len() != part.len() {
            return None;
        }
        digits.parse().ok()
    };
    Some((number(false)?, number(false)?, number(true)?))
}

/// `uname(2)`: (release, version).
fn uname() -> (String, String) {
    // SAFETY: `utsname` is plain old data; all-zero bytes are a valid value.
    let mut info: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable utsname for uname to fill.
    if unsafe { libc::uname(&mut info) } != 0 {
        return (String::new(), String::new());
    }
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&info.release), field(&info.version))
}

/// libbpf's `get_kernel_version`: Ubuntu's `/proc/version_signature`, else
/// Debian's version in `uname -v`, else `uname -r`.
fn host_kernel_version(release: &str, version: &str) -> u32 {
    if let Ok(signature) = std::fs::read_to_string("/proc/version_signature") {
        // "Ubuntu 5.15.0-91.101-generic 5.15.131"
        if let Some((a, b, c)) = signature
            .split_whitespace()
            .nth(2)
            .and_then(parse_three_numbers)
        {
            return kernel_version_code(a, b, c);
        }
    }
    if let Some(at) = version.find("Debian ") {
        if let Some((a, b, c)) = parse_three_numbers(&version[at + "Debian ".len()..]) {
            return kernel_version_code(a, b, c);
        }
    }
    parse_three_numbers(release).map_or(0, |(a, b, c)| kernel_version_code(a, b, c))
}

impl KernelEnv {
    /// The machine this runs on. The two feature flags are what userbpf's
    /// runtime offers: `bpf_get_attach_cookie` exists, and the context of
    /// a `ksyscall` program is always the syscall wrapper's (`ctx->di`
    /// points to the syscall's own `pt_regs`): `ksyscall`/`kretsyscall`
    /// programs run in user space in every mode but `kernel`, and the
    /// agents build exactly that layout, whatever the kernel's wrappers
    /// (x86-64 kernels since 4.17 have them too).
    pub fn host() -> KernelEnv {
        let (release, version) = uname();
        let kernel_version = host_kernel_version(&release, &version);
        KernelEnv {
            release,
            kernel_version,
            has_bpf_cookie: true,
            has_syscall_wrapper: true,
            kconfig: KconfigSource::System,
        }
    }
}

fn kcfg_err(errno: i32, message: String) -> ObjectError {
    ObjectError::kconfig(errno, message)
}

/// `is_kcfg_value_in_range`.
fn value_in_range(size: u32, is_signed: bool, v: u64) -> bool {
    if size == 8 {
        return true;
    }
    let bits = size * 8;
    if is_signed {
        v.wrapping_add(1u64 << (bits - 1)) < (1u64 << bits)
    } else {
        (v >> bits) == 0
    }
}

/// The kconfig externs' view of the `.kconfig` map's bytes.
struct KcfgWriter<'a> {
    data: &'a mut [u8],
}

impl KcfgWriter<'_> {
    fn write(&mut self, off: u32, bytes: &[u8]) -> Result<(), ObjectError> {
        let off = off as usize;
        let slot = self.data.get_mut(off..off + bytes.len()).ok_or_else(|| {
            kcfg_err(
                EINVAL,
                format!("kconfig value at offset {off} is outside .kconfig"),
            )
        })?;
        slot.copy_from_slice(bytes);
        Ok(())
    }

    /// `set_kcfg_value_tri`.
    fn set_tri(&mut self, ext: &mut Extern, value: u8) -> Result<(), ObjectError> {
        let Some(kcfg) = ext.kcfg().copied() else {
            return Ok(());
        };
        let c = value as char;
        match kcfg.kcfg_type {
            KcfgType::Bool => {
                if value == b'm' {
                    return Err(kcfg_err(
                        EINVAL,
                        format!(
                            "extern (kcfg) '{}': value '{c}' implies tristate or char type",
                            ext.name
                        ),
                    ));
                }
                self.write(kcfg.data_off, &[u8::from(value == b'y')])?;
            }
            KcfgType::Tristate => {
                // enum libbpf_tristate { TRI_NO = 0, TRI_YES = 1, TRI_MODULE = 2 }
                let tri: u32 = match value {
                    b'y' => 1,
                    b'm' => 2,
                    _ => 0,
                };
                self.write(kcfg.data_off, &tri.to_ne_bytes())?;
            }
            KcfgType::Char => self.write(kcfg.data_off, &[value])?,
            KcfgType::Int | KcfgType::CharArray => {
                return Err(kcfg_err(
                    EINVAL,
                    format!(
                        "extern (kcfg) '{}': value '{c}' implies bool, tristate, or char type",
                        ext.name
                    ),
                ))
            }
        }
        ext.is_set = true;
        Ok(())
    }

    /// `set_kcfg_value_str`.
    fn set_str(
        &mut self,
        ext: &mut Extern,
        value: &str,
        log: &mut Logger,
    ) -> Result<(), ObjectError> {
        let Some(kcfg) = ext.kcfg().copied() else {
            return Ok(());
        };
        if kcfg.kcfg_type != KcfgType::CharArray {
            return Err(kcfg_err(
                EINVAL,
                format!(
                    "extern (kcfg) '{}': value '{value}' implies char array type",
                    ext.name
                ),
            ));
        }
        let bytes = value.as_bytes();
        if bytes.len() < 2 || bytes[bytes.len() - 1] != b'"' {
            return Err(kcfg_err(
                EINVAL,
                format!(
                    "extern (kcfg) '{}': invalid string config '{value}'",
                    ext.name
                ),
            ));
        }
        let mut len = bytes.len() - 2;
        if len >= kcfg.size as usize {
            log.warn(format!(
                "extern (kcfg) '{}': long string '{value}' of ({len} bytes) truncated to {} bytes",
                ext.name,
                kcfg.size - 1
            ));
            len = kcfg.size as usize - 1;
        }
        let mut out = bytes[1..1 + len].to_vec();
        out.push(0);
        self.write(kcfg.data_off, &out)?;
        ext.is_set = true;
        Ok(())
    }

    /// `set_kcfg_value_num`.
    fn set_num(&mut self, ext: &mut Extern, value: u64) -> Result<(), ObjectError> {
        let Some(kcfg) = ext.kcfg().copied() else {
            return Ok(());
        };
        if !matches!(
            kcfg.kcfg_type,
            KcfgType::Int | KcfgType::Char | KcfgType::Bool
        ) {
            return Err(kcfg_err(
                EINVAL,
                format!(
                    "extern (kcfg) '{}': value '{value}' implies integer, char, or boolean type",
                    ext.name
                ),
            ));
        }
        if kcfg.kcfg_type == KcfgType::Bool && value > 1 {
            return Err(kcfg_err(
                EINVAL,
                format!(
                    "extern (kcfg) '{}': value '{value}' isn't boolean compatible",
                    ext.name
                ),
            ));
        }
        if !value_in_range(kcfg.size, kcfg.is_signed, value) {
            return Err(kcfg_err(
                ERANGE,
                format!(
                    "extern (kcfg) '{}': value '{value}' doesn't fit in {} bytes",
                    ext.name, kcfg.size
                ),
            ));
        }
        let bytes = value.to_ne_bytes();
        match kcfg.size {
            1 => self.write(kcfg.data_off, &(value as u8).to_ne_bytes())?,
            2 => self.write(kcfg.data_off, &(value as u16).to_ne_bytes())?,
            4 => self.write(kcfg.data_off, &(value as u32).to_ne_bytes())?,
            8 => self.write(kcfg.data_off, &bytes)?,
            _ => {
                return Err(kcfg_err(
                    EINVAL,
                    format!("extern (kcfg) '{}': bad size", ext.name),
                ))
            }
        }
        ext.is_set = true;
        Ok(())
    }
}

/// `strtoull(value, &end, 0)` that must consume everything.
fn parse_u64(value: &str) -> Result<u64, ObjectError> {
    let s = value.trim_start();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, hex)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(kcfg_err(
            EINVAL,
            format!("failed to parse '{value}' as integer completely"),
        ));
    }
    let parsed = u64::from_str_radix(digits, radix).map_err(|_| {
        kcfg_err(
            ERANGE,
            format!("failed to parse '{value}': Numerical result out of range"),
        )
    })?;
    Ok(if negative {
        parsed.wrapping_neg()
    } else {
        parsed
    })
}

/// `bpf_object__process_kconfig_line`.
fn process_line(
    externs: &mut [Extern],
    data: &mut KcfgWriter<'_>,
    line: &str,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    if !line.starts_with("CONFIG_") {
        return Ok(());
    }
    let line = line.strip_suffix('\n').unwrap_or(line);
    let Some((name, value)) = line.split_once('=') else {
        return Err(kcfg_err(
            EINVAL,
            format!("failed to parse '{line}': no separator"),
        ));
    };
    if value.is_empty() {
        return Err(kcfg_err(
            EINVAL,
            format!("failed to parse '{line}': no value"),
        ));
    }
    let Some(ext) = externs
        .iter_mut()
        .find(|e| e.name == name && matches!(e.kind, ExternKind::Kconfig(_)))
    else {
        return Ok(());
    };
    if ext.is_set {
        return Ok(());
    }
    match value.as_bytes()[0] {
        b'y' | b'n' | b'm' => data.set_tri(ext, value.as_bytes()[0])?,
        b'"' => data.set_str(ext, value, log)?,
        _ => {
            let num = parse_u64(value).map_err(|e| {
                log.warn(e.to_string());
                kcfg_err(
                    e.errno(),
                    format!(
                        "extern (kcfg) '{}': value '{value}' isn't a valid integer",
                        ext.name
                    ),
                )
            })?;
            let kind = ext.kcfg().map(|k| k.kcfg_type);
            if !matches!(kind, Some(KcfgType::Int | KcfgType::Char)) {
                return Err(kcfg_err(
                    EINVAL,
                    format!(
                        "extern (kcfg) '{}': value '{value}' implies integer type",
                        ext.name
                    ),
                ));
            }
            data.set_num(ext, num)?;
        }
    }
    log.debug(format!("extern (kcfg) '{}': set to {value}", ext.name));
    Ok(())
}

/// Feeds every line of a config text to [`process_line`]; `what` names the
/// source in messages ("in-memory" or "system").
fn read_config(
    externs: &mut [Extern],
    data: &mut KcfgWriter<'_>,
    text: &str,
    what: &str,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    for line in text.lines() {
        if let Err(e) = process_line(externs, data, line, log) {
            log.warn(e.to_string());
            log.warn(format!(
                "error parsing {what} Kconfig line '{line}': -{}",
                e.errno()
            ));
            // libbpf reports any Kconfig parsing failure as -EINVAL.
            return Err(kcfg_err(EINVAL, e.to_string()));
        }
    }
    Ok(())
}

/// A config file, gunzipped if it is gzip (gzopen reads both).
fn read_config_file(path: &Path) -> Option<String> {
    let raw = std::fs::read(path).ok()?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    } else {
        Some(String::from_utf8_lossy(&raw).into_owned())
    }
}

fn system_config(env: &KernelEnv) -> Option<String> {
    let candidates = match &env.kconfig {
        KconfigSource::System => vec![
            PathBuf::from(format!("/boot/config-{}", env.release)),
            PathBuf::from("/proc/config.gz"),
        ],
        KconfigSource::Files(files) => files.clone(),
        KconfigSource::Nothing => Vec::new(),
    };
    candidates.iter().find_map(|p| read_config_file(p))
}

/// The kconfig half of `bpf_object__resolve_externs`: fills `kcfg_data`
/// (the `.kconfig` map's value) and marks resolved externs; ksyms are
/// resolved elsewhere but checked here too (strong unresolved externs of
/// any kind fail the object).
pub(crate) fn resolve_kconfig_externs(
    externs: &mut [Extern],
    kcfg_data: &mut [u8],
    env: &KernelEnv,
    extra_kconfig: Option<&str>,
    log: &mut Logger,
) -> Result<(), ObjectError> {
    let mut data = KcfgWriter { data: kcfg_data };
    let mut need_config = false;
    for ext in externs.iter_mut() {
        if !matches!(ext.kind, ExternKind::Kconfig(_)) {
            continue;
        }
        if ext.name.starts_with("CONFIG_") {
            need_config = true;
            continue;
        }
        let value = match ext.name.as_str() {
            "LINUX_KERNEL_VERSION" => {
                if env.kernel_version == 0 {
                    return Err(log.fail(kcfg_err(
                        EINVAL,
                        format!("extern (kcfg) '{}': failed to get kernel version", ext.name),
                    )));
                }
                u64::from(env.kernel_version)
            }
            "LINUX_HAS_BPF_COOKIE" => u64::from(env.has_bpf_cookie),
            "LINUX_HAS_SYSCALL_WRAPPER" => u64::from(env.has_syscall_wrapper),
            name if !name.starts_with("LINUX_") || !ext.is_weak => {
                return Err(log.fail(kcfg_err(
                    EINVAL,
                    format!("extern (kcfg) '{name}': unrecognized virtual extern"),
                )));
            }
            _ => 0,
        };
        data.set_num(ext, value).map_err(|e| log.fail(e))?;
        log.debug(format!("extern (kcfg) '{}': set to {value:#x}", ext.name));
    }
    if need_config {
        if let Some(text) = extra_kconfig {
            read_config(externs, &mut data, text, "in-memory", log)?;
            need_config = externs
                .iter()
                .any(|e| matches!(e.kind, ExternKind::Kconfig(_)) && !e.is_set);
        }
    }
    if need_config {
        let Some(text) = system_config(env) else {
            log.warn("failed to open system Kconfig");
            return Err(kcfg_err(EINVAL, "failed to open system Kconfig".into()));
        };
        read_config(externs, &mut data, &text, "system", log)?;
    }
    Ok(())
}

/// The last step of `bpf_object__resolve_externs`: strong externs must be
/// resolved; weak ones default to zero.
pub(crate) fn check_externs_resolved(
    externs: &[Extern],
    log: &mut Logger,
) -> Result<(), ObjectError> {
    for ext in externs {
        if !ext.is_set && !ext.is_weak {
            return Err(log.fail(ObjectError::extern_(
                ESRCH,
                format!("extern '{}' (strong): not resolved", ext.name),
            )));
        }
        if !ext.is_set {
            log.debug(format!(
                "extern '{}' (weak): not resolved, defaulting to zero",
                ext.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoull_like_parsing() {
        assert_eq!(parse_u64("250").unwrap(), 250);
        assert_eq!(parse_u64("0x10").unwrap(), 16);
        assert_eq!(parse_u64("010").unwrap(), 8);
        assert_eq!(parse_u64("0").unwrap(), 0);
        assert_eq!(parse_u64("-1").unwrap(), u64::MAX);
        assert!(parse_u64("12abc").is_err());
        assert_eq!(
            parse_u64("99999999999999999999").unwrap_err().errno(),
            ERANGE
        );
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_three_numbers("6.18.44-fc-v769"), Some((6, 18, 44)));
        assert_eq!(kernel_version_code(6, 1, 300), (6 << 16) + (1 << 8) + 255);
        assert_eq!(parse_three_numbers("6.1"), None);
        assert_eq!(
            host_kernel_version("4.19.0-22-amd64", "#1 SMP Debian 4.19.260-1 (2022-09-29)"),
            kernel_version_code(4, 19, 260)
        );
    }

    #[test]
    fn ranges() {
        assert!(value_in_range(1, true, (-128i64) as u64));
        assert!(!value_in_range(1, true, 128));
        assert!(value_in_range(1, false, 255));
        assert!(!value_in_range(2, false, 65536));
    }
}
