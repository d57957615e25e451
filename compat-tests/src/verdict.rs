//! Kernel verdicts (issue 8): per program, what `bpf_object__load` says
//! when that program alone is loaded into the running kernel.
//!
//! Two processes produce the same report for the same object files:
//!
//! - `libbpf-oracle --verdicts NAME=OBJ ...`: the real libbpf 1.7
//!   (`libbpf-sys`);
//! - `kernel_verdict NAME=OBJ ...` (`compat-tests/kernel-apps/kernel_verdict.c`,
//!   linked `-lbpf`), run with `LD_LIBRARY_PATH` at our `libbpf.so.1` and
//!   `USERBPF_BACKEND=kernel`.
//!
//! For every object and every program P (in `bpf_object__next_program`
//! order): `bpf_object__open_mem` (object name NAME), autoload on for P and
//! off for every other program, the map sizes below, `bpf_object__load`,
//! record the result (0 or `-errno`) and the first `LIBBPF_WARN` line the
//! load logged, `bpf_object__close`.
//!
//! Map sizes: libbpf-tools set some map sizes at run time and leave them
//! invalid in the object. Before loading, both sides apply the same rule
//! so that the verdict is about the program, not about a size the tool
//! would have set:
//!
//! - a `STACK_TRACE` map whose `value_size` is 0 or not a multiple of 8
//!   gets `127 * 8` (`PERF_MAX_STACK_DEPTH` frames);
//! - a map with `max_entries` 0 that is not a `PERF_EVENT_ARRAY` (libbpf
//!   sizes those itself) gets 1, or the page size for a `RINGBUF`.
//!
//! `--kprobe-attach PROG:FUNC NAME=OBJ` instead loads PROG alone and calls
//! `bpf_program__attach_kprobe(PROG, false, FUNC)`, recording its error.
//!
//! The report, one record a line, fields split by tabs (texts never hold
//! tabs or newlines):
//!
//! ```text
//! userbpf-kernel-verdicts 1
//! libbpf      <version>
//! object      <name>
//! open-failed <-errno> <first warning>
//! resize      <map> <change>
//! verdict     <program> <0 or -errno> <first warning of the load>
//! attach      <program> <target> <load: 0 or -errno> <attach: 0 or -errno> <first warning of the attach>
//! end
//! ```

use std::fmt::Write as _;

/// First line of every report.
pub const MAGIC: &str = "userbpf-kernel-verdicts 1";

/// `PERF_MAX_STACK_DEPTH` frames of 8 bytes.
pub const STACK_TRACE_VALUE_SIZE: u32 = 127 * 8;

/// One program's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgVerdict {
    pub name: String,
    /// 0, or the negative errno `bpf_object__load` returned.
    pub rc: i32,
    /// The first warning the load logged (empty if none).
    pub warn: String,
}

/// One kprobe attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachVerdict {
    pub prog: String,
    pub target: String,
    /// The load before it (the attach is not tried if it failed).
    pub load_rc: i32,
    /// 0, or `-errno` of the NULL link.
    pub rc: i32,
    /// The first warning the attach logged.
    pub warn: String,
}

/// Everything said about one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictObject {
    pub name: String,
    /// `bpf_object__open_mem` failed: `(-errno, first warning)`.
    pub open_failed: Option<(i32, String)>,
    /// `resize` lines: `(map, change)`.
    pub resized: Vec<(String, String)>,
    pub programs: Vec<ProgVerdict>,
    pub attaches: Vec<AttachVerdict>,
}

/// A whole report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictReport {
    pub libbpf_version: String,
    pub objects: Vec<VerdictObject>,
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ").trim_end().to_string()
}

pub fn write_header(out: &mut String, libbpf_version: &str) {
    writeln!(out, "{MAGIC}").unwrap();
    writeln!(out, "libbpf\t{}", clean(libbpf_version)).unwrap();
}

pub fn write_object(out: &mut String, o: &VerdictObject) {
    writeln!(out, "object\t{}", clean(&o.name)).unwrap();
    if let Some((rc, warn)) = &o.open_failed {
        writeln!(out, "open-failed\t{rc}\t{}", clean(warn)).unwrap();
    }
    for (map, change) in &o.resized {
        writeln!(out, "resize\t{}\t{}", clean(map), clean(change)).unwrap();
    }
    for p in &o.programs {
        writeln!(
            out,
            "verdict\t{}\t{}\t{}",
            clean(&p.name),
            p.rc,
            clean(&p.warn)
        )
        .unwrap();
    }
    for a in &o.attaches {
        writeln!(
            out,
            "attach\t{}\t{}\t{}\t{}\t{}",
            clean(&a.prog),
            clean(&a.target),
            a.load_rc,
            a.rc,
            clean(&a.warn)
        )
        .unwrap();
    }
    writeln!(out, "end").unwrap();
}

