//! What `libbpf-oracle` reports, and the line format it is carried in.
//!
//! The oracle runs in its own process (see the crate docs), so its results
//! cross a pipe. The format is plain text, one record a line, fields split
//! by tabs (names and messages never hold tabs or newlines: they are
//! replaced by spaces):
//!
//! ```text
//! userbpf-libbpf-oracle 1
//! libbpf  <version>
//! object  <name>
//! status  ok | open-failed <errno> <message> | prepare-failed <errno> <message>
//! map     <index> <type> <name>
//! prog    <name> <section> <prog type> <CO-RE relos> <CO-RE poisoned> <insns as hex>
//! subprog <name> <CO-RE relos> <CO-RE poisoned>
//! note    <text>
//! warn    <text>
//! end
//! bench   <key> <nanoseconds>
//! ```
//!
//! `insns` are the program's final instructions after normalization
//! ([`crate::normalize`]), 16 hex digits (8 bytes, file order) a slot.

use std::fmt::Write as _;

use userbpf_runtime::isa::{Insn, INSN_SIZE};

/// First line of every dump.
pub const MAGIC: &str = "userbpf-libbpf-oracle 1";

/// How far libbpf got with an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// `bpf_object__open_mem` returned NULL with this errno.
    OpenFailed {
        errno: i32,
        message: String,
    },
    /// `bpf_object__prepare` returned `-errno`.
    PrepareFailed {
        errno: i32,
        message: String,
    },
}

impl Status {
    pub fn is_ok(&self) -> bool {
        matches!(self, Status::Ok)
    }
}

/// A map of the object, in `bpf_object__next_map` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleMap {
    pub index: usize,
    /// `enum bpf_map_type`.
    pub map_type: u32,
    pub name: String,
}

/// An entry-point program (`bpf_object__next_program` order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleProgram {
    pub name: String,
    pub section: String,
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// CO-RE relocations libbpf logged against this program's own code.
    pub core_relos: usize,
    /// Of those, how many it poisoned (no target: `call 0xbad2310`).
    pub core_poisoned: usize,
    /// Final instructions, normalized. Empty when prepare failed.
    pub insns: Vec<Insn>,
}

/// CO-RE relocations libbpf logged against a subprogram (in `.text`):
/// they are applied once, before the subprogram is copied into callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleSubprog {
    pub name: String,
    pub core_relos: usize,
    pub core_poisoned: usize,
}

/// libbpf's verdict on one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleObject {
    pub name: String,
    pub status: Status,
    pub maps: Vec<OracleMap>,
    pub programs: Vec<OracleProgram>,
    pub subprogs: Vec<OracleSubprog>,
    /// Normalization remarks (anything not mapped back to the object).
    pub notes: Vec<String>,
    /// libbpf's warning-level log lines.
    pub warnings: Vec<String>,
}

impl OracleObject {
    pub fn new(name: &str) -> OracleObject {
        OracleObject {
            name: name.to_string(),
            status: Status::Ok,
            maps: Vec::new(),
            programs: Vec::new(),
            subprogs: Vec::new(),
            notes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// CO-RE relocations in the whole object (programs and subprograms).
    pub fn core_relos(&self) -> usize {
        self.programs.iter().map(|p| p.core_relos).sum::<usize>()
            + self.subprogs.iter().map(|s| s.core_relos).sum::<usize>()
    }

    /// Poisoned CO-RE relocations in the whole object.
    pub fn core_poisoned(&self) -> usize {
        self.programs.iter().map(|p| p.core_poisoned).sum::<usize>()
            + self.subprogs.iter().map(|s| s.core_poisoned).sum::<usize>()
    }

    pub fn program(&self, name: &str) -> Option<&OracleProgram> {
        self.programs.iter().find(|p| p.name == name)
    }
}

/// Everything one oracle run reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OracleReport {
    /// `libbpf_version_string()`.
    pub libbpf_version: String,
    pub objects: Vec<OracleObject>,
    /// `bench` lines: (key, nanoseconds).
    pub bench: Vec<(String, u64)>,
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Instructions as hex, 16 digits a slot.
pub fn insns_to_hex(insns: &[Insn]) -> String {
    let mut out = String::with_capacity(insns.len() * 16);
    for i in insns {
        for b in i.to_bytes() {
            let _ = write!(out, "{b:02x}");
        }
    }
    out
}

/// The inverse of [`insns_to_hex`].
pub fn insns_from_hex(hex: &str) -> Result<Vec<Insn>, String> {
    if !hex.len().is_multiple_of(INSN_SIZE * 2) {
        return Err(format!("{} hex digits is not whole slots", hex.len()));
    }
    let bytes = hex
        .as_bytes()
        .chunks_exact(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("bad hex {:?}", String::from_utf8_lossy(p)))
        })
        .collect::<Result<Vec<u8>, String>>()?;
    Ok(Insn::decode_all(&bytes).expect("whole slots"))
}

