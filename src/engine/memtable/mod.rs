//! The memtable actor: owns the active memtable and the WAL that guards it.
//!
//! Writes are grouped: while one group is being written and fdatasynced on a
//! blocking thread, new writes wait in `pending`; when the sync returns they
//! all go out as the next group and share one sync (group commit). A write
//! is applied to the memtable, and so becomes visible to readers, only once
//! it is durable under the sync policy; then its writer is answered.
//!
//! When the memtable passes `memtable_bytes` it is frozen (behind an `Arc`),
//! a new WAL is started, and the frozen table goes to the segment manager to
//! be flushed. Readers get the frozen tables and the segment set as one
//! immutable [`ReadView`], swapped whole when a flush lands, so that a read
//! never sees a table both gone from memory and not yet in a segment.

mod table;

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::oneshot;

pub use table::{FrozenMemtable, MemTable};

use super::segment::FileNumbers;
use super::segments::{FlushMemtable, SegmentManager};
use super::stats::Counters;
use super::version::SegmentSet;
use crate::error::IoContext;
use crate::format::wal::WalWriter;
use crate::format::{Entry, KeyRange, wal_file_name};
use crate::fs::DirectoryLock;
use crate::proto::storage::{WalBatch, WalMutation};
use crate::{Error, Options, Result, SyncPolicy};

/// What readers see below the active memtable: frozen memtables (newest
/// first) and the segment set, as of one moment.
#[derive(Debug, Default)]
pub struct ReadView {
    /// Memtables waiting to be flushed, newest first.
    pub frozen: Vec<Arc<FrozenMemtable>>,
    /// The live segments.
    pub segments: Arc<SegmentSet>,
}

/// One mutation: a value, or `None` for a delete.
pub type Mutation = (Bytes, Option<Bytes>);

/// Applies mutations atomically. Answered once durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Write {
    pub mutations: Vec<Mutation>,
    pub reply: oneshot::Sender<Result<()>>,
}

/// The answer to [`Get`].
#[derive(Debug)]
pub enum GetOutcome {
    /// The active memtable decided it: the value, or `None` for a tombstone.
    Decided(Option<Bytes>),
    /// Not in the active memtable: look in this view.
    Miss(Arc<ReadView>),
}

/// Looks a key up in the active memtable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Get {
    pub key: Bytes,
    pub reply: oneshot::Sender<GetOutcome>,
}

/// The start of a scan: the active memtable's part, and the view for the rest.
#[derive(Debug)]
pub struct ScanStart {
    /// Entries of the active memtable in range, tombstones included, enough to
    /// decide the page (see [`ScanSnapshot`]).
    pub active: Vec<Entry>,
    /// Frozen memtables and segments as of the same moment.
    pub view: Arc<ReadView>,
}

/// Takes a consistent starting point for a scan.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ScanSnapshot {
    pub range: KeyRange,
    pub reverse: bool,
    /// Copy live entries until this many are taken (then one more, so the
    /// merge can tell whether more follow)...
    pub limit: usize,
    /// ...or until their keys and values reach this many bytes.
    pub max_bytes: usize,
    pub reply: oneshot::Sender<ScanStart>,
}

/// Freezes the memtable and answers once everything written before is in
/// segments.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush {
    pub reply: oneshot::Sender<Result<()>>,
}

/// From the segment manager: a frozen memtable is now in `segments`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushDone {
    pub wal_number: u64,
    pub segments: Arc<SegmentSet>,
}

/// From the segment manager: flushing failed (it will retry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushFailed {
    pub error: Error,
}

/// From the segment manager: the segment set changed (a compaction landed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SegmentsChanged(pub Arc<SegmentSet>);

/// Gauges only this actor knows, for `Db::stats`.
#[derive(Debug)]
pub struct MemtableGauges {
    pub memtable_bytes: u64,
    pub frozen_memtables: u64,
    pub view: Arc<ReadView>,
    pub last_seq: u64,
    /// Bytes in the active WAL.
    pub wal_bytes: u64,
}

/// Asks for [`MemtableGauges`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Gauges {
    pub reply: oneshot::Sender<MemtableGauges>,
}

/// Finishes accepted writes, syncs the WAL and stops the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub reply: oneshot::Sender<Result<()>>,
}

struct PendingWrite {
    mutations: Vec<Mutation>,
    reply: oneshot::Sender<Result<()>>,
}

