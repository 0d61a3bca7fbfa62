//! `naivekv-check --repair`: rebuilds a database that open refuses, the
//! counterpart of LevelDB's and RocksDB's `RepairDB`.
//!
//! 1. Every segment is read whole. One that is damaged is moved to `lost/`,
//!    never deleted; when its footer, index and filter are intact, the
//!    entries of its blocks that check are kept and merged (one bad block
//!    loses that block's writes, not the segment's). A segment the process
//!    may not read (permissions) stops the repair before anything is moved:
//!    it is not damaged, and fixing its permissions keeps every write.
//! 2. Every WAL's intact records are kept. Damage is read past
//!    (`format::wal::read_wal_salvaging`: a record with an intact header is
//!    skipped by its length; after a damaged header, reading resumes where
//!    intact records run to the end of the file), and records whose
//!    sequence numbers go back are dropped. A damaged WAL is then moved to
//!    `lost/`, whole.
//!
//!    A segment whose footer, or a WAL whose identity record, names another
//!    database is moved to `lost/` too: it was copied in, and merging it
//!    would serve another database's keys. This database is the one the old
//!    manifest names, unless no segment or WAL names it while some name
//!    another (a manifest copied in from another database: it goes to
//!    `lost/`, and the files decide); without a manifest, the one most
//!    segments and WALs name. A segment or WAL whose identity gives another
//!    file number than its name goes to `lost/` as well when it is an older
//!    copy of one of this database's files, put back (the file it was
//!    written as is still there, or the old manifest no longer lists it as
//!    live): merged, its versions would bring back keys deleted since. A
//!    live file that was only renamed is merged.
//!
//!    When the old manifest records a clean close past the last write the
//!    kept files hold, the report says how many acknowledged writes are
//!    gone (a WAL cut or emptied after the close).
//! 3. Everything kept is merged, the newest version of each key by sequence
//!    number winning, into a fresh sorted run of segments in level 1
//!    (deletes are applied and dropped: nothing older is left below them).
//!    Range deletes are applied the same way: those logged in the kept WAL
//!    records, and those the old manifest holds if it can be read.
//! 4. A new empty WAL and a manifest naming the new segments are written and
//!    synced; only then are the old segments and WALs removed (their data is
//!    in the new run) and a damaged old manifest moved to `lost/`.
//!
//! A crash anywhere before step 4's manifest leaves the old files in place
//! (and maybe new unnamed segments, which hold nothing new): run it again.
//!
//! Limits: a segment a compaction had already replaced, left behind by a
//! crash, is merged like any other; if the compaction had dropped a delete
//! of one of its keys, that key's older value comes back. Writes held only
//! by a file moved to `lost/` are gone from the repaired database, and so
//! are range deletes held only by an unreadable or missing manifest (their
//! keys come back).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use prost::Message as _;

use super::batch::{LoggedWrite, logged_writes};
use super::check::read_whole;
use super::inventory::DirectoryFiles;
use super::memtable::MemTable;
use super::merge::{LiveIter, MemTableIter, MergeIter};
use super::range_delete::{RangeTombstone, Uncovered};
use super::recovery::take_lock;
use super::segment::{FileNumbers, SegmentBuilder, new_database_id};
use super::wal_identity::{WalIdentity, is_identity};
use crate::error::IoContext;
use crate::format::manifest::{MANIFEST_FILE, read_manifest, write_manifest};
use crate::format::sstable::{SstableReader, TableOptions};
use crate::format::wal::read_wal_salvaging;
use crate::format::{EntryIter, FileKind, parse_file_name, segment_file_name, wal_file_name};
use crate::fs::FileSystem;
use crate::proto::storage::{Manifest, WalBatch};
use crate::{Error, Options, Result};

/// Where repair puts the files it could not read.
pub const LOST_DIRECTORY: &str = "lost";

/// The level the repaired run is written to.
const REPAIRED_LEVEL: u32 = 1;

