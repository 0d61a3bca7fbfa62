//! The database: [`Db`], the handle a program embeds, and the actors behind it.
//!
//! - `memtable`: the memtable actor (active memtable + WAL, group commit).
//! - `segments`: the segment manager actor (segment set + manifest, flushes).
//! - `compactor`: the compactor actor; `compaction` is its pure policy.
//! - `read_pool`: threads that read segments for gets and scans.
//! - `recovery`: what `Db::open` does before the actors start.
//! - `range_delete`: range tombstones (`Db::delete_range`): how reads,
//!   flushes and compaction apply them and when they are retired.
//!
//! `docs/ARCHITECTURE.md` draws the actors, what each owns, the thread each
//! runs on and every message between them.
//!
//! Every request method enqueues its message when it is called, not when
//! the returned future is first polled: requests made one after another from
//! one task are applied in that order, even if their futures are awaited
//! together (a pipelining server relies on this). A read sees every write
//! whose future has completed.

mod batch;
mod check;
mod checkpoint;
mod compaction;
mod compactor;
mod expiry;
mod inventory;
mod memtable;
mod merge;
mod prefetch;
mod range_delete;
mod read_pool;
mod recovery;
mod repair;
mod replay;
mod scan;
mod segment;
mod segments;
mod stats;
mod version;
mod wal_identity;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::oneshot;

use crate::format::sstable::{BlockCache, BlockReads, is_would_block, key_hash};
use crate::format::wal::MAX_RECORD_BYTES;
use crate::fs::DirectoryLock;
use crate::{Error, Options, Result, SyncPolicy};
use batch::Requirement;
pub use batch::{Mutation, ReadVersion, Versioned, WriteBatch};
pub use check::{CheckReport, Finding, check_database};
pub use checkpoint::Checkpointed;
use compactor::{CloseCompactor, CompactAll, Compactor};
pub use expiry::Ttl;
use memtable::{
    Close, Completion, DirectWrites, ENTRY_OVERHEAD_BYTES, Flush, Gauges, MemTable, MemtableActor,
    MemtableStart, Outcome, ReadView, Submissions, Write,
};
use range_delete::RangeDelete;
use read_pool::{RangeScan, ReadWorker, SegmentGet};
pub use repair::{LOST_DIRECTORY, RepairReport, repair_database};
pub use scan::{ScanPage, ScanRequest};
use segments::{CloseSegments, Connect, SegmentManager, SegmentManagerStart};
use stats::Counters;
pub use stats::Stats;

/// The most mutations one write batch may hold. A batch is charged, against
/// [`MAX_RECORD_BYTES`], what it takes in the memtable: its keys and values
/// plus what the memtable spends on each entry. Without the per-entry
/// charge, 2.4 million deletes of a one-byte key (40 MB charged, 16 MiB on
/// the wire) took 600 MB in the memtable. The server refuses a request
/// with more before decoding it (`server::codec`).
pub const MAX_BATCH_MUTATIONS: usize = MAX_RECORD_BYTES / (ENTRY_OVERHEAD_BYTES + 1);

/// A cheap-to-clone handle on an open database.
///
/// Open it inside a running actix system; every clone talks to the same
/// actors. `close` syncs and stops them; dropping the last handle without
/// closing stops them too, and the WAL still holds every acknowledged write.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
    options: Arc<Options>,
    memtable: Addr<MemtableActor>,
    /// The memtable actor's write queue: writes the lane does not take.
    submissions: Arc<Submissions>,
    /// The lane for writes a caller applies itself (`memtable/direct.rs`).
    direct: Arc<DirectWrites>,
    segments: Addr<SegmentManager>,
    compactor: Addr<Compactor>,
    readers: Addr<ReadWorker>,
    /// Checked data blocks for point lookups, shared by every table.
    cache: Arc<BlockCache>,
    counters: Arc<Counters>,
    /// The memtable actor's latest [`ReadView`]; readers load it, no message.
    view: Arc<ArcSwap<ReadView>>,
    /// Set by `close`: reads, which need no actor, check it.
    closed: AtomicBool,
    arbiters: Vec<ArbiterHandle>,
    /// Set when the directory lock is dropped; `close` waits for it.
    released: Arc<LockReleased>,
}

impl Drop for DbInner {
    fn drop(&mut self) {
        self.submissions.disconnect();
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("directory", &self.inner.options.directory)
            .finish()
    }
}