/// What the actor starts from, as recovery left it.
pub struct MemtableStart {
    pub options: Arc<Options>,
    pub wal: WalWriter,
    pub wal_number: u64,
    pub last_seq: u64,
    pub segments: Arc<SegmentSet>,
    pub segment_manager: Addr<SegmentManager>,
    pub file_numbers: Arc<FileNumbers>,
    pub counters: Arc<Counters>,
    pub lock: Arc<dyn DirectoryLock>,
}

/// Owns the active memtable and the WAL. See the module doc.
pub struct MemtableActor {
    options: Arc<Options>,
    active: MemTable,
    /// `None` while a group is being written or synced on a blocking thread.
    wal: Option<WalWriter>,
    wal_number: u64,
    /// Bytes written to the WAL since its last sync (interval policy).
    wal_dirty: bool,
    last_seq: u64,
    pending: Vec<PendingWrite>,
    view: Arc<ReadView>,
    segment_manager: Addr<SegmentManager>,
    file_numbers: Arc<FileNumbers>,
    counters: Arc<Counters>,
    /// Set after a failed WAL write or sync: the WAL is not trusted again.
    poisoned: Option<Error>,
    /// Flush requests waiting for a freeze.
    flush_requests: Vec<oneshot::Sender<Result<()>>>,
    /// Flush requests waiting for WAL number `.0` to be flushed.
    flush_waiters: Vec<(u64, oneshot::Sender<Result<()>>)>,
    stalled_since: Option<Instant>,
    closing: Option<oneshot::Sender<Result<()>>>,
    /// Moved into each blocking WAL job, so the directory stays locked until
    /// the job ends even if the actor is gone.
    lock: Arc<dyn DirectoryLock>,
}

impl MemtableActor {
    /// An actor over an empty memtable and the fresh WAL recovery opened.
    pub fn new(start: MemtableStart) -> Self {
        MemtableActor {
            options: start.options,
            active: MemTable::default(),
            wal: Some(start.wal),
            wal_number: start.wal_number,
            wal_dirty: false,
            last_seq: start.last_seq,
            pending: Vec::new(),
            view: Arc::new(ReadView {
                frozen: Vec::new(),
                segments: start.segments,
            }),
            segment_manager: start.segment_manager,
            file_numbers: start.file_numbers,
            counters: start.counters,
            poisoned: None,
            flush_requests: Vec::new(),
            flush_waiters: Vec::new(),
            stalled_since: None,
            closing: None,
            lock: start.lock,
        }
    }

    /// Moves every piece of queued work forward as far as it can go now.
    fn make_progress(&mut self, ctx: &mut Context<Self>) {
        if self.wal.is_none() {
            return; // a group or sync is in flight; its completion calls back
        }
        if self.poisoned.is_some() {
            self.fail_pending();
        }
        self.serve_flush_requests();
        if self.active.approximate_bytes() >= self.options.memtable_bytes && self.can_freeze() {
            self.freeze();
        }
        if self.pending.is_empty() {
            self.end_stall();
            self.maybe_finish_close();
            return;
        }
        if self.must_stall() {
            self.begin_stall();
            return;
        }
        self.end_stall();
        self.write_group(ctx);
    }

    fn can_freeze(&self) -> bool {
        self.view.frozen.len() < self.options.max_frozen_memtables.max(1)
    }

    fn must_stall(&self) -> bool {
        if self.closing.is_some() {
            return false; // accepted writes finish; the next open flushes them
        }
        let memtable_full = self.active.approximate_bytes() >= self.options.memtable_bytes;
        let level0 = self.view.segments.level(0).len();
        memtable_full || level0 >= self.options.l0_stall_trigger
    }

    fn begin_stall(&mut self) {
        if self.stalled_since.is_none() {
            self.stalled_since = Some(Instant::now());
            Counters::add(&self.counters.write_stalls, 1);
            log::debug!("writes stalled: flushing or compaction is behind");
        }
    }

    fn end_stall(&mut self) {
        if let Some(since) = self.stalled_since.take() {
            let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
            Counters::add(&self.counters.write_stall_micros, micros);
        }
    }