fn field<'a>(fields: &[&'a str], i: usize, line: usize) -> Result<&'a str, String> {
    fields
        .get(i)
        .copied()
        .ok_or_else(|| format!("line {line}: field {i} missing"))
}

fn int(fields: &[&str], i: usize, line: usize) -> Result<i32, String> {
    let f = field(fields, i, line)?;
    f.parse()
        .map_err(|_| format!("line {line}: `{f}` is not a number"))
}

/// Parses a report; an object not closed by `end` (the process died in
/// it) is an error naming it.
pub fn parse(text: &str) -> Result<VerdictReport, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l == MAGIC => {}
        other => {
            return Err(format!(
                "not a verdict report (first line {:?})",
                other.map(|(_, l)| l)
            ))
        }
    }
    let mut report = VerdictReport::default();
    let mut current: Option<VerdictObject> = None;
    for (i, line) in lines {
        let n = i + 1;
        let fields: Vec<&str> = line.split('\t').collect();
        let warn_at = |k: usize| fields.get(k).map(|s| s.to_string()).unwrap_or_default();
        match fields[0] {
            "libbpf" => report.libbpf_version = field(&fields, 1, n)?.to_string(),
            "object" => {
                if let Some(o) = &current {
                    return Err(format!("object {} has no `end`", o.name));
                }
                current = Some(VerdictObject {
                    name: field(&fields, 1, n)?.to_string(),
                    ..Default::default()
                });
            }
            "end" => {
                let o = current
                    .take()
                    .ok_or_else(|| format!("line {n}: `end` outside an object"))?;
                report.objects.push(o);
            }
            kind => {
                let o = current
                    .as_mut()
                    .ok_or_else(|| format!("line {n}: `{kind}` outside an object"))?;
                match kind {
                    "open-failed" => o.open_failed = Some((int(&fields, 1, n)?, warn_at(2))),
                    "resize" => o.resized.push((
                        field(&fields, 1, n)?.to_string(),
                        field(&fields, 2, n)?.to_string(),
                    )),
                    "verdict" => o.programs.push(ProgVerdict {
                        name: field(&fields, 1, n)?.to_string(),
                        rc: int(&fields, 2, n)?,
                        warn: warn_at(3),
                    }),
                    "attach" => o.attaches.push(AttachVerdict {
                        prog: field(&fields, 1, n)?.to_string(),
                        target: field(&fields, 2, n)?.to_string(),
                        load_rc: int(&fields, 3, n)?,
                        rc: int(&fields, 4, n)?,
                        warn: warn_at(5),
                    }),
                    other => return Err(format!("line {n}: unknown record `{other}`")),
                }
            }
        }
    }
    if let Some(o) = current {
        return Err(format!(
            "object {} has no `end` (the process died while loading it?)",
            o.name
        ));
    }
    Ok(report)
}

/// `-EPERM` style name of a verdict, for messages.
pub fn rc_name(rc: i32) -> String {
    if rc == 0 {
        return "ok".into();
    }
    let name = match -rc {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENODATA => "ENODATA",
        libc::EPROTO => "EPROTO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        524 => "ENOTSUPP",
        4000..=4099 => "LIBBPF_ERRNO",
        _ => "",
    };
    if name.is_empty() {
        format!("{rc}")
    } else {
        format!("-{name} ({rc})")
    }
}

/// The comparison of two reports.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    pub objects: usize,
    pub programs: usize,
    /// Programs both sides loaded.
    pub loaded: usize,
    /// Programs both sides saw refused with the same errno.
    pub refused: usize,
    /// One line per program whose verdicts differ.
    pub mismatches: Vec<String>,
    /// Same verdict, different first warning (informational).
    pub warning_diffs: Vec<String>,
    /// Refusals by errno: (rc, count), sorted.
    pub refusals_by_errno: Vec<(i32, usize)>,
}

impl Comparison {
    pub fn summary(&self) -> String {
        format!(
            "kernel verdicts: {} objects, {} programs, {} loaded, {} refused by the kernel, {} mismatches",
            self.objects,
            self.programs,
            self.loaded,
            self.refused,
            self.mismatches.len()
        )
    }
}

