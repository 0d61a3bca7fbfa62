//! The memtable actor: owns the active memtable and the WAL that guards it.
//!
//! Plain writes are applied by the writers' own threads while the actor
//! keeps the lane open (`direct.rs`); under `SyncPolicy::Always`, only
//! those from threads that may block for an fdatasync, which they make
//! themselves.
//! The others reach the actor through a lock-free submission queue, not its
//! mailbox (`submissions.rs`: spin-then-park on both sides); `intake.rs`
//! takes them into `pending`. Before the actor touches the table or the WAL
//! itself (a group, a freeze, a flush, close, a failure) it closes the lane
//! and waits for the writers inside to leave (`settle_lane`). See
//! `docs/ARCHITECTURE.md` for the actors around it.
//!
//! Queued writes are grouped: while one group is being written and
//! fdatasynced on a blocking thread, new writes wait in `pending`; when the
//! sync returns they all go out as the next group and share one sync (group
//! commit). A write is applied to the memtable, and so becomes visible to
//! readers, only once it is durable under the sync policy; then its writer
//! is answered.
//!
//! When the memtable passes its share of the memtable budget
//! (`Options::memtable_freeze_bytes`: `memtable_bytes` split between it and
//! up to `max_frozen_memtables` frozen ones) it is frozen (behind an `Arc`),
//! a new WAL is started, and the frozen table goes to the segment manager to
//! be flushed. While the frozen ones are all waiting and the active one is
//! full, writes wait (a stall).
//!
//! Readers never message this actor: after every change it publishes a
//! [`ReadView`] (the active memtable, the frozen tables and the segment set,
//! as of one moment) into a shared `ArcSwap`, which readers load, together
//! with the published sequence number, the bound at which they read the
//! active memtable (`Db::read_view`). The view is immutable; publishing swaps
//! the whole `Arc`, so a read never sees a table both gone from memory and
//! not yet in a segment. Versions above the bound are never shown, and the
//! bound passes a number only once everything up to it is applied, so a
//! read never shows half a group or half a batch (see `table.rs`).

mod conditions;
mod direct;
mod filter;
mod gather;
mod index;
mod intake;
mod messages;
mod submissions;
mod table;
mod wal_full;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arc_swap::ArcSwap;
use tokio::sync::oneshot;

pub use direct::{DirectWrites, Outcome};
pub use filter::key_hash as filter_hash;
pub use messages::{
    Close, Flush, FlushDone, FlushFailed, Gauges, MemtableGauges, Mutation, SegmentsChanged, Write,
};
pub use submissions::{Completion, Submissions};
pub use table::{ENTRY_OVERHEAD_BYTES, FrozenMemtable, MemTable};

use super::batch::{Requirement, encode_wal_batch, encode_wal_range_deletes};
use super::range_delete::{RangeDelete, RangeTombstone, RangeTombstones};
use super::segment::FileNumbers;
use super::segments::{FlushMemtable, SegmentManager};
use super::stats::Counters;
use super::version::SegmentSet;
use super::wal_identity::WalIdentity;
use crate::format::wal::WalWriter;
use crate::fs::DirectoryLock;
use crate::{Error, Options, Result, SyncPolicy};
use conditions::GroupConditions;
use gather::Gather;
use intake::Intake;
use submissions::ActorSpin;

/// How often a stall looks again at the compaction behind it.
const STALL_RECHECK: Duration = Duration::from_secs(1);

/// What readers see, as of one moment: the active memtable (a snapshot),
/// the frozen memtables (newest first) and the segment set.
#[derive(Debug, Default)]
pub struct ReadView {
    /// A snapshot of the active memtable.
    pub active: MemTable,
    /// Memtables waiting to be flushed, newest first.
    pub frozen: Vec<Arc<FrozenMemtable>>,
    /// The live segments.
    pub segments: Arc<SegmentSet>,
    /// Range deletes not yet flushed (those installed are in `segments`).
    pub range_tombstones: RangeTombstones,
}

struct PendingWrite {
    mutations: Vec<Mutation>,
    requirements: Vec<Requirement>,
    range_deletes: Vec<RangeDelete>,
    reply: oneshot::Sender<Result<()>>,
    /// The sequence number of its first mutation, given when its group is
    /// formed (0 before).
    first_seq: u64,
    /// Made on another thread than the actor's (see `gather.rs`).
    remote: bool,
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
    /// Where the actor publishes its [`ReadView`] for readers.
    pub published: Arc<ArcSwap<ReadView>>,
    /// Where writers queue their writes for the actor.
    pub submissions: Arc<Submissions>,
    /// The lane for writes writers apply themselves.
    pub direct: Arc<DirectWrites>,
}