    fn serve_flush_requests(&mut self) {
        if self.flush_requests.is_empty() {
            return;
        }
        if !self.active.is_empty() {
            if !self.can_freeze() {
                return;
            }
            self.freeze();
            if !self.active.is_empty() {
                // The freeze failed (no new WAL): nothing will be flushed.
                let error = self.refused().unwrap_or(Error::Closed);
                for request in std::mem::take(&mut self.flush_requests) {
                    let _ = request.send(Err(error.clone()));
                }
                return;
            }
        }
        let requests = std::mem::take(&mut self.flush_requests);
        match self.view.frozen.first().map(|f| f.wal_number) {
            Some(newest) => self
                .flush_waiters
                .extend(requests.into_iter().map(|r| (newest, r))),
            None => requests.into_iter().for_each(|r| {
                let _ = r.send(Ok(()));
            }),
        }
    }

    /// Freezes the active memtable and starts a new WAL for the next one.
    fn freeze(&mut self) {
        if self.active.is_empty() || self.poisoned.is_some() {
            return;
        }
        let number = self.file_numbers.allocate();
        let wal = match self.create_wal(number) {
            Ok(wal) => wal,
            Err(error) => {
                log::error!("cannot start a new WAL: {error}");
                self.poison(error);
                return;
            }
        };
        let old_number = std::mem::replace(&mut self.wal_number, number);
        self.wal = Some(wal);
        self.wal_dirty = false;
        let frozen = Arc::new(FrozenMemtable {
            table: std::mem::take(&mut self.active),
            wal_number: old_number,
            max_seq: self.last_seq,
        });
        let mut frozen_list = vec![frozen.clone()];
        frozen_list.extend(self.view.frozen.iter().cloned());
        self.view = Arc::new(ReadView {
            frozen: frozen_list,
            segments: self.view.segments.clone(),
        });
        self.segment_manager.do_send(FlushMemtable { frozen });
    }

    fn create_wal(&self, number: u64) -> Result<WalWriter> {
        let fs = &self.options.fs;
        let path = self.options.directory.join(wal_file_name(number));
        // A WAL written with sync=interval/none must reach the disk before
        // its successor takes over; with sync=always it already has.
        if let Some(wal) = self.wal.as_ref() {
            let _ = wal;
        }
        let file = fs
            .create(&path)
            .context(|| format!("creating WAL {}", path.display()))?;
        // IMPORTANT: the new WAL's directory entry must be durable before any
        // write in it is acknowledged; fdatasync of the file does not do that.
        fs.sync_dir(&self.options.directory)
            .context(|| format!("syncing directory {}", self.options.directory.display()))?;
        Ok(WalWriter::new(file, path))
    }

    fn poison(&mut self, error: Error) {
        self.poisoned.get_or_insert(error);
    }

    fn refused(&self) -> Option<Error> {
        if self.closing.is_some() {
            return Some(Error::Closed);
        }
        self.poisoned.as_ref().map(|e| {
            Error::io(
                "the WAL failed earlier; reopen the database",
                std::io::Error::other(e.to_string()),
            )
        })
    }

    /// Encodes the pending writes as one group and writes it out.
    fn write_group(&mut self, ctx: &mut Context<Self>) {
        let group = std::mem::take(&mut self.pending);
        let mut framed = Vec::new();
        let mut seqs = Vec::with_capacity(group.len());
        for write in &group {
            let first_seq = self.last_seq + 1;
            self.last_seq += write.mutations.len() as u64;
            seqs.push(first_seq);
            let record = encode_batch(first_seq, &write.mutations);
            WalWriter::encode_record(&record, &mut framed);
        }
        Counters::add(&self.counters.wal_bytes, framed.len() as u64);
        let Some(mut wal) = self.wal.take() else {
            return;
        };
        if self.options.sync != SyncPolicy::Always {
            let result = wal.append_encoded(&framed);
            self.wal = Some(wal);
            self.wal_dirty = true;
            self.finish_group(result, group, seqs, false, ctx);
            return;
        }
        let lock = self.lock.clone();
        let job = actix_rt::task::spawn_blocking(move || {
            let _lock = lock;
            let result = wal.append_encoded(&framed).and_then(|()| wal.sync());
            (wal, result)
        });
        let fut = job
            .into_actor(self)
            .map(move |joined, act, ctx| match joined {
                Ok((wal, result)) => {
                    act.wal = Some(wal);
                    act.finish_group(result, group, seqs, true, ctx);
                }
                Err(join_error) => {
                    let error = Error::io(
                        "WAL writer thread",
                        std::io::Error::other(join_error.to_string()),
                    );
                    act.poison(error.clone());
                    act.fail_group(group, &error);
                }
            });
        ctx.spawn(fut);
    }