/// Awaits an actor's answer; a dropped sender means the actor stopped.
async fn answer<T>(rx: oneshot::Receiver<Result<T>>) -> Result<T> {
    rx.await.unwrap_or(Err(Error::Closed))
}

/// Starts the actors over what recovery found. The memtable actor runs on
/// the caller's arbiter, so that an embedding program's requests reach it
/// without crossing threads; the segment manager and the compactor share a
/// background arbiter; segment reads go to a pool of threads.
fn start_actors(options: Arc<Options>, recovered: recovery::Recovered) -> DbInner {
    let counters = Arc::new(Counters::default());
    let released = Arc::new(LockReleased::default());
    let lock: Arc<dyn DirectoryLock> = Arc::new(SignallingLock {
        lock: Some(recovered.lock),
        released: released.clone(),
    });
    let segments_set = Arc::new(recovered.segments);
    let numbers = recovered.file_numbers;
    let background = Arbiter::new();
    let cache = Arc::new(BlockCache::new(
        options.block_cache_bytes,
        options.block_bytes,
    ));
    let manager_start = SegmentManagerStart {
        flush_cache: options.caches_flushed_blocks().then(|| cache.clone()),
        options: options.clone(),
        set: segments_set.clone(),
        flushed_seq: recovered.flushed_seq,
        oldest_live_wal: recovered.wal_number,
        file_numbers: numbers.clone(),
        counters: counters.clone(),
        lock: lock.clone(),
    };
    let segments = SegmentManager::start_in_arbiter(&background.handle(), move |_| {
        SegmentManager::new(manager_start)
    });
    let compactor = {
        let (o, n, c, s, l) = (
            options.clone(),
            numbers.clone(),
            counters.clone(),
            segments.clone(),
            lock.clone(),
        );
        // It starts from the recovered set, so a `compact` made before the
        // segment manager's first `SetChanged` sees every segment.
        let set = segments_set.clone();
        let warm_cache = options.cache_warm_merge_output.then(|| cache.clone());
        Compactor::start_in_arbiter(&background.handle(), move |_| {
            Compactor::new(o, n, c, s, l)
                .starting_from(set)
                .caching_warm_output(warm_cache)
        })
    };
    let view = Arc::new(ArcSwap::from_pointee(ReadView {
        segments: segments_set.clone(),
        ..ReadView::default()
    }));
    let submissions = Arc::new(Submissions::on_this_thread());
    // Recovery leaves everything it replayed in segments.
    let direct = Arc::new(
        DirectWrites::new(
            recovered.last_seq,
            options.memtable_freeze_bytes(),
            options.sync == SyncPolicy::Always,
        )
        .syncing_async_writers(options.inline_durable_writes),
    );
    let memtable = MemtableActor::new(MemtableStart {
        options: options.clone(),
        wal: recovered.wal,
        wal_number: recovered.wal_number,
        last_seq: recovered.last_seq,
        segments: segments_set,
        segment_manager: segments.clone(),
        file_numbers: numbers,
        counters: counters.clone(),
        lock,
        published: view.clone(),
        submissions: submissions.clone(),
        direct: direct.clone(),
    })
    .start();
    segments.do_send(Connect {
        memtable: memtable.clone(),
        compactor: compactor.clone(),
    });
    let for_readers = cache.clone();
    let readers = SyncArbiter::start(options.read_threads.max(1), move || ReadWorker {
        cache: for_readers.clone(),
    });
    let arbiters = vec![background.handle()];
    DbInner {
        options,
        memtable,
        submissions,
        direct,
        segments,
        compactor,
        readers,
        cache,
        counters,
        view,
        closed: AtomicBool::new(false),
        arbiters,
        released,
    }
}

/// A write's answer: known already (written directly, or refused), or to
/// come from the memtable actor.
enum Answer {
    Ready(Result<()>),
    Later(Completion),
}

