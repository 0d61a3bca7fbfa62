//! Writes an SSTable. (STUB)
use std::path::PathBuf;

use bytes::Bytes;

use super::TableOptions;
use crate::Result;
use crate::format::Entry;
use crate::fs::WritableFile;

/// What a finished table holds, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub file_size: u64,
    pub entry_count: u64,
    pub smallest_key: Bytes,
    pub largest_key: Bytes,
    pub max_seq: u64,
}

/// Builds one table from entries added in strictly increasing key order.
pub struct SstableWriter {
    _file: Box<dyn WritableFile>,
}

impl SstableWriter {
    /// Starts a table in `file` (named `path` in errors).
    pub fn new(file: Box<dyn WritableFile>, path: PathBuf, options: TableOptions) -> Self {
        let _ = (path, options);
        SstableWriter { _file: file }
    }
    /// Adds an entry; its key must be greater than the last one added
    /// (`InvalidArgument` otherwise).
    pub fn add(&mut self, entry: &Entry) -> Result<()> {
        let _ = entry;
        todo!()
    }
    /// Bytes the table would take if finished now.
    pub fn estimated_size(&self) -> u64 {
        todo!()
    }
    /// Entries added so far.
    pub fn entry_count(&self) -> u64 {
        todo!()
    }
    /// Writes the filter, index and footer and fdatasyncs the file.
    /// `InvalidArgument` if no entry was added.
    pub fn finish(self) -> Result<TableSummary> {
        todo!()
    }
}