    fn finish_group(
        &mut self,
        result: Result<()>,
        group: Vec<PendingWrite>,
        seqs: Vec<u64>,
        synced: bool,
        ctx: &mut Context<Self>,
    ) {
        if let Err(error) = result {
            log::error!("WAL write failed, refusing writes until reopen: {error}");
            self.poison(error.clone());
            self.fail_group(group, &error);
            self.fail_pending();
            self.make_progress(ctx);
            return;
        }
        let requests = group.len() as u64;
        if synced {
            Counters::add(&self.counters.wal_syncs, 1);
            Counters::add(&self.counters.wal_synced_requests, requests);
        }
        Counters::add(&self.counters.write_requests, requests);
        for (write, first_seq) in group.into_iter().zip(seqs) {
            Counters::add(&self.counters.writes, write.mutations.len() as u64);
            for (offset, (key, value)) in write.mutations.into_iter().enumerate() {
                self.active.apply(key, first_seq + offset as u64, value);
            }
            let _ = write.reply.send(Ok(()));
        }
        self.make_progress(ctx);
    }

    fn fail_group(&self, group: Vec<PendingWrite>, error: &Error) {
        for write in group {
            let _ = write.reply.send(Err(error.clone()));
        }
    }

    fn fail_pending(&mut self) {
        if let Some(error) = self.refused() {
            let pending = std::mem::take(&mut self.pending);
            self.fail_group(pending, &error);
        }
    }

    fn sync_now(&mut self, ctx: &mut Context<Self>) {
        if !self.wal_dirty || self.poisoned.is_some() {
            return;
        }
        let Some(mut wal) = self.wal.take() else {
            return;
        };
        self.wal_dirty = false;
        let lock = self.lock.clone();
        let job = actix_rt::task::spawn_blocking(move || {
            let _lock = lock;
            let result = wal.sync();
            (wal, result)
        });
        let fut = job.into_actor(self).map(|joined, act, ctx| {
            match joined {
                Ok((wal, result)) => {
                    act.wal = Some(wal);
                    match result {
                        Ok(()) => Counters::add(&act.counters.wal_syncs, 1),
                        Err(error) => {
                            log::error!("WAL sync failed, refusing writes until reopen: {error}");
                            act.poison(error);
                        }
                    }
                }
                Err(join_error) => act.poison(Error::io(
                    "WAL sync thread",
                    std::io::Error::other(join_error.to_string()),
                )),
            }
            act.make_progress(ctx);
        });
        ctx.spawn(fut);
    }

    fn maybe_finish_close(&mut self) {
        if self.closing.is_none() || !self.pending.is_empty() {
            return;
        }
        let mut result = Ok(());
        if let Some(wal) = self.wal.as_mut()
            && self.wal_dirty
            && self.poisoned.is_none()
        {
            result = wal.sync();
        }
        if let Some(reply) = self.closing.take() {
            let _ = reply.send(result);
        }
    }
}

/// The WAL record of one write request.
fn encode_batch(first_seq: u64, mutations: &[Mutation]) -> Vec<u8> {
    let mutations = mutations
        .iter()
        .map(|(key, value)| WalMutation {
            key: key.clone(),
            delete: value.is_none(),
            value: value.clone().unwrap_or_default(),
        })
        .collect();
    WalBatch {
        first_seq,
        mutations,
    }
    .encode_to_vec()
}

/// Copies the active memtable's share of a scan.
fn copy_for_scan(table: &MemTable, msg: &ScanSnapshot) -> Vec<Entry> {
    let mut copied = Vec::new();
    let (mut live, mut bytes) = (0usize, 0usize);
    let limit = if msg.limit == 0 {
        usize::MAX
    } else {
        msg.limit
    };
    for entry in table.range(&msg.range, msg.reverse) {
        let done = live > limit || bytes >= msg.max_bytes && live > 0;
        if done && entry.value.is_some() {
            // one live entry past the page tells the merge that more follow
            copied.push(entry);
            break;
        }
        if let Some(value) = &entry.value {
            live += 1;
            bytes += entry.key.len() + value.len();
        }
        copied.push(entry);
    }
    copied
}

