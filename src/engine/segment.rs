//! One live segment (an open SSTable and what the manifest says of it), and
//! the writer that turns a sorted stream of entries into segment files.
//!
//! A segment is written as `NNNNNN.sst.tmp`, fdatasynced, then renamed to
//! `NNNNNN.sst`; the caller syncs the directory and only then names the
//! segment in the manifest. A crash before that leaves a file that open
//! removes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::io;

use super::inventory::REPAIR_HINT;
use super::wal_identity::WalIdentity;
use crate::error::IoContext;
use crate::format::sstable::{
    BlockCache, SstableReader, SstableWriter, TableIdentity, TableOptions, TableSummary,
};
use crate::format::{Entry, EntryIter, segment_file_name, temporary_segment_file_name};
use crate::fs::FileSystem;
use crate::proto::storage::SegmentMeta;
use crate::{Error, Result};

/// A live segment: its manifest record and its open reader.
#[derive(Debug)]
pub struct Segment {
    /// What the manifest records of it.
    pub meta: SegmentMeta,
    /// The open table.
    pub reader: Arc<SstableReader>,
}

impl Segment {
    /// Opens segment `meta.file_number` in `directory` and checks that the
    /// file is the one the manifest describes.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] naming the file if it is missing, damaged, or
    /// disagrees with `meta` (size, entry count, key span or highest
    /// sequence number: a file renamed, swapped or from another database);
    /// [`Error::Io`] if it cannot be read. `database_id` 0 skips the
    /// database check (a manifest from before ids were recorded).
    pub fn open(
        fs: &dyn FileSystem,
        directory: &Path,
        meta: SegmentMeta,
        database_id: u64,
    ) -> Result<Segment> {
        let path = directory.join(segment_file_name(meta.file_number));
        let file = fs.open(&path).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => Error::corruption(
                &path,
                0,
                format!("named by the MANIFEST but missing; {REPAIR_HINT}"),
            ),
            _ => Error::io(format!("opening segment {}", path.display()), error),
        })?;
        let reader = SstableReader::open_numbered(file, path.clone(), meta.file_number)?;
        if let Some(detail) = mismatch(&reader, &meta, database_id) {
            return Err(Error::corruption(
                &path,
                0,
                format!("does not match the MANIFEST: {detail}; {REPAIR_HINT}"),
            ));
        }
        Ok(Segment {
            meta,
            reader: Arc::new(reader),
        })
    }

    /// The segment's smallest and largest keys.
    pub fn key_span(&self) -> (&[u8], &[u8]) {
        (&self.meta.smallest_key, &self.meta.largest_key)
    }

    /// True if the segment may hold keys in `[smallest, largest]`.
    pub fn overlaps(&self, smallest: &[u8], largest: &[u8]) -> bool {
        let (lo, hi) = self.key_span();
        lo <= largest && smallest <= hi
    }
}

/// The highest WAL or segment number a database uses: open refuses a
/// directory holding a higher one, or a MANIFEST whose next number is past
/// it, so that numbering never wraps around to a live file's number (at a
/// million files a second, 2^48 numbers last nine years).
pub const MAX_FILE_NUMBER: u64 = 1 << 48;

/// Hands out file numbers in one database, shared by everything that
/// creates files there.
#[derive(Debug)]
pub struct FileNumbers {
    next: AtomicU64,
    /// The database's id (its manifest's), written into every segment.
    database_id: u64,
    /// Its WALs' lineage (its manifest's `wal_lineage`, see
    /// `wal_identity.rs`), written into every WAL's identity record.
    wal_lineage: u64,
}

impl FileNumbers {
    /// Numbers for database `database_id` start at `next`.
    pub fn starting_at(database_id: u64, next: u64) -> Self {
        FileNumbers {
            next: AtomicU64::new(next),
            database_id,
            wal_lineage: 0,
        }
    }
    /// The same numbers, with the WALs' lineage `wal_lineage`.
    pub fn with_wal_lineage(self, wal_lineage: u64) -> Self {
        FileNumbers {
            wal_lineage,
            ..self
        }
    }
    /// A number never handed out before.
    pub fn allocate(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
    /// The next number that would be handed out (for the manifest).
    pub fn peek(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
    /// The database's id.
    pub fn database_id(&self) -> u64 {
        self.database_id
    }
    /// What a new WAL's identity record names.
    pub fn wal_identity(&self) -> WalIdentity {
        WalIdentity {
            database_id: self.database_id,
            wal_lineage: self.wal_lineage,
        }
    }
}

/// A fresh database id or WAL lineage: random, never 0 (which means "not
/// recorded").
pub fn new_database_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

/// Writes a sorted stream of entries into one or more segments, starting a
/// new file when the current one passes `target_bytes`.
pub struct SegmentBuilder<'a> {
    fs: &'a dyn FileSystem,
    directory: &'a Path,
    numbers: &'a FileNumbers,
    table_options: TableOptions,
    target_bytes: u64,
    level: u32,
    /// Where the segments' blocks go as they are written, if anywhere.
    cache: Option<Arc<BlockCache>>,
    current: Option<(u64, SstableWriter)>,
    finished: Vec<SegmentMeta>,
}

impl<'a> SegmentBuilder<'a> {
    /// A builder for segments of `level` in `directory`.
    pub fn new(
        fs: &'a dyn FileSystem,
        directory: &'a Path,
        numbers: &'a FileNumbers,
        table_options: TableOptions,
        target_bytes: u64,
        level: u32,
    ) -> Self {
        SegmentBuilder {
            fs,
            directory,
            numbers,
            table_options,
            target_bytes,
            level,
            cache: None,
            current: None,
            finished: Vec::new(),
        }
    }

