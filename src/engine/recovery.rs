//! Opening a database: lock the directory, read the manifest, open the
//! segments it names (each checked against what the manifest says of it),
//! replay the WALs (checked against the manifest's sequence numbers, see
//! [`super::replay`]), and only when every file agrees remove what an
//! interrupted flush or compaction left (see [`super::inventory`]); then
//! flush what was replayed, start a fresh WAL and write a manifest naming it.
//!
//! Open never deletes what it cannot prove is garbage: a missing manifest
//! beside data, a segment that does not match its manifest record, a hole in
//! the WAL sequence or a segment newer than the manifest is refused with
//! [`Error::Corruption`] naming the file, and the files are left as they are
//! for `naivekv-check` to examine or repair.
//!
//! A torn last WAL record is dropped with a warning (by the WAL reader); a
//! bad record followed by good data fails the open with the file and offset.

use std::path::Path;
use std::sync::Arc;

use super::inventory::{DirectoryFiles, REPAIR_HINT, manifest_problems};
use super::memtable::{FrozenMemtable, MemTable};
use super::range_delete::{self, RangeTombstone};
use super::replay::replay_wals;
use super::segment::{FileNumbers, Segment, new_database_id};
use super::segments::write_segments;
use super::version::SegmentSet;
use super::wal_identity::create_wal;
use crate::error::IoContext;
use crate::format::manifest::{MANIFEST_FILE, read_manifest, write_manifest};
use crate::format::sstable::TableOptions;
use crate::format::wal::WalWriter;
use crate::format::wal_file_name;
use crate::fs::{DirectoryLock, FileSystem};
use crate::proto::storage::Manifest;
use crate::{Error, Options, Result};

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// The state an open database starts from.
pub struct Recovered {
    pub segments: SegmentSet,
    pub flushed_seq: u64,
    pub last_seq: u64,
    pub file_numbers: Arc<FileNumbers>,
    pub wal: WalWriter,
    pub wal_number: u64,
    pub lock: Box<dyn DirectoryLock>,
}

/// Opens (creating if needed) the database in `options.directory`.
///
/// # Errors
///
/// [`Error::Corruption`] naming the file when the directory's files disagree
/// with each other (see the module doc); nothing has been deleted then.
pub fn recover(options: &Options) -> Result<Recovered> {
    let fs = options.fs.as_ref();
    let directory = options.directory.as_path();
    create_directory(fs, directory)?;
    let lock = take_lock(fs, directory)?;
    let files = DirectoryFiles::list(fs, directory)?;
    let manifest = match read_manifest(fs, directory)? {
        Some(manifest) => manifest,
        None => {
            files.refuse_if_not_new(directory)?;
            create_manifest(fs, directory)?
        }
    };
    if let Some(problem) = manifest_problems(&manifest).into_iter().next() {
        return Err(Error::corruption(
            directory.join(&problem.file),
            0,
            format!("{}; {REPAIR_HINT}", problem.detail),
        ));
    }
    let segments = manifest
        .segments
        .iter()
        .map(|meta| Segment::open(fs, directory, meta.clone(), manifest.database_id).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let replayed = replay_wals(fs, directory, &files.wals, &manifest).map_err(with_repair_hint)?;
    let max_segment_seq = segments.iter().map(|s| s.meta.max_seq).max().unwrap_or(0);
    let last_seq = manifest
        .flushed_seq
        .max(replayed.last_seq)
        .max(max_segment_seq);
    if manifest.closed_at_seq > last_seq {
        let newest_wal = files.wals.last().map(|n| wal_file_name(*n));
        return Err(Error::corruption(
            directory.join(newest_wal.as_deref().unwrap_or(MANIFEST_FILE)),
            0,
            format!(
                "the database was closed cleanly with writes up to sequence {}, but the \
                 segments and WALs hold writes only up to {last_seq}: a WAL was truncated, \
                 damaged or replaced after the close, and opening would lose {} acknowledged \
                 write(s); {REPAIR_HINT} (which keeps what is readable)",
                manifest.closed_at_seq,
                manifest.closed_at_seq - last_seq
            ),
        ));
    }
    let unnamed = files.unnamed_segments(fs, directory, &manifest, last_seq)?;
    // Every piece of evidence agrees: only now is anything removed.
    remove_all(
        fs,
        directory,
        &files.temporaries,
        "left by an interrupted write",
    );
    remove_all(
        fs,
        directory,
        &unnamed,
        "left by an interrupted flush or compaction",
    );
    let obsolete: Vec<String> = replayed
        .obsolete
        .iter()
        .map(|n| wal_file_name(*n))
        .collect();
    remove_all(
        fs,
        directory,
        &obsolete,
        "a WAL flushed before the last shutdown",
    );
    let database_id = match manifest.database_id {
        0 => segments_database_id(directory, &segments)?.unwrap_or_else(new_database_id),
        id => id,
    };
    let wal_lineage = match manifest.wal_lineage {
        0 => new_database_id(),
        lineage => lineage,
    };
    let file_numbers = Arc::new(
        FileNumbers::starting_at(
            database_id,
            manifest
                .next_file_number
                .max(files.highest_number + 1)
                .max(1),
        )
        .with_wal_lineage(wal_lineage),
    );
    let mut segments = SegmentSet::from_segments(segments);
    segments.range_tombstones = Arc::new(range_delete::from_manifest(&manifest));
    let segments = flush_recovered(
        options,
        &file_numbers,
        replayed.memtable,
        replayed.range_tombstones,
        segments,
        last_seq,
    )?;
    let wal_number = file_numbers.allocate();
    // Everything replayed is in a segment by now: the new WAL follows it.
    let wal = create_wal(
        fs,
        directory,
        wal_number,
        file_numbers.wal_identity(),
        last_seq,
    )?;
    let manifest = Manifest {
        next_file_number: file_numbers.peek(),
        flushed_seq: last_seq,
        segments: segments.metas(),
        oldest_live_wal: wal_number,
        oldest_live_wal_exists: true,
        wal_lineage,
        database_id,
        range_tombstones: range_delete::to_manifest(&segments.range_tombstones),
        closed_at_seq: 0,
    };
    write_manifest(fs, directory, &manifest)?;
    let replayed_names: Vec<String> = replayed.live.iter().map(|n| wal_file_name(*n)).collect();
    remove_all(
        fs,
        directory,
        &replayed_names,
        "a replayed WAL, now flushed",
    );
    Ok(Recovered {
        segments,
        flushed_seq: last_seq,
        last_seq,
        file_numbers,
        wal,
        wal_number,
        lock,
    })
}

/// The database the named segments' footers say wrote them, for a manifest
/// that records none (from before ids, or damaged): a fresh id would make
/// the next open refuse every one of them. `None` when no footer says.
fn segments_database_id(directory: &Path, segments: &[Arc<Segment>]) -> Result<Option<u64>> {
    let mut ids = segments
        .iter()
        .filter_map(|s| s.reader.identity().map(|identity| identity.database_id))
        .filter(|id| *id != 0);
    let Some(first) = ids.next() else {
        return Ok(None);
    };
    match ids.find(|id| *id != first) {
        None => Ok(Some(first)),
        Some(other) => Err(Error::corruption(
            directory.join(MANIFEST_FILE),
            0,
            format!(
                "records no database id and names segments of two databases ({first:016x} \
                 and {other:016x}); {REPAIR_HINT}"
            ),
        )),
    }
}

/// A refusal of the WALs, pointing to the repair every refusal names.
fn with_repair_hint(error: Error) -> Error {
    match error {
        Error::Corruption {
            path,
            offset,
            detail,
        } => Error::Corruption {
            path,
            offset,
            detail: format!("{detail}; {REPAIR_HINT}"),
        },
        other => other,
    }
}

/// A new database's first manifest, written before any other file so that
/// a crash never leaves a WAL with no manifest beside it. It names no WAL
/// (`oldest_live_wal` 0): the one open creates next is named by the
/// manifest written after it.
fn create_manifest(fs: &dyn FileSystem, directory: &Path) -> Result<Manifest> {
    let manifest = Manifest {
        next_file_number: 1,
        database_id: new_database_id(),
        ..Manifest::default()
    };
    write_manifest(fs, directory, &manifest)?;
    Ok(manifest)
}

/// Creates the database directory (and missing parents) durably.
fn create_directory(fs: &dyn FileSystem, directory: &Path) -> Result<()> {
    let missing: Vec<&Path> = directory
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && fs.list_dir(dir).is_err())
        .collect();
    fs.create_dir_all(directory).context(|| {
        // The usual cause of EEXIST here: a file (not a directory) by
        // that name, or a file in place of a parent.
        let file_in_the_way = directory
            .ancestors()
            .find(|dir| std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()));
        match file_in_the_way {
            Some(file) => format!(
                "creating directory {}: {} exists and is not a directory",
                directory.display(),
                file.display()
            ),
            None => format!("creating directory {}", directory.display()),
        }
    })?;
    // IMPORTANT: a new directory's name lives in its parent; until the parent
    // is synced a crash can take the directory, and every acknowledged write
    // in it, away.
    for dir in missing.iter().rev() {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = parent.unwrap_or(Path::new("."));
        fs.sync_dir(parent)
            .context(|| format!("syncing directory {}", parent.display()))?;
    }
    Ok(())
}