/// Compares `ours` with `theirs` (the real libbpf) object by object and
/// program by program.
pub fn compare(theirs: &VerdictReport, ours: &VerdictReport) -> Comparison {
    let mut c = Comparison::default();
    let mut by_errno: std::collections::BTreeMap<i32, usize> = Default::default();
    for t in &theirs.objects {
        c.objects += 1;
        let Some(o) = ours.objects.iter().find(|o| o.name == t.name) else {
            c.mismatches
                .push(format!("{}: missing from our report", t.name));
            continue;
        };
        if t.open_failed.as_ref().map(|x| x.0) != o.open_failed.as_ref().map(|x| x.0) {
            c.mismatches.push(format!(
                "{}: open: libbpf {:?}, ours {:?}",
                t.name, t.open_failed, o.open_failed
            ));
        }
        if t.resized != o.resized {
            c.mismatches.push(format!(
                "{}: map sizes applied differ: libbpf {:?}, ours {:?}",
                t.name, t.resized, o.resized
            ));
        }
        for tp in &t.programs {
            c.programs += 1;
            let Some(op) = o.programs.iter().find(|p| p.name == tp.name) else {
                c.mismatches.push(format!(
                    "{}/{}: libbpf {}, ours: no such program",
                    t.name,
                    tp.name,
                    rc_name(tp.rc)
                ));
                continue;
            };
            if op.rc != tp.rc {
                c.mismatches.push(format!(
                    "{}/{}: libbpf {} [{}], ours {} [{}]",
                    t.name,
                    tp.name,
                    rc_name(tp.rc),
                    tp.warn,
                    rc_name(op.rc),
                    op.warn
                ));
                continue;
            }
            if tp.rc == 0 {
                c.loaded += 1;
            } else {
                c.refused += 1;
                *by_errno.entry(tp.rc).or_default() += 1;
            }
            if op.warn != tp.warn {
                c.warning_diffs.push(format!(
                    "{}/{} ({}): libbpf `{}`, ours `{}`",
                    t.name,
                    tp.name,
                    rc_name(tp.rc),
                    tp.warn,
                    op.warn
                ));
            }
        }
        for op in &o.programs {
            if !t.programs.iter().any(|p| p.name == op.name) {
                c.mismatches.push(format!(
                    "{}/{}: ours {}, libbpf: no such program",
                    t.name,
                    op.name,
                    rc_name(op.rc)
                ));
            }
        }
    }
    for o in &ours.objects {
        if !theirs.objects.iter().any(|t| t.name == o.name) {
            c.mismatches
                .push(format!("{}: missing from libbpf's report", o.name));
        }
    }
    c.refusals_by_errno = by_errno.into_iter().collect();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_compare() {
        let obj = VerdictObject {
            name: "runqlat".into(),
            open_failed: None,
            resized: vec![("hists".into(), "max_entries 0 -> 1".into())],
            programs: vec![
                ProgVerdict {
                    name: "a".into(),
                    rc: 0,
                    warn: String::new(),
                },
                ProgVerdict {
                    name: "b".into(),
                    rc: -1,
                    warn: "libbpf: prog 'b': BPF program load failed: Operation not permitted"
                        .into(),
                },
            ],
            attaches: vec![AttachVerdict {
                prog: "k".into(),
                target: "do_nanosleep".into(),
                load_rc: 0,
                rc: -2,
                warn: "x\ty".into(),
            }],
        };
        let mut text = String::new();
        write_header(&mut text, "v1.7.0");
        write_object(&mut text, &obj);
        let report = parse(&text).unwrap();
        assert_eq!(report.libbpf_version, "v1.7.0");
        assert_eq!(report.objects[0].programs, obj.programs);
        assert_eq!(report.objects[0].attaches[0].warn, "x y");

        let mut ours = report.clone();
        let c = compare(&report, &ours);
        assert_eq!(c.summary(), "kernel verdicts: 1 objects, 2 programs, 1 loaded, 1 refused by the kernel, 0 mismatches");
        ours.objects[0].programs[1].rc = 0;
        let c = compare(&report, &ours);
        assert_eq!(c.mismatches.len(), 1);
        assert!(
            c.mismatches[0].contains("runqlat/b: libbpf -EPERM (-1)"),
            "{:?}",
            c.mismatches
        );
    }

    #[test]
    fn unfinished_object_is_an_error() {
        let text = format!("{MAGIC}\nlibbpf\tx\nobject\tdead\nverdict\tp\t0\t\n");
        assert!(parse(&text).unwrap_err().contains("dead"));
    }
}