impl DbInner {
    /// `key`'s answer if the memtables, the bloom filters, the block cache
    /// or the page cache give it; `None` if a block must come from the disk
    /// (or the view changed while it was being loaded). The view and the
    /// bound are loaded as [`DbInner::read_view`] loads them, without a
    /// handle on either.
    fn get_from_memory(&self, key: &[u8], now_ms: Option<u64>) -> Option<Result<Versioned>> {
        let view = self.view.load();
        let read_at = self.direct.published();
        if !Arc::ptr_eq(&view, &self.view.load()) {
            return None;
        }
        let in_memtables = view.active.get_at(key, read_at).or_else(|| {
            let mut frozen = view.frozen.iter();
            frozen.find_map(|frozen| frozen.table.get(key))
        });
        let entry = match in_memtables {
            Some(entry) => Some(entry),
            None => match view
                .segments
                .lookup_if_cached(key, key_hash(key), &self.cache)
            {
                Err(error) => return Some(Err(error)),
                Ok(None) => return None,
                Ok(Some((lookup, filtered_out))) => {
                    self.count_lookup(filtered_out, lookup.false_positives);
                    let found = u64::from(lookup.entry.is_some());
                    self.count_segment_checks(filtered_out + lookup.false_positives + found);
                    lookup.entry
                }
            },
        };
        Counters::add(&self.counters.gets, 1);
        Some(Ok(versioned(self, &view, read_at, entry, now_ms)))
    }

    /// [`DbInner::get_from_memory`] for each of `keys` at once, from one
    /// view and one bound, their reads overlapped (`prefetch::read_many`):
    /// `answer` gets each key's index and answer, for the keys memory
    /// answers. False if the view changed while it was being loaded.
    fn get_many_from_memory(
        &self,
        keys: &[&[u8]],
        answer: &mut dyn FnMut(usize, Result<Versioned>),
    ) -> bool {
        let view = self.view.load();
        let read_at = self.direct.published();
        if !Arc::ptr_eq(&view, &self.view.load()) {
            return false;
        }
        self.read_many_at(&view, read_at, keys, answer);
        true
    }

    /// [`DbInner::get_many_from_memory`] at a moment already taken: `view`
    /// read at `read_at`.
    fn read_many_at(
        &self,
        view: &ReadView,
        read_at: u64,
        keys: &[&[u8]],
        answer: &mut dyn FnMut(usize, Result<Versioned>),
    ) {
        let frozen = view.frozen.iter().map(|f| &f.table);
        let memtables: Vec<&MemTable> = std::iter::once(&view.active).chain(frozen).collect();
        let reads = prefetch::read_many(&memtables, read_at, &view.segments, &self.cache, keys);
        for (at, read) in reads.enumerate() {
            let Some(read) = read else { continue };
            answer(
                at,
                read.map(|read| {
                    self.count_lookup(read.ruled_out, read.false_positives);
                    let found = u64::from(read.entry.is_some());
                    self.count_segment_checks(read.ruled_out + read.false_positives + found);
                    Counters::add(&self.counters.gets, 1);
                    versioned(self, view, read_at, read.entry, None)
                }),
            );
        }
    }

    /// Counts a segment lookup's bloom filter hits and false positives
    /// (nothing when both are 0: every count is a shared cache line).
    fn count_lookup(&self, filtered_out: u64, false_positives: u64) {
        if filtered_out != 0 {
            Counters::add(&self.counters.bloom_filter_hits, filtered_out);
        }
        if false_positives != 0 {
            Counters::add(&self.counters.bloom_filter_false_positives, false_positives);
        }
    }

    /// Counts the segments a get checked beyond its first (nothing for one:
    /// the count is a shared cache line).
    fn count_segment_checks(&self, checked: u64) {
        if checked > 1 {
            Counters::add(&self.counters.extra_segment_checks, checked - 1);
        }
    }

    /// The view a read uses, and the bound for its active memtable: every
    /// write up to it is visible, none after it in that memtable.
    ///
    /// The view is loaded before the bound and checked unchanged after it:
    /// a write is published only after the view holding its memtable was
    /// stored, so every write up to the bound is in this view. (A range
    /// delete may show before the bound passes it: the actor stores its
    /// view first. The bound then understates what the read sees, which is
    /// the safe side for the conditional writes that compare with it.)
    fn read_view(&self) -> (Arc<ReadView>, u64) {
        loop {
            let view = self.view.load_full();
            let read_at = self.direct.published();
            if Arc::ptr_eq(&view, &self.view.load()) {
                return (view, read_at);
            }
        }
    }
}

/// Set once the directory lock is dropped: the last actor or blocking job
/// holding a clone of it has finished.
#[derive(Default)]
struct LockReleased {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl LockReleased {
    /// Returns once the lock is released (on any executor: no timer).
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// The directory lock the actors and their blocking jobs share; dropping
/// the last clone unlocks the directory and then tells `close`.
#[derive(Debug)]
struct SignallingLock {
    lock: Option<Box<dyn DirectoryLock>>,
    released: Arc<LockReleased>,
}

impl DirectoryLock for SignallingLock {}

impl Drop for SignallingLock {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.released.done.store(true, Ordering::Release);
        self.released.notify.notify_waiters();
    }
}

impl std::fmt::Debug for LockReleased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockReleased")
            .field("done", &self.done.load(Ordering::Relaxed))
            .finish()
    }
}