/// Takes the directory's lock: [`Error::Locked`] if another holder has it.
pub(super) fn take_lock(fs: &dyn FileSystem, directory: &Path) -> Result<Box<dyn DirectoryLock>> {
    let path = directory.join(LOCK_FILE);
    fs.lock(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            path: directory.to_path_buf(),
        },
        _ => Error::io(format!("locking {}", path.display()), e),
    })
}

/// Writes the replayed memtable (if any) as a level-0 segment; the caller
/// names it in the next manifest.
fn flush_recovered(
    options: &Options,
    numbers: &FileNumbers,
    memtable: MemTable,
    range_tombstones: Vec<RangeTombstone>,
    segments: SegmentSet,
    flushed_seq: u64,
) -> Result<SegmentSet> {
    if memtable.is_empty() && range_tombstones.is_empty() {
        return Ok(segments);
    }
    let fs = options.fs.as_ref();
    let frozen = FrozenMemtable {
        table: memtable,
        wal_number: 0,
        max_seq: flushed_seq,
        range_tombstones,
    };
    let table_options = TableOptions::from(options);
    let mut added = Vec::new();
    for meta in write_segments(options, numbers, table_options, &frozen, None)? {
        let segment = Segment::open(fs, &options.directory, meta, numbers.database_id())?;
        added.push(Arc::new(segment));
    }
    let numbers: Vec<u64> = added.iter().map(|s| s.meta.file_number).collect();
    let mut set = segments.edited(&[], added);
    set.range_tombstones = range_delete::install_flushed(&set, &numbers, &frozen.range_tombstones);
    Ok(set)
}

/// Removes `names` from `directory`, saying why at INFO; a failure is a
/// warning (the file is removed on a later open).
fn remove_all(fs: &dyn FileSystem, directory: &Path, names: &[String], why: &str) {
    for name in names {
        log::info!("removing {name}: {why}");
        if let Err(error) = fs.remove_file(&directory.join(name)) {
            log::warn!("could not remove {name}: {error}");
        }
    }
}
