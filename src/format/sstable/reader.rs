//! Reads an SSTable. (STUB)
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Result;
use crate::format::{Entry, EntryIter, KeyRange};
use crate::fs::ReadableFile;

/// The outcome of a point lookup in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The table holds this version of the key (maybe a tombstone).
    Found(Entry),
    /// The bloom filter let the key through but no block holds it.
    Absent,
    /// The bloom filter ruled the key out; no block was read.
    FilteredOut,
}

/// An open table: footer, index and filter in memory, blocks read on demand.
#[derive(Debug)]
pub struct SstableReader {
    _file: Arc<dyn ReadableFile>,
}

impl SstableReader {
    /// Opens a table, reading and checking its footer, index and filter.
    pub fn open(file: Arc<dyn ReadableFile>, path: PathBuf) -> Result<SstableReader> {
        let _ = path;
        Ok(SstableReader { _file: file })
    }
    /// Looks `key` up.
    pub fn get(&self, key: &[u8]) -> Result<Lookup> {
        let _ = key;
        todo!()
    }
    /// The entries in `range`, ascending, or descending if `reverse`.
    pub fn iter(self: &Arc<Self>, range: KeyRange, reverse: bool) -> SstableIter {
        let _ = (range, reverse);
        todo!()
    }
    /// The table's path, for errors.
    pub fn path(&self) -> &Path {
        todo!()
    }
    /// Entries in the table.
    pub fn entry_count(&self) -> u64 {
        todo!()
    }
}

/// A cursor over a table's entries in a range.
pub struct SstableIter {}

impl EntryIter for SstableIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        todo!()
    }
}