/// Scan pages of at most this many entries may be read on the caller's
/// thread (when their blocks are in memory); longer ones always go to the
/// read pool, so that a caller's thread (a session's, an actor's) is never
/// held for long.
const INLINE_SCAN_ENTRIES: usize = 256;

/// Whether a scan page is short enough to read on the caller's thread.
fn is_short(request: &ScanRequest) -> bool {
    (1..=INLINE_SCAN_ENTRIES).contains(&request.limit)
}

/// Gets at one moment ([`Db::point_in_time`]).
pub struct PointInTime {
    db: Db,
    view: (Arc<ReadView>, u64),
}

impl PointInTime {
    /// The value of `key` as of the moment, `None` if absent.
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn get(&self, key: impl Into<Bytes>) -> impl Future<Output = Result<Option<Bytes>>> {
        let key = key.into();
        let checked = self.db.check_key(&key).and_then(|()| self.db.check_open());
        let inner = self.db.inner.clone();
        let (view, read_at) = (self.view.0.clone(), self.view.1);
        async move {
            checked?;
            tokio::task::coop::consume_budget().await;
            Counters::add(&inner.counters.gets, 1);
            let entry = newest_version(&inner, &view, read_at, key).await?;
            Ok(versioned(&inner, &view, read_at, entry, None).value)
        }
    }

    /// The values of `keys` that memory holds as of the moment, read
    /// together, as [`Db::get_many_now`] reads them at its call: `answer`
    /// gets a key's index and what [`PointInTime::get`] of it would return.
    /// Keys whose read would wait for the disk, keys `get` would refuse,
    /// and every key once the database is closed, are not answered.
    pub fn get_many_now(
        &self,
        keys: &[&[u8]],
        mut answer: impl FnMut(usize, Result<Option<Bytes>>),
    ) {
        if self.db.check_open().is_err() {
            return;
        }
        let (view, read_at) = (&self.view.0, self.view.1);
        self.db
            .inner
            .read_many_at(view, read_at, keys, &mut |at, read| {
                if keys
                    .get(at)
                    .is_some_and(|key| self.db.check_key(key).is_ok())
                {
                    answer(at, read.map(|versioned| versioned.value));
                }
            });
    }
}

/// A get's answer read as [`newest_version`] reads it: the path of a get
/// [`DbInner::get_from_memory`] could not answer.
async fn read_from_segments(
    inner: Arc<DbInner>,
    (view, read_at): (Arc<ReadView>, u64),
    key: Bytes,
    now_ms: Option<u64>,
) -> Result<Versioned> {
    Counters::add(&inner.counters.gets, 1);
    let entry = newest_version(&inner, &view, read_at, key).await?;
    Ok(versioned(&inner, &view, read_at, entry, now_ms))
}

/// How a get is answered: already, or by a read that may wait for the disk.
enum GetPath {
    Answered(Result<Versioned>),
    Read {
        inner: Arc<DbInner>,
        view: (Arc<ReadView>, u64),
        key: Bytes,
    },
}

/// What a get returns for `entry`, the newest version found at `read_at`:
/// nothing if a range delete covers it or it has expired (judged at
/// `now_ms`, else the clock's now, read only for a value that can expire).
fn versioned(
    inner: &DbInner,
    view: &ReadView,
    read_at: u64,
    entry: Option<crate::format::Entry>,
    now_ms: Option<u64>,
) -> Versioned {
    // A range delete over the value found is its newest change (deleting a
    // deleted key changes nothing).
    let deleted_at = entry
        .as_ref()
        .filter(|e| e.value.is_some())
        .and_then(|e| range_delete::deleted_at(view, e));
    let entry = entry.filter(|_| deleted_at.is_none());
    let seq = deleted_at.or(entry.as_ref().map(|e| e.seq)).unwrap_or(0);
    let expire_at_ms = entry.as_ref().map_or(0, |e| e.expire_at_ms);
    let value = match expire_at_ms {
        0 => entry.and_then(|e| e.value),
        _ => {
            let now_ms = now_ms.unwrap_or_else(|| inner.options.clock.now_ms());
            entry.and_then(|e| e.live_value(now_ms))
        }
    };
    Versioned {
        version: ReadVersion { seq, read_at },
        expire_at_ms: if value.is_some() { expire_at_ms } else { 0 },
        value,
    }
}

