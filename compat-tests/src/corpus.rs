//! The corpus of real BPF objects the compat tests relocate.
//!
//! - The objects embedded in Debian's libbpf-tools binaries (package
//!   `libbpf-tools`, `/usr/sbin/*`), extracted at run time with our
//!   loader's `object::embedded` (ELF64 images with `e_machine == EM_BPF`)
//!   and named after the binary (`opensnoop`). Symlinks (`ext4dist -> fsdist`) are skipped
//!   and identical objects are kept once (the others are listed as
//!   aliases).
//! - The objects of our own C tests (`compat-tests/bpf/*.bpf.c`), built by
//!   `build.rs` with clang-16, named after the source (`core_reads`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use userbpf_libbpf_compat::object::embedded::find_bpf_objects;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/c_objects.rs"));
}

pub use generated::{C_OBJECTS, C_OBJECTS_CLANG, C_OBJECTS_ERROR};

/// Where the libbpf-tools binaries are.
pub const SBIN: &str = "/usr/sbin";

/// Where an object came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Embedded in `binary` at byte `offset`.
    Embedded { binary: PathBuf, offset: usize },
    /// Built from `compat-tests/bpf/<source>`.
    CSource { source: String },
}

/// One BPF object of the corpus.
#[derive(Clone, Debug)]
pub struct CorpusObject {
    /// Unique in the corpus; also the object name given to the loaders.
    pub name: String,
    pub origin: Origin,
    pub bytes: Vec<u8>,
    /// Other binaries that embed the very same bytes.
    pub aliases: Vec<String>,
}

/// The objects, and what was left out and why.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    pub objects: Vec<CorpusObject>,
    /// Human-readable notes: skipped files, missing C objects, duplicates.
    pub notes: Vec<String>,
}

impl Corpus {
    /// The embedded objects of `/usr/sbin` plus the C test objects.
    pub fn standard() -> Corpus {
        let mut corpus = Corpus::default();
        corpus.add_embedded(Path::new(SBIN));
        corpus.add_c_objects();
        corpus
    }

    /// How many objects came from binaries.
    pub fn embedded_count(&self) -> usize {
        self.objects
            .iter()
            .filter(|o| matches!(o.origin, Origin::Embedded { .. }))
            .count()
    }

    /// Adds the BPF objects embedded in the regular files of `dir` (not
    /// recursive, symlinks skipped), sorted by file name. A binary with one
    /// object gives it its name; with several, `<name>.<i>`.
    pub fn add_embedded(&mut self, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.notes
                    .push(format!("cannot read {}: {e}", dir.display()));
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        files.sort();
        for path in files {
            let Ok(bytes) = fs::read(&path) else {
                continue;
            };
            let found = find_bpf_objects(&bytes);
            let base = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let many = found.len() > 1;
            for (i, found) in found.into_iter().enumerate() {
                let name = if many {
                    format!("{base}.{i}")
                } else {
                    base.clone()
                };
                let object = CorpusObject {
                    name,
                    origin: Origin::Embedded {
                        binary: path.clone(),
                        offset: found.offset,
                    },
                    bytes: found.bytes.to_vec(),
                    aliases: Vec::new(),
                };
                self.push_dedup(object);
            }
        }
    }

    /// Adds the C test objects built by `build.rs`.
    pub fn add_c_objects(&mut self) {
        if let Some(reason) = C_OBJECTS_ERROR {
            self.notes.push(format!("C test objects missing: {reason}"));
        }
        for (name, source, bytes) in C_OBJECTS {
            self.push_dedup(CorpusObject {
                name: name.to_string(),
                origin: Origin::CSource {
                    source: source.to_string(),
                },
                bytes: bytes.to_vec(),
                aliases: Vec::new(),
            });
        }
    }

    /// Adds `object` unless an object with the same bytes is there already
    /// (then its name becomes an alias). Names are made unique.
    pub fn push_dedup(&mut self, mut object: CorpusObject) {
        if let Some(same) = self.objects.iter_mut().find(|o| o.bytes == object.bytes) {
            self.notes.push(format!(
                "{} is identical to {}, kept once",
                object.name, same.name
            ));
            same.aliases.push(object.name);
            return;
        }
        let taken: HashMap<&str, ()> = self.objects.iter().map(|o| (o.name.as_str(), ())).collect();
        if taken.contains_key(object.name.as_str()) {
            let mut n = 2;
            while taken.contains_key(format!("{}~{n}", object.name).as_str()) {
                n += 1;
            }
            object.name = format!("{}~{n}", object.name);
        }
        self.objects.push(object);
    }

    /// Writes every object to `dir/<name>.bpf.o` and returns the paths, in
    /// corpus order.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        fs::create_dir_all(dir)?;
        self.objects
            .iter()
            .map(|o| {
                let path = dir.join(format!("{}.bpf.o", o.name));
                fs::write(&path, &o.bytes)?;
                Ok(path)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_objects_are_whole_bpf_objects() {
        for (name, _, bytes) in C_OBJECTS {
            let found = find_bpf_objects(bytes);
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].bytes.len(), bytes.len(), "{name}");
        }
    }

    #[test]
    fn dedup_keeps_first_name() {
        let mut corpus = Corpus::default();
        let object = |name: &str, bytes: &[u8]| CorpusObject {
            name: name.into(),
            origin: Origin::CSource {
                source: format!("{name}.bpf.c"),
            },
            bytes: bytes.to_vec(),
            aliases: Vec::new(),
        };
        corpus.push_dedup(object("a", b"1"));
        corpus.push_dedup(object("b", b"1"));
        corpus.push_dedup(object("a", b"2"));
        let names: Vec<&str> = corpus.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "a~2"]);
        assert_eq!(corpus.objects[0].aliases, ["b"]);
    }
}