/// What a repair did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Segments read whole and merged.
    pub segments_kept: usize,
    /// WAL records merged.
    pub wal_records_kept: u64,
    /// Keys in the repaired database.
    pub keys: u64,
    /// Segments written.
    pub segments_written: usize,
    /// Files moved to `lost/`, with why.
    pub lost: Vec<(String, String)>,
    /// Entries kept from the intact blocks of damaged segments (which were
    /// moved to `lost/` whole).
    pub entries_salvaged: u64,
    /// Segments the old manifest named that are not in the directory, with
    /// the entries it recorded for them: their writes are gone unless a
    /// WAL still held them.
    pub missing: Vec<(String, u64)>,
    /// The old manifest recorded a clean close at this sequence number,
    /// and the files kept hold writes only up to the second: the
    /// acknowledged writes between are gone (a WAL was cut or emptied).
    pub acknowledged_lost: Option<(u64, u64)>,
}

/// Repairs the closed database in `options.directory`; see the module doc.
///
/// # Errors
///
/// [`Error::Locked`](crate::Error::Locked) if it is open; [`Error::Io`](crate::Error::Io) if a file cannot be
/// listed, moved or written (nothing is removed before the new manifest is
/// durable).
pub fn repair_database(options: &Options) -> Result<RepairReport> {
    let fs = options.fs.as_ref();
    let directory = options.directory.as_path();
    let _lock = take_lock(fs, directory)?;
    let files = DirectoryFiles::list(fs, directory)?;
    let mut report = RepairReport::default();
    let mut old_manifest = read_manifest(fs, directory).ok().flatten();
    let (readers, damaged) = readable_segments(fs, directory, &files, &mut report)?;
    let wal_ids = wal_database_ids(fs, directory, &files);
    let owner = owner_of(old_manifest.as_ref(), &readers, &wal_ids);
    let foreign_manifest = old_manifest
        .as_ref()
        .filter(|m| m.database_id != 0 && owner != 0 && m.database_id != owner);
    if let Some(manifest) = foreign_manifest {
        let why = format!(
            "names database {:016x}, but the segments and WALs are database {owner:016x}'s \
             (copied in from another database)",
            manifest.database_id
        );
        move_to_lost(fs, directory, MANIFEST_FILE, &why, &mut report)?;
        old_manifest = None;
    }
    let older_copy = |written_as: u64| {
        files.segments.contains(&written_as)
            || old_manifest
                .as_ref()
                .is_some_and(|m| !m.segments.iter().any(|s| s.file_number == written_as))
    };
    let readers = without_foreign(fs, directory, readers, owner, &older_copy, &mut report)?;
    let lineage = old_manifest.as_ref().map_or(0, |m| m.wal_lineage);
    let ours = WalIdentity {
        database_id: owner,
        wal_lineage: lineage,
    };
    let oldest_live_wal = old_manifest.as_ref().map_or(0, |m| m.oldest_live_wal);
    let mut salvaged = salvage_wals(fs, directory, &files, ours, oldest_live_wal, &mut report)?;
    let memtable = &mut salvaged.memtable;
    salvage_segments(
        fs,
        directory,
        damaged,
        owner,
        &older_copy,
        memtable,
        &mut report,
    )?;
    if let Some(manifest) = &old_manifest {
        report.missing = manifest
            .segments
            .iter()
            .filter(|meta| !files.segments.contains(&meta.file_number))
            // Renamed, but kept and merged under its new name.
            .filter(|meta| {
                let written_as = |r: &Arc<SstableReader>| r.identity().map(|i| i.file_number);
                !readers
                    .iter()
                    .any(|r| written_as(r) == Some(meta.file_number))
            })
            .map(|meta| (segment_file_name(meta.file_number), meta.entry_count))
            .collect();
    }
    let mut tombstones = salvaged.range_tombstones;
    if let Some(manifest) = &old_manifest {
        tombstones.extend(manifest.range_tombstones.iter().map(|t| RangeTombstone {
            start: t.start.clone(),
            end: t.end.clone(),
            seq: t.seq,
        }));
    }
    let max_seq = readers
        .iter()
        .map(|reader| reader.max_seq())
        .chain(std::iter::once(memtable_max_seq(&salvaged.memtable)))
        .chain(tombstones.iter().map(|t| t.seq))
        .chain(salvaged.markers_reached)
        .chain(old_manifest.as_ref().map(|m| m.flushed_seq))
        .max()
        .unwrap_or(0);
    let closed_at = old_manifest.as_ref().map_or(0, |m| m.closed_at_seq);
    if closed_at > max_seq {
        report.acknowledged_lost = Some((closed_at, max_seq));
    }
    let database_id = match owner {
        0 => new_database_id(),
        id => id,
    };
    let numbers = FileNumbers::starting_at(database_id, files.highest_number + 1);
    let outputs = write_merged(options, &numbers, &readers, salvaged.memtable, tombstones)?;
    report.segments_written = outputs.len();
    report.keys = outputs.iter().map(|meta| meta.entry_count).sum();
    let wal_number = numbers.allocate();
    let wal_path = directory.join(wal_file_name(wal_number));
    fs.create(&wal_path)
        .context(|| format!("creating {}", wal_path.display()))?;
    fs.sync_dir(directory)
        .context(|| format!("syncing {}", directory.display()))?;
    if read_manifest(fs, directory).is_err() {
        move_to_lost(
            fs,
            directory,
            MANIFEST_FILE,
            "unreadable manifest",
            &mut report,
        )?;
    }
    let manifest = Manifest {
        next_file_number: numbers.peek(),
        flushed_seq: max_seq,
        segments: outputs,
        oldest_live_wal: wal_number,
        oldest_live_wal_exists: true,
        wal_lineage: match lineage {
            0 => new_database_id(),
            lineage => lineage,
        },
        database_id,
        // The range deletes kept were applied to the merged run.
        range_tombstones: Vec::new(),
        closed_at_seq: 0,
    };
    write_manifest(fs, directory, &manifest)?;
    for wal in salvaged.damaged {
        move_to_lost(fs, directory, &wal.name, &wal.why(), &mut report)?;
    }
    remove_merged(fs, directory, &files, &readers, wal_number);
    Ok(report)
}