/// The newest version of `key` in `view` (a tombstone included), looking in
/// the memtables first, then in the segments the bloom filters let through.
async fn newest_version(
    inner: &DbInner,
    view: &ReadView,
    read_at: u64,
    key: Bytes,
) -> Result<Option<crate::format::Entry>> {
    if let Some(entry) = view.active.get_at(&key, read_at) {
        return Ok(Some(entry));
    }
    for frozen in &view.frozen {
        if let Some(entry) = frozen.table.get(&key) {
            return Ok(Some(entry));
        }
    }
    // Bloom filters are in memory: a key no segment may hold is answered
    // here, without a trip to the read pool.
    let (candidates, filtered_out) = view.segments.candidates(&key);
    inner.count_lookup(filtered_out, 0);
    if candidates.is_empty() {
        inner.count_segment_checks(filtered_out);
        return Ok(None);
    }
    // A block in the block cache or the page cache (RWF_NOWAIT) is read
    // here; only one that would wait for the disk goes to the read pool, so
    // no caller's thread ever blocks on a disk read.
    let lookup = match version::lookup_if_cached(&candidates, &key, &inner.cache)? {
        Some(lookup) => lookup,
        None => inner
            .readers
            .send(SegmentGet { candidates, key })
            .await
            .map_err(|_| Error::Closed)??,
    };
    inner.count_lookup(0, lookup.false_positives);
    let found = u64::from(lookup.entry.is_some());
    inner.count_segment_checks(filtered_out + lookup.false_positives + found);
    Ok(lookup.entry)
}

impl Db {
    /// Opens (creating if needed) the database in `options.directory`:
    /// recovers what the last run left and starts the actors.
    ///
    /// # Errors
    /// `Locked` if another process has it open, `Corruption` naming the file
    /// and offset if a file is damaged, `Io` if the directory is unusable,
    /// `InvalidArgument` if not called inside a running actix system.
    pub async fn open(options: Options) -> Result<Db> {
        if System::try_current().is_none() {
            return Err(Error::InvalidArgument(
                "Db::open must run inside an actix system".into(),
            ));
        }
        let options = Arc::new(options);
        let for_recovery = options.clone();
        let recovered = actix_rt::task::spawn_blocking(move || recovery::recover(&for_recovery))
            .await
            .map_err(|e| Error::io("recovery thread", std::io::Error::other(e.to_string())))??;
        Ok(Db {
            inner: Arc::new(start_actors(options, recovered)),
        })
    }

    /// Prefetches what gets of `keys` will read in memory, the loads of
    /// all the keys overlapping (see `engine/prefetch.rs`): a batch of gets
    /// made right after runs faster. A hint: it reads no file, changes
    /// nothing and answers nothing.
    pub fn prefetch_gets(&self, keys: &[&[u8]]) {
        let view = self.inner.view.load();
        let frozen = view.frozen.iter().map(|f| &f.table);
        let memtables: Vec<&MemTable> = std::iter::once(&view.active).chain(frozen).collect();
        prefetch::prefetch_gets(&memtables, &view.segments, &self.inner.cache, keys);
    }

    /// The values of `keys` that memory holds, read together: `answer`
    /// gets a key's index in `keys` and what [`Db::get`] of it would
    /// return, all from one moment (every write whose future completed
    /// before the call, none made after it), the keys' memory loads
    /// overlapped (`engine/prefetch.rs`). Keys whose read would wait for
    /// the disk, keys `get` would refuse (its error comes from `get`), and
    /// every key once the database is closed, are not answered.
    pub fn get_many_now(
        &self,
        keys: &[&[u8]],
        mut answer: impl FnMut(usize, Result<Option<Bytes>>),
    ) {
        if self.check_open().is_err() {
            return;
        }
        self.inner.get_many_from_memory(keys, &mut |at, read| {
            if keys.get(at).is_some_and(|key| self.check_key(key).is_ok()) {
                answer(at, read.map(|versioned| versioned.value));
            }
        });
    }

    /// The value of `key`, `None` if absent. Sees every write whose future
    /// has completed.
    pub fn get(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Option<Bytes>>> + 'static {
        // A combinator, not an `async` block: the block would hold the
        // inner future twice (captured, then awaited) and pass 1 KiB, where
        // glibc's allocator sorts every fastbin before each allocation.
        self.get_versioned(key)
            .map(|versioned| versioned.map(|versioned| versioned.value))
    }

