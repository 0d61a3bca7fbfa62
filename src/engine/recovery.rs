//! Opening a database: lock the directory, read the manifest, remove files an
//! interrupted flush or compaction left behind, open the live segments,
//! replay the WALs into a memtable and flush it, then start a fresh WAL.
//!
//! WAL records whose sequence numbers are at or below the manifest's
//! `flushed_seq` are already in segments and are skipped. A torn last record
//! is dropped with a warning (by the WAL reader); a bad record followed by
//! good data fails the open with the file and offset.

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;

use super::memtable::{FrozenMemtable, MemTable};
use super::segment::{FileNumbers, Segment};
use super::segments::write_segments;
use super::version::SegmentSet;
use crate::error::IoContext;
use crate::format::manifest::{read_manifest, write_manifest};
use crate::format::sstable::TableOptions;
use crate::format::wal::{WalWriter, read_wal};
use crate::format::{FileKind, parse_file_name, wal_file_name};
use crate::fs::{DirectoryLock, FileSystem};
use crate::proto::storage::{Manifest, WalBatch};
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
pub fn recover(options: &Options) -> Result<Recovered> {
    let fs = options.fs.as_ref();
    let directory = options.directory.as_path();
    create_directory(fs, directory)?;
    let lock = take_lock(fs, directory)?;
    let manifest = read_manifest(fs, directory)?.unwrap_or_default();
    let names = fs
        .list_dir(directory)
        .context(|| format!("listing {}", directory.display()))?;
    let (wals, highest_number) = remove_leftovers(fs, directory, &names, &manifest);
    let file_numbers = Arc::new(FileNumbers::starting_at(
        manifest.next_file_number.max(highest_number + 1).max(1),
    ));
    let segments = manifest
        .segments
        .iter()
        .map(|meta| Segment::open(fs, directory, meta.clone()).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let mut segments = SegmentSet::from_segments(segments);
    let mut flushed_seq = manifest.flushed_seq;
    let max_segment_seq = segments.all().map(|s| s.meta.max_seq).max().unwrap_or(0);
    let (memtable, replayed_seq) = replay_wals(fs, directory, &wals, flushed_seq)?;
    let last_seq = flushed_seq.max(replayed_seq).max(max_segment_seq);
    if !memtable.is_empty() || !wals.is_empty() || manifest.segments.is_empty() {
        flushed_seq = last_seq;
        segments = flush_recovered(options, &file_numbers, memtable, segments, flushed_seq)?;
        for number in &wals {
            let path = directory.join(wal_file_name(*number));
            fs.remove_file(&path)
                .context(|| format!("removing replayed WAL {}", path.display()))?;
        }
    }
    let wal_number = file_numbers.allocate();
    let wal_path = directory.join(wal_file_name(wal_number));
    let file = fs
        .create(&wal_path)
        .context(|| format!("creating WAL {}", wal_path.display()))?;
    // IMPORTANT: the new WAL's directory entry must be durable before any
    // write in it is acknowledged.
    fs.sync_dir(directory)
        .context(|| format!("syncing directory {}", directory.display()))?;
    let wal = WalWriter::new(file, wal_path);
    Ok(Recovered {
        segments,
        flushed_seq,
        last_seq,
        file_numbers,
        wal,
        wal_number,
        lock,
    })
}

/// Creates the database directory (and missing parents) durably.
fn create_directory(fs: &dyn FileSystem, directory: &Path) -> Result<()> {
    let missing: Vec<&Path> = directory
        .ancestors()
        .take_while(|dir| !dir.as_os_str().is_empty() && fs.list_dir(dir).is_err())
        .collect();
    fs.create_dir_all(directory)
        .context(|| format!("creating directory {}", directory.display()))?;
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

fn take_lock(fs: &dyn FileSystem, directory: &Path) -> Result<Box<dyn DirectoryLock>> {
    let path = directory.join(LOCK_FILE);
    fs.lock(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            path: directory.to_path_buf(),
        },
        _ => Error::io(format!("locking {}", path.display()), e),
    })
}

/// Removes temporary files and segments the manifest does not name; returns
/// the WAL numbers (ascending) and the highest file number seen.
fn remove_leftovers(
    fs: &dyn FileSystem,
    directory: &Path,
    names: &[String],
    manifest: &Manifest,
) -> (Vec<u64>, u64) {
    let live: Vec<u64> = manifest.segments.iter().map(|s| s.file_number).collect();
    let mut wals = Vec::new();
    let mut highest = 0;
    for name in names {
        let leftover = match parse_file_name(name) {
            Some(FileKind::Wal(number)) => {
                wals.push(number);
                highest = highest.max(number);
                false
            }
            Some(FileKind::Segment(number)) => {
                highest = highest.max(number);
                !live.contains(&number)
            }
            Some(FileKind::Temporary) => true,
            _ => false,
        };
        if leftover {
            log::info!("removing {name}, left by an interrupted flush or compaction");
            if let Err(error) = fs.remove_file(&directory.join(name)) {
                log::warn!("could not remove {name}: {error}");
            }
        }
    }
    wals.sort_unstable();
    (wals, highest)
}

/// Replays WALs in order into a memtable, skipping what is already flushed.
fn replay_wals(
    fs: &dyn FileSystem,
    directory: &Path,
    wals: &[u64],
    flushed_seq: u64,
) -> Result<(MemTable, u64)> {
    let mut memtable = MemTable::default();
    let mut last_seq = 0;
    for number in wals {
        let path = directory.join(wal_file_name(*number));
        let contents = read_wal(fs, &path)?;
        for (index, record) in contents.records.iter().enumerate() {
            let batch = WalBatch::decode(record.as_slice()).map_err(|e| {
                Error::corruption(&path, 0, format!("record {index} is not a WAL batch: {e}"))
            })?;
            for (offset, mutation) in batch.mutations.into_iter().enumerate() {
                let seq = batch.first_seq + offset as u64;
                last_seq = last_seq.max(seq);
                if seq <= flushed_seq {
                    continue;
                }
                let value = (!mutation.delete).then_some(mutation.value);
                memtable.apply(mutation.key, seq, value);
            }
        }
    }
    Ok((memtable, last_seq))
}

/// Writes the replayed memtable (if any) as a level-0 segment and records it
/// and `flushed_seq` in a new manifest.
fn flush_recovered(
    options: &Options,
    numbers: &FileNumbers,
    memtable: MemTable,
    segments: SegmentSet,
    flushed_seq: u64,
) -> Result<SegmentSet> {
    let fs = options.fs.as_ref();
    let mut added = Vec::new();
    if !memtable.is_empty() {
        let frozen = FrozenMemtable {
            table: memtable,
            wal_number: 0,
            max_seq: flushed_seq,
        };
        let table_options = TableOptions::from(options);
        for meta in write_segments(options, numbers, table_options, &frozen)? {
            added.push(Arc::new(Segment::open(fs, &options.directory, meta)?));
        }
    }
    let segments = segments.edited(&[], added);
    let manifest = Manifest {
        next_file_number: numbers.peek(),
        flushed_seq,
        segments: segments.metas(),
    };
    write_manifest(fs, &options.directory, &manifest)?;
    Ok(segments)
}