/// Owns the active memtable and the WAL. See the module doc.
pub struct MemtableActor {
    options: Arc<Options>,
    active: MemTable,
    /// `None` while a group or a rotation holds it on a blocking thread.
    wal: Option<Arc<WalWriter>>,
    /// A sync of `wal` runs on a blocking thread.
    syncing: bool,
    wal_number: u64,
    /// Bytes of `wal` its last sync covered: it needs a sync while it has
    /// more (the actor's groups and direct writers append to it).
    synced_bytes: u64,
    last_seq: u64,
    /// The highest sequence number in any memtable flushed and dropped (see
    /// `conditions.rs`).
    dropped_through: u64,
    pending: Vec<PendingWrite>,
    /// Memtables waiting to be flushed, newest first.
    frozen: Vec<Arc<FrozenMemtable>>,
    segments: Arc<SegmentSet>,
    published: Arc<ArcSwap<ReadView>>,
    /// Writes queued by callers, taken by [`Intake`].
    submissions: Arc<Submissions>,
    /// Writes callers apply themselves while the actor lets them.
    direct: Arc<DirectWrites>,
    /// Waiting for direct writers to leave the closed lane.
    draining: bool,
    /// When to keep polling `submissions` instead of parking.
    spin: ActorSpin,
    /// Holds a group after an inline sync for the writers just answered.
    gather: Gather,
    segment_manager: Addr<SegmentManager>,
    file_numbers: Arc<FileNumbers>,
    counters: Arc<Counters>,
    /// Set after a failed WAL write or sync: the WAL is not trusted again.
    poisoned: Option<Error>,
    /// Set while the disk is full under the WAL (see `wal_full.rs`).
    wal_full: Option<wal_full::WalFull>,
    /// Flush requests waiting for a freeze.
    flush_requests: Vec<oneshot::Sender<Result<()>>>,
    /// Flush requests waiting for WAL number `.0` to be flushed.
    flush_waiters: Vec<(u64, oneshot::Sender<Result<()>>)>,
    /// While writers are held back: when the stall began, and up to when
    /// its time is counted in `write_stall_micros` already (a stats call
    /// counts the time so far, so a long stall shows while it lasts).
    stalled_since: Option<(Instant, Instant)>,
    /// A WAL rotation's job is in flight (`freeze`).
    rotating: bool,
    /// The sequence numbers the last failed group burned (first, last),
    /// once writes resumed after it (see `wal_full.rs`).
    burned: Option<(u64, u64)>,
    closing: Option<oneshot::Sender<Result<Option<u64>>>>,
    /// Moved into each blocking WAL job, so the directory stays locked until
    /// the job ends even if the actor is gone.
    /// Dropped at close, before the reply, so that the directory is free
    /// when `close` returns.
    lock: Option<Arc<dyn DirectoryLock>>,
    /// Reused to encode each write's WAL payload.
    record_scratch: Vec<u8>,
    /// Reused for each group's framed WAL records (not under
    /// `SyncPolicy::Always`, whose job takes them to another thread).
    framed_scratch: Vec<u8>,
    /// An emptied group's vector, reused as the next `pending`, so that a
    /// group of one write costs no allocation for it.
    spare_pending: Vec<PendingWrite>,
    /// Reused to hold a group's replies until the group is published.
    reply_scratch: Vec<oneshot::Sender<Result<()>>>,
    /// Range deletes applied to the active memtable.
    active_tombstones: Vec<RangeTombstone>,
    /// Those and the frozen memtables': what readers apply besides the
    /// installed ones. Rebuilt only when it changes.
    unflushed_tombstones: RangeTombstones,
    /// A range delete was applied: freeze soon, so that its flush installs
    /// it and compaction can give the space back.
    freeze_soon: bool,
}