    /// Also puts every data block written into `cache`, under the file
    /// number its segment is opened with ([`SstableWriter::caching_blocks`]).
    pub fn caching_blocks(mut self, cache: Option<Arc<BlockCache>>) -> Self {
        self.cache = cache;
        self
    }

    /// Adds the next entry (keys strictly increasing).
    pub fn add(&mut self, entry: &Entry) -> Result<()> {
        if self.current.is_none() {
            let number = self.numbers.allocate();
            let path = self.directory.join(temporary_segment_file_name(number));
            let file = self
                .fs
                .create(&path)
                .context(|| format!("creating {}", path.display()))?;
            let identity = TableIdentity {
                file_number: number,
                database_id: self.numbers.database_id(),
            };
            let mut writer =
                SstableWriter::new(file, path, self.table_options).with_identity(identity);
            if let Some(cache) = &self.cache {
                writer = writer.caching_blocks(cache.clone(), number);
            }
            self.current = Some((number, writer));
        }
        if let Some((_, writer)) = self.current.as_mut() {
            writer.add(entry)?;
            if writer.estimated_size() >= self.target_bytes {
                self.finish_current()?;
            }
        }
        Ok(())
    }

    fn finish_current(&mut self) -> Result<()> {
        let Some((number, writer)) = self.current.take() else {
            return Ok(());
        };
        let from = self.directory.join(temporary_segment_file_name(number));
        let to = self.directory.join(segment_file_name(number));
        let renamed = writer.finish().and_then(|summary| {
            self.fs
                .rename(&from, &to)
                .context(|| format!("renaming {}", from.display()))
                .map(|()| summary)
        });
        // Taken from `current` already: `abandon` would not find it.
        let summary = renamed.inspect_err(|_| {
            let _ = self.fs.remove_file(&from);
        })?;
        self.finished
            .push(meta_from_summary(number, self.level, summary));
        Ok(())
    }

    /// Writes every entry of `entries`, finishes, and syncs the directory,
    /// so that the caller may name the segments in the manifest. On any
    /// error, removes what it wrote.
    pub fn write_all(mut self, entries: &mut dyn EntryIter) -> Result<Vec<SegmentMeta>> {
        let copied = loop {
            match entries.next_entry() {
                Ok(Some(entry)) => {
                    if let Err(error) = self.add(&entry) {
                        break Err(error);
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        // A full disk fails here as often as in the copy: either way what
        // was written goes, so that a retry starts with the space it had.
        let finished = copied.and_then(|()| self.finish_current());
        // IMPORTANT: the segments' directory entries must be durable before
        // the manifest names them, or a crash could leave a manifest naming
        // no file.
        let synced = finished.and_then(|()| {
            self.fs
                .sync_dir(self.directory)
                .context(|| format!("syncing directory {}", self.directory.display()))
        });
        if let Err(error) = synced {
            self.abandon();
            return Err(error);
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// Removes what was written, after a failure.
    pub fn abandon(mut self) {
        let mut paths: Vec<PathBuf> = Vec::new();
        if let Some((number, _)) = self.current.take() {
            paths.push(self.directory.join(temporary_segment_file_name(number)));
        }
        for meta in &self.finished {
            paths.push(self.directory.join(segment_file_name(meta.file_number)));
        }
        for path in paths {
            let _ = self.fs.remove_file(&path);
        }
    }
}

/// How an open table differs from its manifest record, if it does.
fn mismatch(reader: &SstableReader, meta: &SegmentMeta, database_id: u64) -> Option<String> {
    if let Some(identity) = reader.identity() {
        if identity.file_number != meta.file_number {
            return Some(format!(
                "the file was written as segment {}, not {}",
                identity.file_number, meta.file_number
            ));
        }
        if database_id != 0 && identity.database_id != database_id {
            return Some(format!(
                "the file belongs to database {:016x}, this one is {database_id:016x}",
                identity.database_id
            ));
        }
    }
    let numbers = [
        ("bytes", reader.file_size(), meta.file_size),
        ("entries", reader.entry_count(), meta.entry_count),
        ("highest sequence", reader.max_seq(), meta.max_seq),
    ];
    for (what, found, recorded) in numbers {
        if found != recorded {
            return Some(format!(
                "the file has {what} {found}, the MANIFEST says {recorded}"
            ));
        }
    }
    if reader.smallest_key()[..] != meta.smallest_key[..]
        || reader.largest_key()[..] != meta.largest_key[..]
    {
        return Some("the file's key span is not the one the MANIFEST records".into());
    }
    None
}

fn meta_from_summary(number: u64, level: u32, summary: TableSummary) -> SegmentMeta {
    SegmentMeta {
        file_number: number,
        level,
        smallest_key: summary.smallest_key,
        largest_key: summary.largest_key,
        file_size: summary.file_size,
        entry_count: summary.entry_count,
        max_seq: summary.max_seq,
        earliest_expire_at_ms: summary.earliest_expire_at_ms,
    }
}
