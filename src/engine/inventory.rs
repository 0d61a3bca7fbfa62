//! What a database directory holds, sorted by kind, and which of its files
//! open may remove.
//!
//! Open removes a file only when the other files prove it holds nothing the
//! database needs:
//!
//! - `*.tmp` files: written under a temporary name and never named by a
//!   manifest (segments and manifests are renamed into place only when
//!   complete and synced).
//! - a segment the manifest does not name, whose footer says this database
//!   wrote it under that number, and whose writes all lie at or below the
//!   last sequence number the manifest and the WALs account for: the output
//!   of a flush whose WAL is still here, the output of a compaction whose
//!   inputs are still live, or an input a compaction replaced.
//! - a WAL the manifest calls obsolete whose writes are all flushed (checked
//!   by [`super::replay`]).
//!
//! Anything else that does not fit is refused with [`Error::Corruption`]:
//! a missing manifest beside segments or WALs is not a new database, and a
//! segment holding writes nothing else accounts for means the manifest is
//! not the one that belongs with the files; an unnamed segment another
//! database wrote, or one renamed, was put there by hand and is not ours to
//! delete; a WAL or segment numbered above [`MAX_FILE_NUMBER`] would make
//! numbering wrap around to live files' numbers.
//!
//! The manifest itself must also make sense before anything is opened from
//! it ([`manifest_problems`]): each segment named once, at a level that
//! exists, with its smallest key not after its largest; the segments of
//! each deeper level not overlapping; file and sequence numbers below the
//! bounds the engine counts up to; range deletes no later than the flushed
//! sequence number (a flush installs them). A checksum only says the file
//! is the one that was written; these say that what was written is a
//! segment set the engine could have made.

use std::path::Path;

use super::segment::MAX_FILE_NUMBER;
use super::version::MAX_LEVELS;
use crate::error::IoContext;
use crate::format::manifest::MANIFEST_FILE;
use crate::format::sstable::SstableReader;
use crate::format::{FileKind, parse_file_name, segment_file_name, wal_file_name};
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
        if files.highest_number > MAX_FILE_NUMBER {
            return Err(beyond_file_numbers(directory, &files));
        }
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
            let table = open_table(fs, &path).map_err(|error| {
                Error::corruption(
                    &path,
                    0,
                    format!("not named by the MANIFEST and unreadable ({error}); {REPAIR_HINT}"),
                )
            })?;
            if let Some(detail) = foreign(&table, *number, manifest.database_id) {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!(
                        "not named by the MANIFEST, and not left by this database: {detail}; \
                         move it out of the directory"
                    ),
                ));
            }
            let max_seq = table.max_seq();
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

/// The highest sequence number open accepts anywhere: 2^56, more writes
/// than a database makes in centuries. A direct writer keeps sequence
/// numbers in the low 63 bits of one atomic word (`memtable/direct.rs`), so
/// a larger one from a file must be refused, not counted up from.
pub const MAX_SEQUENCE: u64 = 1 << 56;

/// One thing wrong with a manifest's contents: the file it concerns (the
/// manifest, or a segment it names) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    pub file: String,
    pub detail: String,
}