impl MemtableActor {
    /// An actor over an empty memtable and the fresh WAL recovery opened.
    pub fn new(start: MemtableStart) -> Self {
        MemtableActor {
            active: empty_memtable(&start.options),
            options: start.options,
            // Its identity record was synced as it was created.
            synced_bytes: start.wal.bytes_written(),
            wal: Some(Arc::new(start.wal)),
            syncing: false,
            wal_number: start.wal_number,
            last_seq: start.last_seq,
            // Recovery leaves everything it replayed in segments.
            dropped_through: start.last_seq,
            pending: Vec::new(),
            frozen: Vec::new(),
            segments: start.segments,
            published: start.published,
            submissions: start.submissions,
            direct: start.direct,
            draining: false,
            spin: ActorSpin::default(),
            gather: Gather::default(),
            segment_manager: start.segment_manager,
            file_numbers: start.file_numbers,
            counters: start.counters,
            poisoned: None,
            wal_full: None,
            flush_requests: Vec::new(),
            flush_waiters: Vec::new(),
            stalled_since: None,
            burned: None,
            rotating: false,
            closing: None,
            lock: Some(start.lock),
            record_scratch: Vec::new(),
            framed_scratch: Vec::new(),
            spare_pending: Vec::new(),
            reply_scratch: Vec::new(),
            active_tombstones: Vec::new(),
            unflushed_tombstones: RangeTombstones::default(),
            freeze_soon: false,
        }
    }

    /// Rebuilds the list readers see after the unflushed tombstones changed.
    fn refresh_tombstones(&mut self) {
        let frozen = self.frozen.iter().flat_map(|f| f.range_tombstones.iter());
        let all = self.active_tombstones.iter().chain(frozen).cloned();
        self.unflushed_tombstones = RangeTombstones::new(all.collect());
    }

    /// No write since the last freeze: no version and no range delete.
    fn active_is_empty(&self) -> bool {
        self.active.is_empty() && self.active_tombstones.is_empty()
    }

    /// Makes the current state what readers see.
    fn publish(&self) {
        self.published.store(Arc::new(ReadView {
            active: self.active.clone(),
            frozen: self.frozen.clone(),
            segments: self.segments.clone(),
            range_tombstones: self.unflushed_tombstones.clone(),
        }));
    }

    /// Moves every piece of queued work forward as far as it can go now.
    /// (It does not take new submissions: [`Intake`] does, between groups,
    /// so that a steady stream of writes cannot make this recurse.)
    fn make_progress(&mut self, ctx: &mut Context<Self>) {
        if !self.settle_lane(ctx) {
            return;
        }
        self.move_queued_work(ctx);
        self.open_lane_if_idle();
    }

    /// True once the actor may use the memtable and the WAL itself: the
    /// direct writers' lane is closed and no writer is inside. False while
    /// the lane may stay open (nothing for the actor to do) or while writers
    /// are still leaving it ([`Intake`] polls until they have).
    fn settle_lane(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.direct.is_open() {
            if self.lane_may_open() {
                return false;
            }
            self.direct.close();
        }
        self.draining = !self.direct.is_drained();
        if self.draining {
            return false;
        }
        self.absorb_direct_writes(ctx);
        true
    }

    /// Takes over the sequence numbers direct writers used, and handles
    /// a failed direct append.
    fn absorb_direct_writes(&mut self, ctx: &mut Context<Self>) {
        let published = self.direct.published();
        self.last_seq = self.last_seq.max(self.direct.last_handed());
        self.active.show_through(published);
        let Some(failure) = self.direct.take_failure() else {
            return;
        };
        if wal_full::is_disk_full(&failure.error) {
            // The table holds versions of the failed writes above the
            // published bound; numbers after them will be published once
            // writes resume, so it is set aside at the bound.
            if self.last_seq > published {
                self.set_aside_active(published);
            }
            self.enter_wal_full(failure.error, published + 1, ctx);
        } else {
            log::error!(
                "WAL write failed, refusing writes until reopen: {}",
                failure.error
            );
            // Nothing is published again, so the failed versions never show.
            self.poison(failure.error);
        }
    }

    /// Freezes the active memtable as of `bound` without starting a WAL
    /// (the caller is abandoning the current one).
    fn set_aside_active(&mut self, bound: u64) {
        let frozen = Arc::new(FrozenMemtable {
            table: std::mem::replace(&mut self.active, empty_memtable(&self.options)).at(bound),
            wal_number: self.wal_number,
            max_seq: bound,
            range_tombstones: std::mem::take(&mut self.active_tombstones),
        });
        self.direct.clear_target();
        self.frozen.insert(0, frozen.clone());
        self.refresh_tombstones();
        self.publish();
        // The WAL that takes over is started later (`wal_full.rs`).
        self.segment_manager.do_send(FlushMemtable {
            frozen,
            next_wal: None,
        });
    }

