//! The write-ahead log. (STUB: format doc to be written by the module's author.)
use std::path::{Path, PathBuf};

use crate::Result;
use crate::fs::{FileSystem, WritableFile};

/// Appends framed records to one WAL file.
pub struct WalWriter {
    _file: Box<dyn WritableFile>,
}

impl WalWriter {
    /// Starts writing `file` (named `path` in errors) from its beginning.
    pub fn new(file: Box<dyn WritableFile>, path: PathBuf) -> Self {
        let _ = path;
        WalWriter { _file: file }
    }
    /// Frames `payload` as one record and appends the frame to `out`.
    pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
        let _ = (payload, out);
        todo!()
    }
    /// Appends bytes made by `encode_record` (one or more whole records).
    pub fn append_encoded(&mut self, framed: &[u8]) -> Result<()> {
        let _ = framed;
        todo!()
    }
    /// fdatasyncs the file.
    pub fn sync(&mut self) -> Result<()> {
        todo!()
    }
    /// The file's path.
    pub fn path(&self) -> &Path {
        todo!()
    }
    /// Bytes appended so far.
    pub fn bytes_written(&self) -> u64 {
        todo!()
    }
}

/// What reading a WAL found.
#[derive(Debug, Default)]
pub struct WalContents {
    /// The payloads of the intact records, in order.
    pub records: Vec<Vec<u8>>,
    /// Where a torn last record began, if one was dropped.
    pub torn_tail_at: Option<u64>,
}

/// Reads every intact record of a WAL. A torn last record is dropped
/// (`torn_tail_at` says where); a bad record followed by more data is a
/// corruption error naming the file and offset.
pub fn read_wal(fs: &dyn FileSystem, path: &Path) -> Result<WalContents> {
    let _ = (fs, path);
    todo!()
}
