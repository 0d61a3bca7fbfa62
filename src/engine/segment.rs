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

use crate::Result;
use crate::error::IoContext;
use crate::format::sstable::{SstableReader, SstableWriter, TableOptions, TableSummary};
use crate::format::{Entry, EntryIter, segment_file_name, temporary_segment_file_name};
use crate::fs::FileSystem;
use crate::proto::storage::SegmentMeta;

/// A live segment: its manifest record and its open reader.
#[derive(Debug)]
pub struct Segment {
    /// What the manifest records of it.
    pub meta: SegmentMeta,
    /// The open table.
    pub reader: Arc<SstableReader>,
}

impl Segment {
    /// Opens segment `meta.file_number` in `directory`.
    pub fn open(fs: &dyn FileSystem, directory: &Path, meta: SegmentMeta) -> Result<Segment> {
        let path = directory.join(segment_file_name(meta.file_number));
        let file = fs
            .open(&path)
            .context(|| format!("opening segment {}", path.display()))?;
        let reader = SstableReader::open(file, path)?;
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

/// Hands out file numbers, shared by everything that creates files.
#[derive(Debug)]
pub struct FileNumbers(AtomicU64);

impl FileNumbers {
    /// Numbers start at `next`.
    pub fn starting_at(next: u64) -> Self {
        FileNumbers(AtomicU64::new(next))
    }
    /// A number never handed out before.
    pub fn allocate(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
    /// The next number that would be handed out (for the manifest).
    pub fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
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
            current: None,
            finished: Vec::new(),
        }
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
            self.current = Some((number, SstableWriter::new(file, path, self.table_options)));
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
        let summary = writer.finish()?;
        let from = self.directory.join(temporary_segment_file_name(number));
        let to = self.directory.join(segment_file_name(number));
        self.fs
            .rename(&from, &to)
            .context(|| format!("renaming {}", from.display()))?;
        self.finished
            .push(meta_from_summary(number, self.level, summary));
        Ok(())
    }

    /// Finishes the last file and returns the segments written. The caller
    /// must sync the directory before naming them in the manifest.
    pub fn finish(mut self) -> Result<Vec<SegmentMeta>> {
        self.finish_current()?;
        Ok(std::mem::take(&mut self.finished))
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
        if let Err(error) = copied {
            self.abandon();
            return Err(error);
        }
        let (fs, directory) = (self.fs, self.directory);
        let metas = self.finish()?;
        // IMPORTANT: the segments' directory entries must be durable before
        // the manifest names them, or a crash could leave a manifest naming
        // no file.
        fs.sync_dir(directory)
            .context(|| format!("syncing directory {}", directory.display()))?;
        Ok(metas)
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

fn meta_from_summary(number: u64, level: u32, summary: TableSummary) -> SegmentMeta {
    SegmentMeta {
        file_number: number,
        level,
        smallest_key: summary.smallest_key,
        largest_key: summary.largest_key,
        file_size: summary.file_size,
        entry_count: summary.entry_count,
        max_seq: summary.max_seq,
    }
}