    /// Whether writers may apply their writes themselves now: the actor
    /// has nothing queued that orders writes, and the table and WAL can
    /// take them.
    fn lane_may_open(&self) -> bool {
        self.wal.is_some()
            && self.pending.is_empty()
            && self.flush_requests.is_empty()
            && self.poisoned.is_none()
            && self.wal_full.is_none()
            && self.closing.is_none()
            && !self.freeze_soon
            && !self.memtable_full()
            && self.segments.level(0).len() < self.options.l0_stall_trigger
    }

    fn open_lane_if_idle(&mut self) {
        if self.direct.is_open() || !self.lane_may_open() {
            return;
        }
        let Some(wal) = &self.wal else {
            return;
        };
        let target = direct::Target {
            table: self.active.clone(),
            wal: wal.clone(),
        };
        self.direct.open(self.last_seq, target);
    }

    /// The queued work: failures, flush requests, freezing, the next group.
    fn move_queued_work(&mut self, ctx: &mut Context<Self>) {
        if self.poisoned.is_some() || self.wal_full.is_some() {
            self.fail_pending();
        }
        if self.job_in_flight() {
            return; // its completion calls back
        }
        self.serve_flush_requests(ctx);
        let freeze_soon = self.freeze_soon && self.closing.is_none();
        if (self.memtable_full() || freeze_soon) && self.can_freeze() {
            self.freeze(ctx);
            if self.job_in_flight() {
                return; // the rotation's completion calls back
            }
        }
        if self.pending.is_empty() {
            self.end_stall();
            self.maybe_finish_close(ctx);
            return;
        }
        if self.must_stall() {
            if let Some(error) = self.compaction_waits_for_space() {
                // Held back, they would wait until space is freed: they fail.
                self.end_stall();
                let held = std::mem::take(&mut self.pending);
                self.fail_group(held, &error);
                return;
            }
            self.begin_stall(ctx);
            return;
        }
        self.end_stall();
        self.write_group(ctx);
    }

    /// A group write, a sync or a WAL rotation holds the WAL on a blocking
    /// thread. (A poisoned actor may have no WAL and no job.)
    fn job_in_flight(&self) -> bool {
        self.wal.is_none() && self.poisoned.is_none() && self.wal_full.is_none()
    }

    fn can_freeze(&self) -> bool {
        self.frozen.len() < self.options.max_frozen_memtables.max(1)
    }

    fn must_stall(&self) -> bool {
        if self.closing.is_some() {
            return false; // accepted writes finish; the next open flushes them
        }
        let level0 = self.segments.level(0).len();
        self.memtable_full() || level0 >= self.options.l0_stall_trigger
    }

    /// The active memtable has used its share of the memtable budget.
    fn memtable_full(&self) -> bool {
        self.active.approximate_bytes() >= self.options.memtable_freeze_bytes()
    }

    /// The error for writes while level 0 is at its stall trigger and the
    /// compaction that would empty it waits for free disk space; `None`
    /// otherwise (a stall then ends by itself).
    fn compaction_waits_for_space(&self) -> Option<Error> {
        let level0 = self.segments.level(0).len();
        let waiting = self
            .counters
            .compaction_waiting_for_space
            .load(Ordering::Relaxed);
        (level0 >= self.options.l0_stall_trigger && waiting != 0).then(|| {
            Error::io(
                "too little free disk space: level 0 is full and its compaction needs more \
                 free space than the disk has; writes resume by themselves once space is freed",
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            )
        })
    }

    /// Starts a stall, and looks again every second while it lasts: the
    /// compaction behind it may be refused for space meanwhile, and then
    /// the writes held back fail.
    fn begin_stall(&mut self, ctx: &mut Context<Self>) {
        if self.stalled_since.is_none() {
            let now = Instant::now();
            self.stalled_since = Some((now, now));
            Counters::add(&self.counters.write_stalls, 1);
            log::info!("writes stalled: flushing or compaction is behind");
            Self::recheck_stall(now, ctx);
        }
    }

    fn recheck_stall(began: Instant, ctx: &mut Context<Self>) {
        ctx.run_later(STALL_RECHECK, move |act, ctx| {
            if act.stalled_since.is_some_and(|(since, _)| since == began) {
                act.make_progress(ctx);
                Self::recheck_stall(began, ctx);
            }
        });
    }

    fn end_stall(&mut self) {
        self.count_stall_time();
        if let Some((began, _)) = self.stalled_since.take() {
            log::info!("writes resumed after {} ms", began.elapsed().as_millis());
        }
    }

