//! What a database directory holds, sorted by kind, and which of its files
//! open may remove.
//!
//! Open removes a file only when the other files prove it holds nothing the
//! database needs:
//!
//! - `*.tmp` files: written under a temporary name and never named by a
//!   manifest (segments and manifests are renamed into place only when
//!   complete and synced).
//! - a segment the manifest does not name, whose writes all lie at or below
//!   the last sequence number the manifest and the WALs account for: the
//!   output of a flush whose WAL is still here, the output of a compaction
//!   whose inputs are still live, or an input a compaction replaced.
//! - a WAL the manifest calls obsolete whose writes are all flushed (checked
//!   by [`super::replay`]).
//!
//! Anything else that does not fit is refused with [`Error::Corruption`]:
//! a missing manifest beside segments or WALs is not a new database, and a
//! segment holding writes nothing else accounts for means the manifest is
//! not the one that belongs with the files.

use std::path::Path;

use crate::error::IoContext;
use crate::format::manifest::MANIFEST_FILE;
use crate::format::sstable::SstableReader;
use crate::format::{FileKind, parse_file_name, segment_file_name};
use crate::fs::FileSystem;
use crate::proto::storage::Manifest;
use crate::{Error, Result};

/// The command that rebuilds a manifest; named in every refusal.
pub const REPAIR_HINT: &str = "run `naivekv-check --repair DIR` to rebuild it from the files \
     that are readable (it moves nothing it cannot read anywhere but DIR/lost/)";

/// The engine's files in a directory, by kind.
#[derive(Debug, Default)]
pub struct DirectoryFiles {
    /// WAL numbers, ascending.
    pub wals: Vec<u64>,
    /// Segment numbers, ascending.
    pub segments: Vec<u64>,
    /// Names of `*.tmp` files.
    pub temporaries: Vec<String>,
    /// The highest WAL or segment number seen (0 if none).
    pub highest_number: u64,
}

impl DirectoryFiles {
    /// Lists `directory`.
    pub fn list(fs: &dyn FileSystem, directory: &Path) -> Result<DirectoryFiles> {
        let names = fs
            .list_dir(directory)
            .context(|| format!("listing {}", directory.display()))?;
        let mut files = DirectoryFiles::default();
        for name in names {
            match parse_file_name(&name) {
                Some(FileKind::Wal(number)) => files.wals.push(number),
                Some(FileKind::Segment(number)) => files.segments.push(number),
                Some(FileKind::Temporary) => files.temporaries.push(name),
                _ => {}
            }
        }
        files.wals.sort_unstable();
        files.segments.sort_unstable();
        let last = |numbers: &[u64]| numbers.last().copied().unwrap_or(0);
        files.highest_number = last(&files.wals).max(last(&files.segments));
        Ok(files)
    }

    /// With no manifest: `Ok` only if there is no segment and no WAL either,
    /// so that a lost manifest never opens as an empty database.
    pub fn refuse_if_not_new(&self, directory: &Path) -> Result<()> {
        if self.wals.is_empty() && self.segments.is_empty() {
            return Ok(());
        }
        Err(Error::corruption(
            directory.join(MANIFEST_FILE),
            0,
            format!(
                "missing, but the directory holds {} segment(s) and {} WAL(s): refusing to \
                 open it as a new database; {REPAIR_HINT}",
                self.segments.len(),
                self.wals.len()
            ),
        ))
    }

    /// The names of segments the manifest does not name, all of whose writes
    /// are at or below `last_seq` (removable); `Corruption` for one that
    /// cannot be read or holds a later write.
    pub fn unnamed_segments(
        &self,
        fs: &dyn FileSystem,
        directory: &Path,
        manifest: &Manifest,
        last_seq: u64,
    ) -> Result<Vec<String>> {
        let named = |number: &u64| manifest.segments.iter().any(|s| s.file_number == *number);
        let mut removable = Vec::new();
        for number in self.segments.iter().filter(|n| !named(n)) {
            let path = directory.join(segment_file_name(*number));
            let max_seq = read_max_seq(fs, &path).map_err(|error| {
                Error::corruption(
                    &path,
                    0,
                    format!("not named by the MANIFEST and unreadable ({error}); {REPAIR_HINT}"),
                )
            })?;
            if max_seq > last_seq {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!(
                        "not named by the MANIFEST, and holds writes up to sequence {max_seq} \
                         that neither the MANIFEST's segments nor the WALs hold (they end at \
                         {last_seq}): the MANIFEST is older than the files; {REPAIR_HINT}"
                    ),
                ));
            }
            removable.push(segment_file_name(*number));
        }
        Ok(removable)
    }
}

/// The highest sequence number in a segment file, from its footer.
fn read_max_seq(fs: &dyn FileSystem, path: &Path) -> Result<u64> {
    let file = fs
        .open(path)
        .context(|| format!("opening {}", path.display()))?;
    Ok(SstableReader::open(file, path.to_path_buf())?.max_seq())
}