impl Actor for MemtableActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let SyncPolicy::Interval(every) = self.options.sync {
            ctx.run_interval(every, |act, ctx| act.sync_now(ctx));
        }
    }
}

impl Handler<Write> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Write, ctx: &mut Context<Self>) {
        if let Some(error) = self.refused() {
            let _ = msg.reply.send(Err(error));
            return;
        }
        self.pending.push(PendingWrite {
            mutations: msg.mutations,
            reply: msg.reply,
        });
        self.make_progress(ctx);
    }
}

impl Handler<Get> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Get, _: &mut Context<Self>) {
        Counters::add(&self.counters.gets, 1);
        let outcome = match self.active.get(&msg.key) {
            Some(entry) => GetOutcome::Decided(entry.value),
            None => GetOutcome::Miss(self.view.clone()),
        };
        let _ = msg.reply.send(outcome);
    }
}

impl Handler<ScanSnapshot> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: ScanSnapshot, _: &mut Context<Self>) {
        Counters::add(&self.counters.scans, 1);
        let active = copy_for_scan(&self.active, &msg);
        let _ = msg.reply.send(ScanStart {
            active,
            view: self.view.clone(),
        });
    }
}

impl Handler<Flush> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Flush, ctx: &mut Context<Self>) {
        if let Some(error) = self.refused() {
            let _ = msg.reply.send(Err(error));
            return;
        }
        self.flush_requests.push(msg.reply);
        self.make_progress(ctx);
    }
}

impl Handler<FlushDone> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: FlushDone, ctx: &mut Context<Self>) {
        let frozen = self
            .view
            .frozen
            .iter()
            .filter(|f| f.wal_number != msg.wal_number)
            .cloned()
            .collect();
        self.view = Arc::new(ReadView {
            frozen,
            segments: msg.segments,
        });
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flush_waiters)
            .into_iter()
            .partition(|(n, _)| *n <= msg.wal_number);
        self.flush_waiters = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
        self.make_progress(ctx);
    }
}

impl Handler<FlushFailed> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: FlushFailed, _: &mut Context<Self>) {
        for (_, reply) in std::mem::take(&mut self.flush_waiters) {
            let _ = reply.send(Err(msg.error.clone()));
        }
    }
}

impl Handler<SegmentsChanged> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: SegmentsChanged, ctx: &mut Context<Self>) {
        self.view = Arc::new(ReadView {
            frozen: self.view.frozen.clone(),
            segments: msg.0,
        });
        self.make_progress(ctx);
    }
}

impl Handler<Gauges> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Gauges, _: &mut Context<Self>) {
        let frozen_bytes: usize = self
            .view
            .frozen
            .iter()
            .map(|f| f.table.approximate_bytes())
            .sum();
        let _ = msg.reply.send(MemtableGauges {
            memtable_bytes: (self.active.approximate_bytes() + frozen_bytes) as u64,
            frozen_memtables: self.view.frozen.len() as u64,
            view: self.view.clone(),
            last_seq: self.last_seq,
            wal_bytes: self.wal.as_ref().map_or(0, WalWriter::bytes_written),
        });
    }
}

impl Handler<Close> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            let _ = msg.reply.send(Err(Error::Closed));
            return;
        }
        self.closing = Some(msg.reply);
        self.make_progress(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Bound;

    fn snapshot_request(
        limit: usize,
        max_bytes: usize,
    ) -> (ScanSnapshot, oneshot::Receiver<ScanStart>) {
        let (reply, rx) = oneshot::channel();
        let msg = ScanSnapshot {
            range: (Bound::Unbounded, Bound::Unbounded),
            reverse: false,
            limit,
            max_bytes,
            reply,
        };
        (msg, rx)
    }

    #[test]
    fn scan_copy_takes_tombstones_and_one_live_entry_past_the_limit() {
        let mut table = MemTable::default();
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let value = if i == 1 {
                None
            } else {
                Some(Bytes::from_static(b"v"))
            };
            table.apply(Bytes::copy_from_slice(key.as_bytes()), i as u64, value);
        }
        let (msg, _rx) = snapshot_request(2, usize::MAX);
        let keys: Vec<_> = copy_for_scan(&table, &msg)
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            ["a", "b", "c", "d"]
                .map(|k| Bytes::copy_from_slice(k.as_bytes()))
                .to_vec()
        );
    }
}