/// A segment that cannot be read whole.
struct DamagedSegment {
    name: String,
    /// Its footer, index and filter, when they are intact: the blocks that
    /// check are salvaged ([`salvage_segments`]).
    reader: Option<Arc<SstableReader>>,
    why: String,
}

/// Opens and reads every segment: those read whole, and the damaged ones.
///
/// # Errors
/// A segment the process may not read (permissions): nothing is moved, so
/// that fixing them and running repair again keeps every write.
fn readable_segments(
    fs: &dyn FileSystem,
    directory: &Path,
    files: &DirectoryFiles,
    report: &mut RepairReport,
) -> Result<(Vec<Arc<SstableReader>>, Vec<DamagedSegment>)> {
    let mut readers = Vec::new();
    let mut damaged = Vec::new();
    for number in &files.segments {
        let name = segment_file_name(*number);
        let path = directory.join(&name);
        let file = fs
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e));
        let opened = file.and_then(|file| SstableReader::open(file, path.clone()).map(Arc::new));
        let (reader, error) = match opened {
            Ok(reader) => match read_whole(&reader) {
                Ok(_) => (Some(reader), None),
                Err(error) => (Some(reader), Some(error)),
            },
            Err(error) => (None, Some(error)),
        };
        match (reader, error) {
            (_, Some(error)) if not_permitted(&error) => {
                return Err(Error::io(
                    format!(
                        "{name} cannot be read ({error}); nothing was changed: give this \
                         process access to it and run repair again"
                    ),
                    std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                ));
            }
            (Some(reader), None) => {
                report.segments_kept += 1;
                readers.push(reader);
            }
            (reader, error) => damaged.push(DamagedSegment {
                name,
                reader,
                why: error.map(|e| e.client_message()).unwrap_or_default(),
            }),
        }
    }
    Ok((readers, damaged))
}

/// Whether `error` says the process may not read a file (not that the file
/// is damaged).
fn not_permitted(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
}