/// Writes the header line and the libbpf version.
pub fn write_header(out: &mut String, libbpf_version: &str) {
    let _ = writeln!(out, "{MAGIC}");
    let _ = writeln!(out, "libbpf\t{}", clean(libbpf_version));
}

/// Appends one object's record.
pub fn write_object(out: &mut String, o: &OracleObject) {
    let _ = writeln!(out, "object\t{}", clean(&o.name));
    let _ = match &o.status {
        Status::Ok => writeln!(out, "status\tok"),
        Status::OpenFailed { errno, message } => {
            writeln!(out, "status\topen-failed\t{errno}\t{}", clean(message))
        }
        Status::PrepareFailed { errno, message } => {
            writeln!(out, "status\tprepare-failed\t{errno}\t{}", clean(message))
        }
    };
    for m in &o.maps {
        let _ = writeln!(out, "map\t{}\t{}\t{}", m.index, m.map_type, clean(&m.name));
    }
    for p in &o.programs {
        let _ = writeln!(
            out,
            "prog\t{}\t{}\t{}\t{}\t{}\t{}",
            clean(&p.name),
            clean(&p.section),
            p.prog_type,
            p.core_relos,
            p.core_poisoned,
            insns_to_hex(&p.insns)
        );
    }
    for s in &o.subprogs {
        let _ = writeln!(
            out,
            "subprog\t{}\t{}\t{}",
            clean(&s.name),
            s.core_relos,
            s.core_poisoned
        );
    }
    for n in &o.notes {
        let _ = writeln!(out, "note\t{}", clean(n));
    }
    for w in &o.warnings {
        let _ = writeln!(out, "warn\t{}", clean(w));
    }
    let _ = writeln!(out, "end");
}

/// Appends a `bench` line.
pub fn write_bench(out: &mut String, key: &str, ns: u64) {
    let _ = writeln!(out, "bench\t{}\t{ns}", clean(key));
}

fn field<'a>(fields: &[&'a str], i: usize, line: usize) -> Result<&'a str, String> {
    fields
        .get(i)
        .copied()
        .ok_or_else(|| format!("line {line}: missing field {i}"))
}

fn number<T: std::str::FromStr>(fields: &[&str], i: usize, line: usize) -> Result<T, String> {
    let s = field(fields, i, line)?;
    s.parse()
        .map_err(|_| format!("line {line}: field {i} is not a number: {s:?}"))
}