    /// Adds the stall's time since it was last counted to
    /// `write_stall_micros`.
    fn count_stall_time(&mut self) {
        if let Some((_, counted_to)) = self.stalled_since.as_mut() {
            let now = Instant::now();
            let micros = now.saturating_duration_since(*counted_to).as_micros();
            *counted_to = now;
            let micros = u64::try_from(micros).unwrap_or(u64::MAX);
            Counters::add(&self.counters.write_stall_micros, micros);
        }
    }

    fn serve_flush_requests(&mut self, ctx: &mut Context<Self>) {
        if self.flush_requests.is_empty() {
            return;
        }
        if let Some(error) = self.wal_full_error() {
            // No WAL to freeze behind: the active memtable cannot be flushed.
            for request in std::mem::take(&mut self.flush_requests) {
                let _ = request.send(Err(error.clone()));
            }
            return;
        }
        if !self.active_is_empty() {
            if !self.can_freeze() {
                return;
            }
            self.freeze(ctx);
        }
        let requests = std::mem::take(&mut self.flush_requests);
        match self.frozen.first().map(|f| f.wal_number) {
            Some(newest) => self
                .flush_waiters
                .extend(requests.into_iter().map(|r| (newest, r))),
            None => requests.into_iter().for_each(|r| {
                let _ = r.send(Ok(()));
            }),
        }
    }

    /// Freezes the active memtable and starts a new WAL for the next one.
    /// The file work (syncing the old WAL under the interval policy,
    /// creating the new one, syncing the directory) runs on a blocking
    /// thread; writes wait in `pending` until the new WAL is in place.
    fn freeze(&mut self, ctx: &mut Context<Self>) {
        if self.active_is_empty() || self.poisoned.is_some() {
            return;
        }
        let sync_old = self.wal_unsynced() && self.options.sync != SyncPolicy::None;
        let Some(old_wal) = self.wal.take() else {
            return;
        };
        self.direct.clear_target();
        let number = self.file_numbers.allocate();
        let old_number = std::mem::replace(&mut self.wal_number, number);
        let frozen = Arc::new(FrozenMemtable {
            table: std::mem::replace(&mut self.active, empty_memtable(&self.options)),
            wal_number: old_number,
            max_seq: self.last_seq,
            range_tombstones: std::mem::take(&mut self.active_tombstones),
        });
        self.freeze_soon = false;
        self.frozen.insert(0, frozen.clone());
        self.publish();
        let (options, lock) = (self.options.clone(), self.lock.clone());
        let identity = self.file_numbers.wal_identity();
        // Every write in the old WAL is durable before the new one says so
        // (`wal_identity.rs`); under `None` it may not be, and it says nothing.
        let follows_seq = match self.options.sync {
            SyncPolicy::None => 0,
            _ => self.last_written_seq(),
        };
        self.rotating = true;
        let job = actix_rt::task::spawn_blocking(move || {
            let _lock = lock;
            if sync_old {
                old_wal.sync()?;
            }
            drop(old_wal);
            create_wal(&options, number, identity, follows_seq)
        });
        ctx.spawn(job.into_actor(self).map(move |joined, act, ctx| {
            act.rotating = false;
            let mut next_wal = None;
            match joined.unwrap_or_else(|e| Err(thread_error("WAL rotation", &e))) {
                Ok(wal) => {
                    act.synced_bytes = wal.bytes_written();
                    act.wal = Some(Arc::new(wal));
                    next_wal = Some(number);
                }
                Err(error) if wal_full::is_disk_full(&error) => {
                    let resume_from = act.last_seq + 1;
                    act.enter_wal_full(error, resume_from, ctx);
                }
                Err(error) => {
                    log::error!("cannot start a new WAL, refusing writes until reopen: {error}");
                    act.poison(error);
                }
            }
            act.segment_manager
                .do_send(FlushMemtable { frozen, next_wal });
            act.make_progress(ctx);
        }));
    }

    fn poison(&mut self, error: Error) {
        self.poisoned.get_or_insert(error);
    }

    fn refused(&self) -> Option<Error> {
        if self.closing.is_some() {
            return Some(Error::Closed);
        }
        let poisoned = self.poisoned.as_ref().map(|cause| Error::Poisoned {
            cause: Box::new(cause.clone()),
        });
        poisoned.or_else(|| self.wal_full_error())
    }

