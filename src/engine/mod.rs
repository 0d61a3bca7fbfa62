//! The database (STUB API: bodies to come).
//!
//! Every request method enqueues its message when it is called, not when
//! the returned future is first polled: requests made one after another from
//! one task are applied in that order, even if their futures are awaited
//! together (a pipelining server relies on this). A read sees every write
//! whose future has completed.

use std::collections::BTreeMap;
use std::future::Future;
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
    pub fn get(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Option<Bytes>>> + 'static {
        let _ = key.into();
        async { todo!() }
    }
    /// Sets `key` to `value`.
    pub fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> impl Future<Output = Result<()>> + 'static {
        let _ = (key.into(), value.into());
        async { todo!() }
    }
    /// Removes `key`; removing an absent key succeeds.
    pub fn delete(&self, key: impl Into<Bytes>) -> impl Future<Output = Result<()>> + 'static {
        let _ = key.into();
        async { todo!() }
    }
    /// Applies a batch atomically.
    pub fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<()>> + 'static {
        let _ = batch;
        async { todo!() }
    }
    /// Reads a range.
    pub fn scan(&self, request: ScanRequest) -> impl Future<Output = Result<ScanPage>> + 'static {
        let _ = request;
        async { todo!() }
    }
    /// Flushes the memtable to a segment.
    pub fn flush(&self) -> impl Future<Output = Result<()>> + 'static {
        async { todo!() }
    }
    /// Compacts every segment into one sorted run.
    pub fn compact(&self) -> impl Future<Output = Result<()>> + 'static {
        async { todo!() }
    }
    /// Current counters.
    pub fn stats(&self) -> impl Future<Output = Result<Stats>> + 'static {
        async { todo!() }
    }
    /// Syncs and stops the database's actors.
    pub fn close(&self) -> impl Future<Output = Result<()>> + 'static {
        async { todo!() }
    }
}