/// Parses a whole dump.
pub fn parse(text: &str) -> Result<OracleReport, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, MAGIC)) => {}
        other => return Err(format!("not an oracle dump (first line {other:?})")),
    }
    let mut report = OracleReport::default();
    let mut current: Option<OracleObject> = None;
    for (n, line) in lines {
        let n = n + 1;
        let f: Vec<&str> = line.split('\t').collect();
        let cur = |c: &mut Option<OracleObject>| -> Result<(), String> {
            if c.is_none() {
                return Err(format!("line {n}: {:?} outside an object", f[0]));
            }
            Ok(())
        };
        match f[0] {
            "libbpf" => report.libbpf_version = field(&f, 1, n)?.to_string(),
            "bench" => report
                .bench
                .push((field(&f, 1, n)?.to_string(), number(&f, 2, n)?)),
            "object" => {
                if current.is_some() {
                    return Err(format!("line {n}: object inside an object"));
                }
                current = Some(OracleObject::new(field(&f, 1, n)?));
            }
            "status" => {
                cur(&mut current)?;
                let o = current.as_mut().expect("checked");
                o.status = match field(&f, 1, n)? {
                    "ok" => Status::Ok,
                    "open-failed" => Status::OpenFailed {
                        errno: number(&f, 2, n)?,
                        message: field(&f, 3, n)?.to_string(),
                    },
                    "prepare-failed" => Status::PrepareFailed {
                        errno: number(&f, 2, n)?,
                        message: field(&f, 3, n)?.to_string(),
                    },
                    other => return Err(format!("line {n}: unknown status {other:?}")),
                };
            }
            "map" => {
                cur(&mut current)?;
                current.as_mut().expect("checked").maps.push(OracleMap {
                    index: number(&f, 1, n)?,
                    map_type: number(&f, 2, n)?,
                    name: field(&f, 3, n)?.to_string(),
                });
            }
            "prog" => {
                cur(&mut current)?;
                let insns =
                    insns_from_hex(field(&f, 6, n)?).map_err(|e| format!("line {n}: {e}"))?;
                current
                    .as_mut()
                    .expect("checked")
                    .programs
                    .push(OracleProgram {
                        name: field(&f, 1, n)?.to_string(),
                        section: field(&f, 2, n)?.to_string(),
                        prog_type: number(&f, 3, n)?,
                        core_relos: number(&f, 4, n)?,
                        core_poisoned: number(&f, 5, n)?,
                        insns,
                    });
            }
            "subprog" => {
                cur(&mut current)?;
                current
                    .as_mut()
                    .expect("checked")
                    .subprogs
                    .push(OracleSubprog {
                        name: field(&f, 1, n)?.to_string(),
                        core_relos: number(&f, 2, n)?,
                        core_poisoned: number(&f, 3, n)?,
                    });
            }
            "note" => {
                cur(&mut current)?;
                let text = f[1..].join(" ");
                current.as_mut().expect("checked").notes.push(text);
            }
            "warn" => {
                cur(&mut current)?;
                let text = f[1..].join(" ");
                current.as_mut().expect("checked").warnings.push(text);
            }
            "end" => {
                let o = current
                    .take()
                    .ok_or_else(|| format!("line {n}: end outside an object"))?;
                report.objects.push(o);
            }
            "" => {}
            other => return Err(format!("line {n}: unknown record {other:?}")),
        }
    }
    if let Some(o) = current {
        return Err(format!(
            "object {} is not terminated (oracle died?)",
            o.name
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut ok = OracleObject::new("opensnoop");
        ok.maps.push(OracleMap {
            index: 0,
            map_type: 1,
            name: "start".into(),
        });
        ok.programs.push(OracleProgram {
            name: "tp_enter".into(),
            section: "tracepoint/syscalls/sys_enter_open".into(),
            prog_type: 5,
            core_relos: 3,
            core_poisoned: 1,
            insns: vec![
                Insn::new(0x18, 1, 5, 0, 0),
                Insn::new(0, 0, 0, 0, 0),
                Insn::new(0x95, 0, 0, 0, 0),
            ],
        });
        ok.subprogs.push(OracleSubprog {
            name: "helper".into(),
            core_relos: 2,
            core_poisoned: 0,
        });
        ok.notes.push("a\tnote".into());
        ok.warnings.push("libbpf: warn".into());
        let mut bad = OracleObject::new("broken");
        bad.status = Status::PrepareFailed {
            errno: 22,
            message: "Invalid argument".into(),
        };
        let mut text = String::new();
        write_header(&mut text, "v1.7.0");
        write_object(&mut text, &ok);
        write_object(&mut text, &bad);
        write_bench(&mut text, "vmlinux_btf", 12345);
        let parsed = parse(&text).unwrap();
        ok.notes[0] = "a note".into();
        assert_eq!(parsed.libbpf_version, "v1.7.0");
        assert_eq!(parsed.objects, vec![ok, bad]);
        assert_eq!(parsed.bench, vec![("vmlinux_btf".to_string(), 12345)]);
    }

    #[test]
    fn truncated_dump_is_an_error() {
        let mut text = String::new();
        write_header(&mut text, "v1.7.0");
        write_object(&mut text, &OracleObject::new("x"));
        let cut = text.trim_end().trim_end_matches("end");
        assert!(parse(cut).is_err());
    }
}