/// Moves each damaged segment to `lost/`, after copying the entries of its
/// intact blocks into `memtable` (unless it is another database's or an
/// older copy, as [`refusal`] says: then nothing of it is kept).
fn salvage_segments(
    fs: &dyn FileSystem,
    directory: &Path,
    damaged: Vec<DamagedSegment>,
    owner: u64,
    older_copy: &dyn Fn(u64) -> bool,
    memtable: &mut MemTable,
    report: &mut RepairReport,
) -> Result<()> {
    for segment in damaged {
        let mut why = segment.why;
        if let Some(reader) = segment.reader {
            match refusal(&reader, &segment.name, owner, older_copy) {
                Some(refused) => why = refused,
                None => {
                    let (entries, bad) = reader.intact_entries();
                    let kept = entries.len() as u64;
                    for entry in entries {
                        memtable.apply_expiring(
                            entry.key,
                            entry.seq,
                            entry.value,
                            entry.expire_at_ms,
                        );
                    }
                    report.entries_salvaged += kept;
                    why = format!(
                        "{why}; {kept} entries kept from its intact blocks ({} of {} damaged)",
                        bad.len(),
                        reader.block_count()
                    );
                }
            }
        }
        move_to_lost(fs, directory, &segment.name, &why, report)?;
    }
    Ok(())
}

/// The database the directory belongs to: the old manifest's id if any
/// segment or WAL names it too (or none names any), or else the id most
/// readable segments' footers and WALs' identity records give; 0 if none
/// says. (A manifest copied in from another database names an id none of
/// the files do: the files decide.)
fn owner_of(
    old_manifest: Option<&Manifest>,
    readers: &[Arc<SstableReader>],
    wal_ids: &[u64],
) -> u64 {
    let segment_ids = readers
        .iter()
        .filter_map(|r| r.identity().map(|i| i.database_id));
    let mut ids: Vec<u64> = segment_ids
        .chain(wal_ids.iter().copied())
        .filter(|id| *id != 0)
        .collect();
    if let Some(id) = old_manifest.map(|m| m.database_id).filter(|id| *id != 0)
        && (ids.is_empty() || ids.contains(&id))
    {
        return id;
    }
    ids.sort_unstable();
    let runs = ids.chunk_by(|a, b| a == b);
    runs.max_by_key(|run| run.len())
        .and_then(|run| run.first().copied())
        .unwrap_or(0)
}

/// The database ids the WALs' identity records name (0 for none).
fn wal_database_ids(fs: &dyn FileSystem, directory: &Path, files: &DirectoryFiles) -> Vec<u64> {
    let first_record = |number: &u64| {
        let (contents, _) = read_wal_salvaging(fs, &directory.join(wal_file_name(*number))).ok()?;
        let first = contents.records.first()?;
        WalBatch::decode(first.as_slice()).ok().filter(is_identity)
    };
    files
        .wals
        .iter()
        .filter_map(first_record)
        .map(|identity| identity.database_id)
        .collect()
}

/// `readers` without the segments another database wrote, which go to
/// `lost/`.
fn without_foreign(
    fs: &dyn FileSystem,
    directory: &Path,
    readers: Vec<Arc<SstableReader>>,
    owner: u64,
    older_copy: &dyn Fn(u64) -> bool,
    report: &mut RepairReport,
) -> Result<Vec<Arc<SstableReader>>> {
    let mut kept = Vec::with_capacity(readers.len());
    for reader in readers {
        let name = reader
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(why) = refusal(&reader, &name, owner, older_copy) else {
            kept.push(reader);
            continue;
        };
        report.segments_kept = report.segments_kept.saturating_sub(1);
        drop(reader);
        move_to_lost(fs, directory, &name, &why, report)?;
    }
    Ok(kept)
}

/// Why segment `name` must not be merged: another database wrote it, or it
/// is an older copy of one of this database's segments (merged, its
/// versions could bring back keys deleted since). `None`: it is ours.
fn refusal(
    reader: &SstableReader,
    name: &str,
    owner: u64,
    older_copy: &dyn Fn(u64) -> bool,
) -> Option<String> {
    let writer = reader.identity().map_or(0, |i| i.database_id);
    let written_as = reader.identity().map_or(0, |i| i.file_number);
    let named = match parse_file_name(name) {
        Some(FileKind::Segment(number)) => number,
        _ => 0,
    };
    if owner != 0 && writer != 0 && writer != owner {
        Some(format!(
            "written by database {writer:016x}, this one is {owner:016x}"
        ))
    } else if written_as != 0 && named != 0 && written_as != named && older_copy(written_as) {
        Some(format!(
            "written as {}, not {name}: a copy of an older segment (its writes may have \
             been superseded or deleted since)",
            segment_file_name(written_as)
        ))
    } else {
        None
    }
}

