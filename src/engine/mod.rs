//! The database (STUB API: bodies to come).

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::{Options, Result};

/// An atomic group of writes: all are applied, or none.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) mutations: Vec<(Bytes, Option<Bytes>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.mutations.push((key.into(), Some(value.into())));
        self
    }
    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.mutations.push((key.into(), None));
        self
    }
    /// Number of mutations.
    pub fn len(&self) -> usize {
        self.mutations.len()
    }
    /// True if the batch holds no mutation.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }
}

/// What a scan reads.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// Where the range starts.
    pub start: Bound<Bytes>,
    /// Where the range ends.
    pub end: Bound<Bytes>,
    /// At most this many entries (0: no limit other than `max_bytes`).
    pub limit: usize,
    /// Descending key order.
    pub reverse: bool,
    /// Stop once the entries returned reach this many bytes (keys plus values);
    /// at least one entry is always returned if any exists.
    pub max_bytes: usize,
}

/// One page of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Key-value pairs in the requested order.
    pub entries: Vec<(Bytes, Bytes)>,
    /// True if the page stopped at `limit` or `max_bytes` with entries left.
    pub more: bool,
}

/// Engine counters, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub counters: BTreeMap<String, u64>,
}

/// A cheap-to-clone handle on an open database.
#[derive(Clone, Debug)]
pub struct Db {}

impl Db {
    /// Opens (creating if needed) the database in `options.directory`.
    /// Must be called inside a running actix system.
    pub async fn open(options: Options) -> Result<Db> {
        let _ = options;
        todo!()
    }
    /// The value of `key`, `None` if absent.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let _ = key.into();
        todo!()
    }
    /// Sets `key` to `value`.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<()> {
        let _ = (key.into(), value.into());
        todo!()
    }
    /// Removes `key`; removing an absent key succeeds.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<()> {
        let _ = key.into();
        todo!()
    }
    /// Applies a batch atomically.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        let _ = batch;
        todo!()
    }
    /// Reads a range.
    pub async fn scan(&self, request: ScanRequest) -> Result<ScanPage> {
        let _ = request;
        todo!()
    }
    /// Flushes the memtable to a segment.
    pub async fn flush(&self) -> Result<()> {
        todo!()
    }
    /// Compacts every segment into one sorted run.
    pub async fn compact(&self) -> Result<()> {
        todo!()
    }
    /// Current counters.
    pub async fn stats(&self) -> Result<Stats> {
        todo!()
    }
    /// Syncs and stops the database's actors.
    pub async fn close(&self) -> Result<()> {
        todo!()
    }
}