    /// Reads that all see the database as of this call: every write whose
    /// future completed before it, and none made after it (Redis's MGET is
    /// atomic, and reads one key after another with this). It holds that
    /// moment's memtables and segments until dropped.
    pub fn point_in_time(&self) -> PointInTime {
        PointInTime {
            db: self.clone(),
            view: self.inner.read_view(),
        }
    }

    /// The value of `key` with the version a conditional write names
    /// ([`WriteBatch::require_unchanged`]): read, compute, write
    /// conditionally, and retry on [`Error::Conflict`].
    pub fn get_versioned(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Versioned>> + 'static {
        self.get_versioned_at(key, None)
    }

    /// As [`Db::get_versioned`], with expiries judged at `now_ms` (Unix
    /// milliseconds) instead of the clock's now when given: a cluster's
    /// apply judges them at the time its log entry carries.
    pub fn get_versioned_at(
        &self,
        key: impl Into<Bytes>,
        now_ms: Option<u64>,
    ) -> impl Future<Output = Result<Versioned>> + 'static {
        let key = key.into();
        let checked = self.check_key(&key).and_then(|()| self.check_open());
        // Most gets are answered from memory right here, with no handle
        // taken on the database or its view (each such handle is a shared
        // reference count, bounced between the cores of every reader).
        let path = match checked {
            Err(error) => GetPath::Answered(Err(error)),
            Ok(()) => match self.inner.get_from_memory(&key, now_ms) {
                Some(answer) => GetPath::Answered(answer),
                None => GetPath::Read {
                    inner: self.inner.clone(),
                    view: self.inner.read_view(),
                    key,
                },
            },
        };
        async move {
            // Answered from memory, a get never waits: it lets the other
            // tasks of its thread run now and then (tokio's cooperative
            // budget).
            tokio::task::coop::consume_budget().await;
            match path {
                GetPath::Answered(answer) => answer,
                // Boxed: the read that may wait for the disk is the rare
                // path, and inline its state made every get's future 650
                // bytes long.
                GetPath::Read { inner, view, key } => {
                    Box::pin(read_from_segments(inner, view, key, now_ms)).await
                }
            }
        }
    }

    /// Every write up to this sequence number is visible to a read made now;
    /// a write acknowledged later has a higher one. (Redis's WATCH records
    /// it, and a key whose newest version is newer has changed since.)
    pub fn visible_seq(&self) -> u64 {
        self.inner.direct.published()
    }

    /// Sets `key` to `value`. Answered once durable under the sync policy.
    ///
    /// # Errors
    /// `KeyTooLarge`, `ValueTooLarge`, `InvalidArgument` (empty key), `Io`
    /// if the WAL cannot be written (then every later write fails until the
    /// database is reopened), `Closed`.
    pub fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> impl Future<Output = Result<()>> + 'static {
        self.submit(vec![Mutation::new(key.into(), Some(value.into()))])
    }

    /// Removes `key`; removing an absent key succeeds.
    pub fn delete(&self, key: impl Into<Bytes>) -> impl Future<Output = Result<()>> + 'static {
        self.submit(vec![Mutation::new(key.into(), None)])
    }

    /// Removes every key in `[start, end)` with one write, whatever the
    /// number of keys; an empty `end` means to the end of the key space.
    /// Later writes to keys in the range are kept. The space comes back by
    /// compaction, which starts soon after (see `engine/range_delete.rs`).
    ///
    /// # Errors
    /// `InvalidArgument` if `end` is not empty and not after `start`;
    /// `KeyTooLarge`; otherwise as [`Db::put`].
    pub fn delete_range(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
    ) -> impl Future<Output = Result<()>> + 'static {
        self.submit_all(Vec::new(), Vec::new(), vec![(start.into(), end.into())])
    }

    /// Applies a batch atomically: after a crash either all of it is there
    /// or none. An empty batch succeeds at once.
    pub fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<()>> + 'static {
        self.submit_all(batch.mutations, batch.requirements, batch.range_deletes)
    }

    fn submit(&self, mutations: Vec<Mutation>) -> impl Future<Output = Result<()>> + 'static {
        self.submit_all(mutations, Vec::new(), Vec::new())
    }

    fn submit_all(
        &self,
        mutations: Vec<Mutation>,
        requirements: Vec<Requirement>,
        range_deletes: Vec<RangeDelete>,
    ) -> impl Future<Output = Result<()>> + 'static {
        let answer = self.write_now(mutations, requirements, range_deletes);
        async move {
            match answer {
                Answer::Ready(result) => {
                    // A task that writes in a loop must still let the other
                    // tasks of its thread run (tokio's cooperative budget).
                    tokio::task::coop::consume_budget().await;
                    result
                }
                Answer::Later(done) => done.await,
            }
        }
    }

    /// Writes on this thread through the lane if it is open (a plain
    /// write, see `memtable/direct.rs`), or queues the write for the
    /// memtable actor. Either way the order among a caller's writes is the
    /// order of these calls.
    fn write_now(
        &self,
        mutations: Vec<Mutation>,
        requirements: Vec<Requirement>,
        range_deletes: Vec<RangeDelete>,
    ) -> Answer {
        let checked = self
            .check_mutations(&mutations)
            .and_then(|()| self.check_range_deletes(&range_deletes));
        if let Err(error) = checked {
            return Answer::Ready(Err(error));
        }
        if mutations.is_empty() && range_deletes.is_empty() {
            return Answer::Ready(Ok(()));
        }
        let inner = &*self.inner;
        let mutations = match requirements.is_empty() && range_deletes.is_empty() {
            true => match inner.direct.write(mutations, &inner.counters) {
                Outcome::Done(result) => return Answer::Ready(result),
                Outcome::Queue(mutations) => mutations,
            },
            false => mutations,
        };
        let (reply, rx) = oneshot::channel();
        let remote = !inner.submissions.is_local();
        inner.direct.queueing();
        inner.submissions.submit(Write {
            mutations,
            requirements,
            range_deletes,
            reply,
            remote,
        });
        // A durable write waits for an fdatasync: not worth spinning for.
        let spin = remote && inner.options.writers_spin && inner.options.sync != SyncPolicy::Always;
        Answer::Later(Completion::new(rx, spin))
    }

    /// The longest key a request may name ([`Options::max_key_bytes`]).
    pub fn max_key_bytes(&self) -> usize {
        self.inner.options.max_key_bytes
    }

    /// Whether a put of `key` and `value` is within the limits (the error
    /// it would get if not): lets a caller gather puts into one batch
    /// without one refused put refusing the batch.
    pub fn check_put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        let limit = self.inner.options.max_value_bytes;
        match value.len() > limit {
            true => Err(Error::ValueTooLarge {
                len: value.len(),
                limit,
            }),
            false => Ok(()),
        }
    }

    fn check_open(&self) -> Result<()> {
        match self.inner.closed.load(Ordering::Acquire) {
            true => Err(Error::Closed),
            false => Ok(()),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let limit = self.inner.options.max_key_bytes;
        if key.is_empty() {
            return Err(Error::empty_key());
        }
        if key.len() > limit {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                limit,
            });
        }
        Ok(())
    }

    fn check_mutations(&self, mutations: &[Mutation]) -> Result<()> {
        let limit = self.inner.options.max_value_bytes;
        let mut total = 0usize;
        for Mutation { key, value, .. } in mutations {
            self.check_key(key)?;
            let len = value.as_ref().map_or(0, Bytes::len);
            if len > limit {
                return Err(Error::ValueTooLarge { len, limit });
            }
            total += key.len() + len + ENTRY_OVERHEAD_BYTES;
        }
        if total > MAX_RECORD_BYTES {
            return Err(Error::InvalidArgument(format!(
                "batch of {} mutations takes {total} bytes in memory (keys, values and \
                 {ENTRY_OVERHEAD_BYTES} bytes per mutation), more than one batch may \
                 ({MAX_RECORD_BYTES}); split it",
                mutations.len()
            )));
        }
        Ok(())
    }

    fn check_range_deletes(&self, ranges: &[RangeDelete]) -> Result<()> {
        let limit = self.inner.options.max_key_bytes;
        for (start, end) in ranges {
            for bound in [start, end] {
                if bound.len() > limit {
                    let len = bound.len();
                    return Err(Error::KeyTooLarge { len, limit });
                }
            }
            if !end.is_empty() && end <= start {
                return Err(Error::InvalidArgument(
                    "a range delete's end must be after its start".into(),
                ));
            }
        }
        Ok(())
    }

    /// Reads one page of a range; see [`ScanRequest`] and
    /// [`ScanPage::continuation`]. A page reflects one point in time.
    pub fn scan(&self, request: ScanRequest) -> impl Future<Output = Result<ScanPage>> + 'static {
        let (view, read_at) = self.inner.read_view();
        let readers = self.inner.readers.clone();
        let open = self.check_open();
        let now_ms = self.inner.options.clock.now_ms();
        let cache = self.inner.cache.clone();
        let counters = self.inner.counters.clone();
        Counters::add(&counters.scans, 1);
        async move {
            open?;
            // A short page whose blocks are all in memory (the block cache
            // or the page cache) is read here, as a point lookup is; one
            // that would wait for the disk is read again by the read pool.
            if is_short(&request) {
                let reads = BlockReads {
                    cache: Some(cache),
                    wait_for_disk: false,
                };
                match read_pool::scan_page(&view, read_at, &request, now_ms, &reads) {
                    Err(e) if is_would_block(&e) => Counters::add(&counters.scans_on_read_pool, 1),
                    page => return page,
                }
            }
            readers
                .send(RangeScan {
                    view,
                    read_at,
                    request,
                    now_ms,
                })
                .await
                .map_err(|_| Error::Closed)?
        }
    }

    /// Freezes the memtable and waits until everything written before is in
    /// segments.
    pub fn flush(&self) -> impl Future<Output = Result<()>> + 'static {
        let (reply, rx) = oneshot::channel();
        self.inner.memtable.do_send(Flush { reply });
        answer(rx)
    }

    /// Flushes, then merges every segment into one sorted run, dropping
    /// overwritten versions, tombstones and expired entries.
    pub fn compact(&self) -> impl Future<Output = Result<()>> + 'static {
        let flushed = self.flush();
        let compactor = self.inner.compactor.clone();
        async move {
            flushed.await?;
            let (reply, rx) = oneshot::channel();
            compactor.do_send(CompactAll { reply });
            answer(rx).await
        }
    }

    /// Current counters and gauges.
    pub fn stats(&self) -> impl Future<Output = Result<Stats>> + 'static {
        let (reply, rx) = oneshot::channel();
        self.inner.memtable.do_send(Gauges { reply });
        let counters = self.inner.counters.clone();
        let cache = self.inner.cache.clone();
        let options = self.inner.options.clone();
        async move {
            let gauges = rx.await.map_err(|_| Error::Closed)?;
            let mut map = counters.snapshot();
            let debt = compaction::debt_bytes(&gauges.segments.meta_levels(), &options);
            map.insert("compaction_debt_bytes".into(), debt);
            let segments = &gauges.segments;
            map.insert("memtable_bytes".into(), gauges.memtable_bytes);
            map.insert("frozen_memtables".into(), gauges.frozen_memtables);
            map.insert("live_segments".into(), segments.all().count() as u64);
            map.insert("segment_bytes".into(), segments.total_bytes());
            map.insert(
                "bytes_on_disk".into(),
                segments.total_bytes() + gauges.wal_bytes,
            );
            map.insert("last_sequence".into(), gauges.last_seq);
            let cache = cache.stats();
            map.insert("block_cache_hits".into(), cache.hits);
            map.insert("block_cache_misses".into(), cache.misses);
            map.insert("block_cache_bytes".into(), cache.bytes);
            for (level, run) in segments.levels.iter().enumerate() {
                map.insert(format!("level_{level}_segments"), run.len() as u64);
            }
            Ok(Stats { counters: map })
        }
    }

    /// Finishes accepted writes, syncs the WAL, stops the actors and releases
    /// the directory: once it returns, another process (or `Db::open`) can
    /// open it. It waits for blocking jobs still running (a compaction's
    /// merge, say), which hold the directory until they end. Later calls on
    /// any clone fail with `Closed`.
    pub fn close(&self) -> impl Future<Output = Result<()>> + 'static {
        let inner = self.inner.clone();
        async move {
            inner.closed.store(true, Ordering::Release);
            let (reply, rx) = oneshot::channel();
            inner.compactor.do_send(CloseCompactor { reply });
            let _ = rx.await;
            let (reply, rx) = oneshot::channel();
            inner.memtable.do_send(Close { reply });
            let synced = answer(rx).await;
            // Every acknowledged write is in the WAL, synced: the last
            // manifest may say up to where (see `CloseSegments`).
            let clean_at_seq = synced.as_ref().ok().copied().flatten();
            let (reply, rx) = oneshot::channel();
            inner.segments.do_send(CloseSegments {
                reply,
                clean_at_seq,
            });
            let _ = rx.await;
            for arbiter in &inner.arbiters {
                arbiter.stop();
            }
            inner.released.wait().await;
            match synced {
                Err(Error::Closed) => Ok(()),
                other => other.map(|_| ()),
            }
        }
    }
}