/// What is wrong with `manifest`'s contents, in the order found; empty when
/// it describes a segment set the engine could have written (module doc).
pub fn manifest_problems(manifest: &Manifest) -> Vec<ManifestProblem> {
    let mut problems = Vec::new();
    let mut problem =
        |file: String, detail: String| problems.push(ManifestProblem { file, detail });
    // At the bound, the WAL open creates would take the last number and
    // the manifest naming it would be refused at the next open.
    if manifest.next_file_number >= MAX_FILE_NUMBER {
        problem(
            MANIFEST_FILE.to_string(),
            format!(
                "its next file number {} is at or above {MAX_FILE_NUMBER}, more files than a \
                 database ever writes",
                manifest.next_file_number
            ),
        );
    }
    for (what, seq) in [
        ("flushed sequence number", manifest.flushed_seq),
        ("clean-close sequence number", manifest.closed_at_seq),
    ] {
        if seq > MAX_SEQUENCE {
            problem(
                MANIFEST_FILE.to_string(),
                format!(
                    "its {what} {seq} is above {MAX_SEQUENCE}, more writes than a database makes"
                ),
            );
        }
    }
    for tombstone in &manifest.range_tombstones {
        // Installed by a flush: at or below the flushed sequence number.
        if tombstone.seq > manifest.flushed_seq {
            problem(
                MANIFEST_FILE.to_string(),
                format!(
                    "it holds a range delete at sequence {}, after its flushed sequence {}",
                    tombstone.seq, manifest.flushed_seq
                ),
            );
        }
    }
    let mut numbers: Vec<u64> = manifest.segments.iter().map(|s| s.file_number).collect();
    numbers.sort_unstable();
    for pair in numbers.windows(2) {
        if let [a, b] = pair
            && a == b
        {
            problem(
                segment_file_name(*a),
                "named twice by the MANIFEST".to_string(),
            );
        }
    }
    for meta in &manifest.segments {
        let name = segment_file_name(meta.file_number);
        if meta.level as usize >= MAX_LEVELS {
            problem(
                name.clone(),
                format!(
                    "the MANIFEST puts it in level {}, but levels end at {}",
                    meta.level,
                    MAX_LEVELS - 1
                ),
            );
        }
        if meta.smallest_key > meta.largest_key {
            problem(
                name.clone(),
                "the MANIFEST gives it a smallest key after its largest".to_string(),
            );
        }
        if meta.max_seq > MAX_SEQUENCE {
            problem(
                name,
                format!(
                    "the MANIFEST says it holds sequence number {}, above {MAX_SEQUENCE}",
                    meta.max_seq
                ),
            );
        }
    }
    for (level, a, b) in overlaps_in_deeper_levels(manifest) {
        problem(
            segment_file_name(b),
            format!("overlaps segment {a} in level {level}, where segments must not overlap"),
        );
    }
    problems
}

/// Pairs of segments of one deeper level whose key spans overlap, as
/// (level, file number, file number). Levels that do not exist are left to
/// [`manifest_problems`]'s own check.
fn overlaps_in_deeper_levels(manifest: &Manifest) -> Vec<(usize, u64, u64)> {
    let mut levels: Vec<Vec<&crate::proto::storage::SegmentMeta>> = vec![Vec::new(); MAX_LEVELS];
    for meta in &manifest.segments {
        if let Some(level) = levels.get_mut(meta.level as usize) {
            level.push(meta);
        }
    }
    let mut overlaps = Vec::new();
    for (number, mut run) in levels.into_iter().enumerate().skip(1) {
        run.sort_by(|a, b| a.smallest_key.cmp(&b.smallest_key));
        for pair in run.windows(2) {
            if let [a, b] = pair
                && b.smallest_key <= a.largest_key
            {
                overlaps.push((number, a.file_number, b.file_number));
            }
        }
    }
    overlaps
}

/// The refusal of a directory holding a WAL or segment numbered above
/// [`MAX_FILE_NUMBER`]: numbering past it would wrap and reuse the number
/// of a live file.
fn beyond_file_numbers(directory: &Path, files: &DirectoryFiles) -> Error {
    let number = files.highest_number;
    let name = if files.wals.last() == Some(&number) {
        wal_file_name(number)
    } else {
        segment_file_name(number)
    };
    Error::corruption(
        directory.join(name),
        0,
        format!(
            "its number is above {MAX_FILE_NUMBER}, more files than a database ever writes: it \
             is not one of this database's files, and numbering after it would reuse the \
             numbers of live ones; move it out of the directory"
        ),
    )
}

/// Opens a segment file (footer, filter and index read and checked).
fn open_table(fs: &dyn FileSystem, path: &Path) -> Result<SstableReader> {
    let file = fs
        .open(path)
        .context(|| format!("opening {}", path.display()))?;
    SstableReader::open(file, path.to_path_buf())
}

/// Why a segment named `number` that the manifest does not name cannot be
/// a leftover of database `database_id` (0: not recorded), if its footer
/// says so: a leftover was written under its own number by this database.
/// (A version-1 table records neither.)
pub(super) fn foreign(table: &SstableReader, number: u64, database_id: u64) -> Option<String> {
    let identity = table.identity()?;
    let known = database_id != 0 && identity.database_id != 0;
    if known && identity.database_id != database_id {
        return Some(format!(
            "it belongs to database {:016x}, this one is {database_id:016x}",
            identity.database_id
        ));
    }
    (identity.file_number != number).then(|| {
        format!(
            "it was written as segment {}, not {number}",
            identity.file_number
        )
    })
}