/// What the WALs' intact records hold, and which WALs are damaged.
#[derive(Default)]
struct Salvaged {
    /// Their puts and deletes.
    memtable: MemTable,
    /// Their range deletes.
    range_tombstones: Vec<RangeTombstone>,
    /// The WALs with damage.
    damaged: Vec<SalvagedWal>,
    /// The number before the highest resume marker's: every write up to it
    /// was made or burned (`engine/memtable/wal_full.rs`).
    markers_reached: Option<u64>,
}

/// Why a WAL whose identity record is `writer` is not this database's
/// (either side 0: not recorded, no objection).
fn not_ours(writer: &WalBatch, ours: WalIdentity) -> Option<String> {
    let differ = |a: u64, b: u64| a != 0 && b != 0 && a != b;
    if differ(writer.database_id, ours.database_id) {
        return Some(format!(
            "written by database {:016x}, this one is {:016x}",
            writer.database_id, ours.database_id
        ));
    }
    differ(writer.wal_lineage, ours.wal_lineage).then(|| {
        format!(
            "written by another copy of this database (a checkpoint or its source): WAL \
             lineage {:016x}, this copy's is {:016x}",
            writer.wal_lineage, ours.wal_lineage
        )
    })
}

/// What repair kept of one damaged WAL.
#[derive(Default)]
struct SalvagedWal {
    name: String,
    records_kept: u64,
    /// Intact records not kept: undecodable, or numbered before a record
    /// already kept.
    records_dropped: u64,
    /// Damaged stretches read past, and their bytes.
    stretches: usize,
    skipped_bytes: u64,
    /// The first damage, as open would have refused it.
    first_damage: Option<String>,
}

impl SalvagedWal {
    /// Why it goes to `lost/`.
    fn why(&self) -> String {
        let mut why = format!(
            "damaged WAL: {} intact record(s) kept; {} damaged stretch(es), {} byte(s), read past",
            self.records_kept, self.stretches, self.skipped_bytes
        );
        if self.records_dropped > 0 {
            why += &format!(
                "; {} record(s) out of sequence order dropped",
                self.records_dropped
            );
        }
        if let Some(first) = &self.first_damage {
            why += &format!(" (first: {first})");
        }
        why + "; this copy still holds every byte"
    }
}

/// Every intact WAL record; see [`Salvaged`].
fn salvage_wals(
    fs: &dyn FileSystem,
    directory: &Path,
    files: &DirectoryFiles,
    ours: WalIdentity,
    oldest_live_wal: u64,
    report: &mut RepairReport,
) -> Result<Salvaged> {
    let mut salvaged = Salvaged::default();
    for number in &files.wals {
        let name = wal_file_name(*number);
        let (contents, damage) = read_wal_salvaging(fs, &directory.join(&name))?;
        let identity = contents
            .records
            .first()
            .and_then(|record| WalBatch::decode(record.as_slice()).ok())
            .filter(is_identity);
        // Renamed but still the only copy of a live WAL: kept.
        let older_copy =
            |written_as: u64| files.wals.contains(&written_as) || written_as < oldest_live_wal;
        let misnamed = identity
            .as_ref()
            .filter(|writer| writer.wal_number != 0 && writer.wal_number != *number)
            .filter(|writer| older_copy(writer.wal_number))
            .map(|writer| {
                format!(
                    "written as {}, not {name}: a copy of an older WAL (its writes may have been \
                     superseded or deleted since)",
                    wal_file_name(writer.wal_number)
                )
            });
        let refused = identity
            .and_then(|writer| not_ours(&writer, ours))
            .or(misnamed);
        if let Some(why) = refused {
            move_to_lost(fs, directory, &name, &why, report)?;
            continue;
        }
        let mut wal = SalvagedWal {
            name,
            stretches: damage.len(),
            skipped_bytes: damage.iter().map(|d| d.skipped_bytes).sum(),
            first_damage: damage.first().map(|d| d.error.client_message()),
            ..SalvagedWal::default()
        };
        let mut last_seq = 0;
        for record in &contents.records {
            let batch = match WalBatch::decode(record.as_slice()) {
                // Sequence numbers only grow in a WAL: a record that goes
                // back is not one of this WAL's (read past damage).
                Ok(batch) if batch.first_seq == 0 || batch.first_seq > last_seq => batch,
                _ => {
                    wal.records_dropped += 1;
                    continue;
                }
            };
            let count = batch.mutations.len() as u64;
            if count == 0 && batch.first_seq > 0 {
                let reached = batch.first_seq - 1;
                salvaged.markers_reached = salvaged.markers_reached.max(Some(reached));
            }
            last_seq = last_seq.max((batch.first_seq + count).saturating_sub(1));
            report.wal_records_kept += 1;
            wal.records_kept += 1;
            for write in logged_writes(batch) {
                match write {
                    LoggedWrite::Key {
                        seq,
                        key,
                        value,
                        expire_at_ms,
                    } => salvaged
                        .memtable
                        .apply_expiring(key, seq, value, expire_at_ms),
                    LoggedWrite::Range(tombstone) => salvaged.range_tombstones.push(tombstone),
                }
            }
        }
        if wal.stretches > 0 || wal.records_dropped > 0 {
            salvaged.damaged.push(wal);
        }
    }
    Ok(salvaged)
}