    /// Encodes the pending writes as one group and writes it out.
    fn write_group(&mut self, ctx: &mut Context<Self>) {
        if self.wal.is_none() {
            return;
        }
        let spare = std::mem::take(&mut self.spare_pending);
        let pending = std::mem::replace(&mut self.pending, spare);
        let mut group = self.admit(pending);
        if group.is_empty() {
            self.make_progress(ctx);
            return;
        }
        let Some(wal) = self.wal.take() else {
            return;
        };
        let mut framed = std::mem::take(&mut self.framed_scratch);
        framed.clear();
        let mut record = std::mem::take(&mut self.record_scratch);
        for write in &mut group {
            let first_seq = self.last_seq + 1;
            self.last_seq += (write.mutations.len() + write.range_deletes.len()) as u64;
            write.first_seq = first_seq;
            record.clear();
            encode_wal_batch(first_seq, &write.mutations, &mut record);
            encode_wal_range_deletes(&write.range_deletes, &mut record);
            WalWriter::encode_record(&record, &mut framed);
        }
        self.record_scratch = record;
        Counters::add(&self.counters.wal_bytes, framed.len() as u64);
        if self.options.sync != SyncPolicy::Always {
            let result = wal.append_encoded(&framed);
            self.framed_scratch = framed;
            self.wal = Some(wal);
            self.finish_group(result, group, false, ctx);
            return;
        }
        if self.options.inline_durable_writes {
            // As redis-server does: the sync blocks this thread, and writes
            // arriving meanwhile wait in the submission queue for the next
            // group (held for the writers this one answers, `gather.rs`).
            // It saves the hand-off to a blocking thread and back (two
            // wake-ups per group): about 5 % more durable SETs and 15 %
            // less CPU per SET under redis-benchmark -P 1 (BENCHMARKS.md,
            // session 16).
            let started = Instant::now();
            let result = wal.append_encoded(&framed).and_then(|()| wal.sync());
            if result.is_ok() {
                // Writes from this thread cannot come while it holds; the
                // queue's came from others while it was blocked in the sync
                // (see `gather.rs` for the exception).
                let answered = group.iter().filter(|w| w.remote).count();
                let waiting = self.submissions.len();
                self.gather.synced(answered, waiting, started.elapsed());
                self.synced_bytes = wal.bytes_written();
                Counters::add(&self.counters.wal_syncs, 1);
                Counters::add(&self.counters.wal_synced_requests, group.len() as u64);
            }
            self.framed_scratch = framed;
            self.wal = Some(wal);
            self.finish_group(result, group, false, ctx);
            return;
        }
        let lock = self.lock.clone();
        let job = actix_rt::task::spawn_blocking(move || {
            let _lock = lock;
            let result = wal.append_encoded(&framed).and_then(|()| wal.sync());
            (wal, result)
        });
        // While the WAL thread appends and syncs, this thread inserts the
        // group's versions, hidden above the published bound until
        // `finish_group` (the inserts took about 80 % of this thread's time
        // under durable pipelined SETs, and they used to follow the sync).
        self.insert_hidden(&group);
        let fut = job
            .into_actor(self)
            .map(move |joined, act, ctx| match joined {
                Ok((wal, result)) => {
                    if result.is_ok() {
                        act.synced_bytes = wal.bytes_written();
                    }
                    act.wal = Some(wal);
                    act.finish_group(result, group, true, ctx);
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

    /// Inserts the versions of `group` (numbered) into the active table,
    /// hidden: no reader sees them before `finish_group` publishes them.
    fn insert_hidden(&self, group: &[PendingWrite]) {
        for write in group {
            for (offset, m) in write.mutations.iter().enumerate() {
                let seq = write.first_seq + offset as u64;
                let (key, value) = (m.key.clone(), m.value.clone());
                self.active.insert_hidden(key, seq, value, m.expire_at_ms);
            }
        }
    }

    /// The writes of `group` whose conditions hold, in order; the others are
    /// answered `Conflict` and dropped (nothing of theirs is written).
    fn admit(&self, group: Vec<PendingWrite>) -> Vec<PendingWrite> {
        if group.iter().all(|w| w.requirements.is_empty()) {
            return group;
        }
        let mut conditions = GroupConditions {
            active: &self.active,
            frozen: &self.frozen,
            dropped_through: self.dropped_through,
            active_tombstones: &self.active_tombstones,
            written: Default::default(),
            deleted: Vec::new(),
        };
        let mut admitted = Vec::with_capacity(group.len());
        for write in group {
            if !conditions.hold(&write.requirements) {
                Counters::add(&self.counters.write_conflicts, 1);
                let _ = write.reply.send(Err(Error::Conflict));
                continue;
            }
            conditions.admit(
                write.mutations.iter().map(|m| &m.key),
                write.range_deletes.iter(),
            );
            admitted.push(write);
        }
        admitted
    }

    /// Applies a written group and answers it. `synced`: it was written
    /// and synced on the WAL thread, and its versions are in the table
    /// already (`insert_hidden`); otherwise they are inserted here.
    fn finish_group(
        &mut self,
        result: Result<()>,
        mut group: Vec<PendingWrite>,
        synced: bool,
        ctx: &mut Context<Self>,
    ) {
        if let Err(error) = result {
            if wal_full::is_disk_full(&error) {
                let resume_from = group.first().map_or(self.last_seq + 1, |w| w.first_seq);
                if synced {
                    // Its hidden versions hold numbers that later writes
                    // will reuse and publish.
                    self.set_aside_active(resume_from - 1);
                }
                self.fail_group(group, &error);
                self.enter_wal_full(error, resume_from, ctx);
                self.make_progress(ctx);
                return;
            }
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
        let mut replies = std::mem::take(&mut self.reply_scratch);
        for write in group.drain(..) {
            let first_seq = write.first_seq;
            Counters::add(&self.counters.writes, write.mutations.len() as u64);
            let points = write.mutations.len() as u64;
            if !synced {
                for (offset, m) in write.mutations.into_iter().enumerate() {
                    let seq = first_seq + offset as u64;
                    self.active
                        .apply_expiring(m.key, seq, m.value, m.expire_at_ms);
                }
            }
            for (offset, (start, end)) in write.range_deletes.into_iter().enumerate() {
                let seq = first_seq + points + offset as u64;
                self.active_tombstones
                    .push(RangeTombstone { start, end, seq });
                self.freeze_soon = true;
            }
            replies.push(write.reply);
        }
        if synced {
            self.active.show_through(self.last_seq);
        }
        if self.freeze_soon {
            self.refresh_tombstones();
        }
        // The whole group is applied; only now does the published bound
        // move past it. Visible before acknowledged: a read after an
        // acknowledged write sees it. The view first (it may hold the
        // group's range deletes), then the bound (see `Db::read_view`).
        self.publish();
        self.direct.publish(self.last_seq);
        for reply in replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
        self.reply_scratch = replies;
        if self.spare_pending.capacity() < group.capacity() {
            self.spare_pending = group;
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
        if !self.wal_unsynced() || self.poisoned.is_some() || self.syncing {
            return;
        }
        let Some(wal) = self.wal.clone() else {
            return;
        };
        // Direct writers may go on appending while it syncs; the sync
        // covers at least what was written before it started.
        let covered = wal.bytes_written();
        self.syncing = true;
        let (lock, synced) = (self.lock.clone(), wal.clone());
        let job = actix_rt::task::spawn_blocking(move || {
            let _lock = lock;
            wal.sync()
        });
        let fut = job.into_actor(self).map(move |joined, act, ctx| {
            act.syncing = false;
            match joined {
                Ok(Ok(())) => {
                    Counters::add(&act.counters.wal_syncs, 1);
                    // (Unless the WAL was rotated meanwhile.)
                    if act.wal.as_ref().is_some_and(|w| Arc::ptr_eq(w, &synced)) {
                        act.synced_bytes = act.synced_bytes.max(covered);
                    }
                }
                // Through the lane, so that its writers stop first and the
                // error is handled as a failed direct append is.
                Ok(Err(error)) => act.direct.refuse(error),
                Err(join_error) => act.direct.refuse(Error::io(
                    "WAL sync thread",
                    std::io::Error::other(join_error.to_string()),
                )),
            }
            act.make_progress(ctx);
        });
        ctx.spawn(fut);
    }

    /// The WAL holds bytes no sync has covered yet.
    fn wal_unsynced(&self) -> bool {
        self.wal
            .as_ref()
            .is_some_and(|wal| wal.bytes_written() > self.synced_bytes)
    }

    fn maybe_finish_close(&mut self, ctx: &mut Context<Self>) {
        if self.closing.is_none() || !self.pending.is_empty() {
            return;
        }
        let mut result = Ok(());
        if let Some(wal) = self.wal.as_ref()
            && self.wal_unsynced()
            && self.poisoned.is_none()
        {
            result = wal.sync();
        }
        if self.poisoned.is_none() {
            result = result.and_then(|()| self.sync_abandoned_wal());
        }
        let clean_at_seq = self.poisoned.is_none().then(|| self.clean_close_seq());
        let result = result.map(|()| clean_at_seq);
        if let Some(reply) = self.closing.take() {
            // The last handles on the WAL: dropping them closes (and trims)
            // its file before `close` returns.
            self.direct.clear_target();
            self.wal = None;
            self.lock = None;
            let _ = reply.send(result);
            ctx.stop();
        }
    }
}

/// A new active memtable, with a key filter sized for what it holds when
/// it is frozen.
fn empty_memtable(options: &Options) -> MemTable {
    MemTable::sized_for(
        options.memtable_freeze_bytes(),
        options.bloom_bits_per_key,
        options.memtable_point_index,
    )
}

/// Creates WAL `number` with `identity`'s identity record, following write
/// `follows_seq` (`engine/wal_identity.rs`).
fn create_wal(
    options: &Options,
    number: u64,
    identity: WalIdentity,
    follows_seq: u64,
) -> Result<WalWriter> {
    crate::engine::wal_identity::create_wal(
        options.fs.as_ref(),
        &options.directory,
        number,
        identity,
        follows_seq,
    )
}

/// A blocking thread that panicked or was cancelled, as an I/O error.
fn thread_error(what: &str, error: &tokio::task::JoinError) -> Error {
    Error::io(
        format!("{what} thread"),
        std::io::Error::other(error.to_string()),
    )
}

impl Actor for MemtableActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Readers see this actor's active memtable from now on: direct
        // writes go into it once the lane opens.
        self.publish();
        // Writers need not queue the first writes to get the lane opened.
        self.open_lane_if_idle();
        if let SyncPolicy::Interval(every) = self.options.sync {
            ctx.run_interval(every, |act, ctx| act.sync_now(ctx));
        }
        ctx.spawn(Intake);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Writes queued from now on are dropped: their callers see `Closed`.
        self.submissions.close();
    }
}

impl Handler<Flush> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Flush, ctx: &mut Context<Self>) {
        self.take_submissions(); // writes made before the flush are in it
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
        for flushed in self
            .frozen
            .iter()
            .filter(|f| f.wal_number == msg.wal_number)
        {
            self.dropped_through = self.dropped_through.max(flushed.max_seq);
        }
        self.frozen.retain(|f| f.wal_number != msg.wal_number);
        self.refresh_tombstones();
        self.segments = msg.segments;
        self.publish();
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
        // Requests still waiting for room to freeze wait on this flush too.
        for reply in std::mem::take(&mut self.flush_requests) {
            let _ = reply.send(Err(msg.error.clone()));
        }
        // Writes held back for this flush would wait as long as the disk
        // fails: answer them with the error (nothing of theirs was written).
        // The flush is retried; writes that come later wait for the retry.
        if self.stalled_since.is_some() {
            self.end_stall();
            let error = Error::io(
                "flushing failed, so writes cannot be taken",
                std::io::Error::other(msg.error.to_string()),
            );
            let stalled = std::mem::take(&mut self.pending);
            self.fail_group(stalled, &error);
        }
    }
}

impl Handler<SegmentsChanged> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: SegmentsChanged, ctx: &mut Context<Self>) {
        self.segments = msg.0;
        self.publish();
        self.make_progress(ctx);
    }
}

impl Handler<Gauges> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Gauges, _: &mut Context<Self>) {
        self.count_stall_time();
        let frozen_bytes: usize = self
            .frozen
            .iter()
            .map(|f| f.table.approximate_bytes())
            .sum();
        let _ = msg.reply.send(MemtableGauges {
            memtable_bytes: (self.active.approximate_bytes() + frozen_bytes) as u64,
            frozen_memtables: self.frozen.len() as u64,
            segments: self.segments.clone(),
            last_seq: self.last_seq.max(self.direct.last_handed()),
            wal_bytes: self.wal.as_ref().map_or(0, |w| w.bytes_written()),
        });
    }
}

impl Handler<Close> for MemtableActor {
    type Result = ();
    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        self.take_submissions(); // writes made before close are finished
        if self.closing.is_some() {
            let _ = msg.reply.send(Err(Error::Closed));
            return;
        }
        self.closing = Some(msg.reply);
        self.make_progress(ctx);
    }
}