/// The highest sequence number in a memtable (0 if empty).
fn memtable_max_seq(memtable: &MemTable) -> u64 {
    let all = (Bound::Unbounded, Bound::Unbounded);
    memtable
        .range(&all, false)
        .map(|e| e.seq)
        .max()
        .unwrap_or(0)
}

/// Merges everything kept into a new level-1 run, deletes and range
/// deletes applied.
fn write_merged(
    options: &Options,
    numbers: &FileNumbers,
    readers: &[Arc<SstableReader>],
    memtable: MemTable,
    tombstones: Vec<RangeTombstone>,
) -> Result<Vec<crate::proto::storage::SegmentMeta>> {
    let all = (Bound::Unbounded, Bound::Unbounded);
    let mut sources: Vec<Box<dyn EntryIter>> = readers
        .iter()
        .map(|reader| Box::new(reader.iter(all.clone(), false)) as Box<dyn EntryIter>)
        .collect();
    sources.push(Box::new(MemTableIter::new(memtable, all, false)));
    // Expiries are kept as written (0: nothing counts as expired here).
    let merged = Uncovered::new(MergeIter::new(sources, false), tombstones);
    let mut merged = LiveIter(merged, 0);
    let builder = SegmentBuilder::new(
        options.fs.as_ref(),
        &options.directory,
        numbers,
        TableOptions::from(options),
        options.target_segment_bytes,
        REPAIRED_LEVEL,
    );
    builder.write_all(&mut merged)
}

/// Moves `name` into `lost/` (created if needed) and records why.
fn move_to_lost(
    fs: &dyn FileSystem,
    directory: &Path,
    name: &str,
    why: &str,
    report: &mut RepairReport,
) -> Result<()> {
    let lost = directory.join(LOST_DIRECTORY);
    fs.create_dir_all(&lost)
        .context(|| format!("creating {}", lost.display()))?;
    let from = directory.join(name);
    fs.rename(&from, &lost.join(name))
        .context(|| format!("moving {} to {}", from.display(), lost.display()))?;
    fs.sync_dir(directory)
        .context(|| format!("syncing {}", directory.display()))?;
    report.lost.push((name.to_string(), why.to_string()));
    Ok(())
}

/// Removes the old segments and WALs whose data the new run holds.
fn remove_merged(
    fs: &dyn FileSystem,
    directory: &Path,
    files: &DirectoryFiles,
    readers: &[Arc<SstableReader>],
    new_wal: u64,
) {
    let old_segments = readers.iter().map(|r| r.path().to_path_buf());
    let old_wals = files
        .wals
        .iter()
        .filter(|n| **n != new_wal)
        .map(|n| directory.join(wal_file_name(*n)));
    let temporaries = files.temporaries.iter().map(|name| directory.join(name));
    for path in old_segments.chain(old_wals).chain(temporaries) {
        // A damaged WAL was moved to lost/ already; NotFound is expected.
        if let Err(error) = fs.remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("could not remove {}: {error}", path.display());
        }
    }
}
