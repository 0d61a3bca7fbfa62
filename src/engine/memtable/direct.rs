//! Direct writes: a plain put, delete or batch applied by the writer's own
//! thread, without a hop to the memtable actor's.
//!
//! Handing every write to the actor's thread and its answer back cost two
//! cross-thread hand-offs per write, and the actor did every write's work on
//! one core (docs/BENCHMARKS.md, issue 14). When the sync policy does not
//! make a writer wait for an fdatasync (`SyncPolicy::None` and `Interval`),
//! a writer now does its own write while the actor has *opened the lane*:
//!
//! 1. it takes its sequence numbers with one compare-and-swap on `state`
//!    (which also says whether the lane is open);
//! 2. it encodes its WAL record and inserts its versions into the active
//!    memtable, hidden (above the published bound, see `table.rs`), in
//!    parallel with other writers;
//! 3. it waits for its turn: every lower number published. Then it appends
//!    its record to the WAL and publishes its numbers. Appends therefore
//!    reach the WAL one at a time, in sequence order, as the actor's groups
//!    did; and a reader, which reads the memtable at the published bound,
//!    never sees a write before every earlier one, nor half a batch.
//!
//! The actor still owns the memtable's and the WAL's lifecycle, ordering,
//! sync, freeze and flush. It *closes* the lane (one atomic operation) and
//! waits for the writers inside to finish before anything that needs the
//! WAL or the memtable to itself: a group of queued writes (conditional
//! ones, range deletes, writes from async tasks under `SyncPolicy::Always`,
//! and writes made while another write was queued, so that one caller's
//! writes stay in order), a freeze, a flush request, closing, a failure. It
//! opens the lane again, with the table and WAL to use (`Target`), once it
//! is done and nothing is queued.
//!
//! **Durable direct writes.** Under `SyncPolicy::Always` a write is
//! answered only once an fdatasync covers it, and only then is it visible
//! (`published` trails `appended`). A writer on a thread that may block (one
//! that runs no async runtime, see [`may_block_for_sync`]) does not take its
//! own turn: it pushes its write onto `durable_queue` and either becomes the
//! *sync leader* or sleeps on its write's `state` (a futex). The leader
//! (RocksDB's write-thread leader) takes every queued write, numbers them,
//! inserts them, appends their records with one append, fdatasyncs the WAL
//! on its own thread, publishes them, hands the lead to the first write
//! queued meanwhile, and wakes its group. So a single writer pays its append
//! and one fdatasync with no hand-off to another thread, and many writers
//! share one sync without contending for turns (they sleep while the leader
//! works). Writers are counted as inside the lane until they return, so the
//! actor never swaps the WAL under a sync they wait for. If the lane closed
//! before the leader took numbers, every write of its group is queued for
//! the actor by its own writer. Writes from async tasks (the server's
//! sessions, an actix program) must not block their thread for a sync; they
//! queue for the actor, which group-commits on a blocking thread. Unless
//! `Options::inline_durable_writes` lets them (`run_server` does): then a
//! write from an async task that finds no other write in progress, after
//! [`CALM_WRITES_BEFORE_INLINE`] writes in a row that found the same, leads
//! its own group on its thread ([`DirectWrites::lead_if_idle`]). It never
//! waits as a follower; meeting a leader or a queued write, it goes to the
//! actor.
//!
//! A writer whose table has reached the freeze size, or finds the lane
//! closed, queues its write for the actor instead (`submissions.rs`).
//!
//! If an append or a leader's sync fails, the writer records the failure
//! and closes the lane; later writers waiting for their turn see it and
//! fail too without appending, so nothing follows the failed record in the
//! WAL (recovery sees a torn tail, as after a failed group). Their hidden
//! versions stay above the published bound; the actor sets the table aside
//! (`mod.rs`).
//!
//! Waiting for a turn spins, yields the core a few times, then sleeps on a
//! futex that the next append rings only when someone sleeps there. The
//! writers ahead run code that does not block (apart from the append
//! itself), so a short wait ends while spinning; a long one means the
//! writer ahead was preempted, and it needs this core more than a stream of
//! yields does (they were 15 % of the server's CPU under pipelined `SET`s,
//! docs/BENCHMARKS.md, session 14).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

use arc_swap::ArcSwapOption;
use crossbeam_queue::SegQueue;

use super::messages::Mutation;
use super::table::MemTable;
use crate::engine::batch::encode_wal_batch;
use crate::engine::stats::Counters;
use crate::format::wal::WalWriter;
use crate::{Error, Result};

/// The bit of `state` that says the lane is open.
const OPEN: u64 = 1 << 63;

/// [`DurableWrite::state`]: queued, not yet handled.
const WAITING: u32 = 0;
/// Handed the lead: the write was taken off the queue by the last leader.
const LEAD: u32 = 1;
/// Appended, synced and published.
const DONE: u32 = 2;
/// Its append or sync failed (the lane's failure says how).
const FAILED: u32 = 3;
/// The lane closed first: the writer queues it for the actor.
const REQUEUE: u32 = 4;

/// A durable direct write waiting for a sync leader.
struct DurableWrite {
    mutations: Vec<Mutation>,
    /// [`WAITING`], then one of the others; its writer sleeps on it.
    state: AtomicU32,
}

/// Writes in a row that met no other write in progress before a durable
/// write from an async task may lead its own group. Under concurrent
/// writes most of them meet one, and they keep going to the actor, whose
/// groups are larger than a lone leader's; a lone writer (one client
/// writing one request at a time) gets its writes synced on its own thread
/// after this many.
const CALM_WRITES_BEFORE_INLINE: u32 = 16;

/// Busy polls of the published bound before a waiting writer starts
/// yielding its core between polls.
const SPINS_BEFORE_YIELD: u32 = 64;

/// Polls (spins, then yields) before a writer waiting for its turn sleeps
/// until an append wakes it ([`DirectWrites::turn_sleepers`]).
const POLLS_BEFORE_SLEEP: u32 = SPINS_BEFORE_YIELD + TURN_YIELDS;
const TURN_YIELDS: u32 = 4;

/// Where direct writes go while the lane is open.
pub struct Target {
    pub table: MemTable,
    pub wal: Arc<WalWriter>,
}

/// A failed direct append.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    /// The first sequence number of the write whose append failed.
    pub first_seq: u64,
}

/// What became of a direct write.
pub enum Outcome {
    /// Written (or failed) by this thread.
    Done(Result<()>),
    /// The lane is closed: queue it for the actor.
    Queue(Vec<Mutation>),
}

/// The lane's shared state. See the module doc.
pub struct DirectWrites {
    /// [`OPEN`] | the last sequence number handed out.
    state: AtomicU64,
    /// Every write up to this number is in a memtable and in the WAL: the
    /// next writer's turn to append.
    appended: AtomicU64,
    /// Every write up to this number is in a memtable and in the WAL, and
    /// synced if the policy wants that: the bound reads use for the active
    /// memtable. Equal to `appended` unless `durable`.
    published: AtomicU64,
    /// Direct writers between taking their numbers and appending.
    writers: AtomicUsize,
    /// Writers asleep waiting for their turn; an append that sees one bumps
    /// `turn_bell` and wakes them.
    turn_sleepers: AtomicU32,
    /// The futex word turn sleepers wait on.
    turn_bell: AtomicU32,
    /// Durable direct writers between queueing and returning.
    awaiting_sync: AtomicUsize,
    /// `SyncPolicy::Always`: a write is published once a sync covers it.
    durable: bool,
    /// `Options::inline_durable_writes`: a durable write from an async
    /// task leads its own group when no other is in progress.
    sync_async_writers: bool,
    /// Writes in a row that found the lane open, nothing queued and (for an
    /// async durable write) no leader at work. See [`lead_if_idle`].
    ///
    /// [`lead_if_idle`]: DirectWrites::lead_if_idle
    calm_writes: AtomicU32,
    /// Durable writes waiting for a sync leader.
    durable_queue: SegQueue<Arc<DurableWrite>>,
    /// A writer leads: it writes and syncs the queued durable writes.
    sync_leader: AtomicBool,
    /// Writes in the last durable group.
    last_group: AtomicUsize,
    /// Writes queued for the actor and not yet taken by it: while there is
    /// one, writes queue behind it.
    queued: AtomicUsize,
    /// Where writes go; replaced by the actor only while the lane is closed
    /// and no writer is inside.
    target: ArcSwapOption<Target>,
    /// Set with `failure`: a cheap look for waiting writers.
    failed: AtomicBool,
    failure: ArcSwapOption<Failure>,
    /// A writer queues instead once its table holds this many bytes.
    freeze_bytes: usize,
    /// Writers let inside at once: the cores. A writer inside holds up
    /// every later one until it publishes, so one descheduled there stalls
    /// them all; more writers waiting to come in only wait for themselves.
    max_inside: usize,
}

thread_local! {
    /// A writer's WAL payload and framed record, reused.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl DirectWrites {
    /// A closed lane after recovery: every number up to `last_seq` is
    /// published.
    pub fn new(last_seq: u64, freeze_bytes: usize, durable: bool) -> Self {
        DirectWrites {
            state: AtomicU64::new(last_seq),
            appended: AtomicU64::new(last_seq),
            published: AtomicU64::new(last_seq),
            writers: AtomicUsize::new(0),
            turn_sleepers: AtomicU32::new(0),
            turn_bell: AtomicU32::new(0),
            awaiting_sync: AtomicUsize::new(0),
            durable,
            sync_async_writers: false,
            calm_writes: AtomicU32::new(0),
            durable_queue: SegQueue::new(),
            sync_leader: AtomicBool::new(false),
            last_group: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            target: ArcSwapOption::empty(),
            failed: AtomicBool::new(false),
            failure: ArcSwapOption::empty(),
            freeze_bytes,
            max_inside: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    /// Lets durable writes from async tasks lead their own group when no
    /// other durable write is in progress (`Options::inline_durable_writes`).
    pub fn syncing_async_writers(mut self, inline: bool) -> Self {
        self.sync_async_writers = inline;
        self
    }

    /// Every write up to this sequence number is visible to a read that
    /// starts now.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Writes `mutations` on this thread if the lane is open. A durable
    /// write is done here only if the thread may wait for an fdatasync;
    /// otherwise it is queued.
    pub fn write(&self, mutations: Vec<Mutation>, counters: &Counters) -> Outcome {
        if self.queued.load(Ordering::SeqCst) != 0 || self.state.load(Ordering::Relaxed) & OPEN == 0
        {
            if self.sync_async_writers {
                self.calm_writes.store(0, Ordering::Relaxed);
            }
            return Outcome::Queue(mutations);
        }
        if self.durable {
            if may_block_for_sync() {
                return self.write_durable(mutations, counters);
            }
            if self.sync_async_writers {
                return self.lead_if_idle(mutations, counters);
            }
            return Outcome::Queue(mutations);
        }
        let _inside = Inside::enter(&self.writers, self.max_inside);
        let count = mutations.len() as u64;
        let Some(first) = self.take_numbers(count) else {
            return Outcome::Queue(mutations);
        };
        // Set before the lane opened, and not replaced until every writer
        // that took numbers from it has left.
        let Some(target) = self.target.load_full() else {
            return Outcome::Done(Err(self.fail(Error::Closed, first)));
        };
        let appended = self.append(&target, first, mutations, counters);
        if appended.is_ok() {
            Counters::add(&counters.writes, count);
            Counters::add(&counters.write_requests, 1);
        }
        Outcome::Done(appended)
    }

    /// Inserts the versions (hidden), waits for the turn, and appends the
    /// record; `appended` then covers the write.
    fn append(
        &self,
        target: &Target,
        first: u64,
        mutations: Vec<Mutation>,
        counters: &Counters,
    ) -> Result<()> {
        let last = first + mutations.len() as u64 - 1;
        SCRATCH.with_borrow_mut(|(record, framed)| {
            record.clear();
            encode_wal_batch(first, &mutations, record);
            framed.clear();
            WalWriter::encode_record(record, framed);
            for (offset, m) in mutations.into_iter().enumerate() {
                let seq = first + offset as u64;
                target
                    .table
                    .insert_hidden(m.key, seq, m.value, m.expire_at_ms);
            }
            self.wait_for_turn(first)?;
            if let Err(error) = target.wal.append_encoded(framed) {
                return Err(self.fail(error, first));
            }
            Counters::add(&counters.wal_bytes, framed.len() as u64);
            // Before the next writer's turn, so the bound only grows.
            self.published.store(last, Ordering::Release);
            self.pass_turn(last);
            if target.table.approximate_bytes() >= self.freeze_bytes {
                // Later writes queue; the actor freezes the table.
                self.close();
            }
            Ok(())
        })
    }

    /// A durable write: queued for the sync leader, or led. See the module
    /// doc.
    fn write_durable(&self, mutations: Vec<Mutation>, counters: &Counters) -> Outcome {
        let _waiting = Inside::enter(&self.awaiting_sync, usize::MAX);
        let own = Arc::new(DurableWrite {
            mutations,
            state: AtomicU32::new(WAITING),
        });
        self.durable_queue.push(own.clone());
        fence(Ordering::SeqCst);
        // Led now, the write is still in the queue; handed the lead, it was
        // taken off it.
        let mut lead = self.take_lead().then_some(None);
        loop {
            if let Some(handed) = lead.take() {
                self.lead_durable_group(handed, &own, counters);
            }
            match own.state.load(Ordering::Acquire) {
                WAITING => atomic_wait::wait(&own.state, WAITING),
                LEAD => lead = Some(Some(own.clone())),
                DONE => return Outcome::Done(Ok(())),
                FAILED => return Outcome::Done(Err(self.failure_error())),
                _ => return Outcome::Queue(own.mutations.clone()),
            }
        }
    }

    /// A durable write from an async task: led on this thread, with the
    /// durable writes of plain threads queued meanwhile, if the writes
    /// before it met no other write in progress ([`CALM_WRITES_BEFORE_INLINE`])
    /// and no leader is at work; else queued for the actor. It never waits
    /// as a follower, so its thread blocks only for its own group's sync.
    fn lead_if_idle(&self, mutations: Vec<Mutation>, counters: &Counters) -> Outcome {
        if self.calm_writes.load(Ordering::Relaxed) < CALM_WRITES_BEFORE_INLINE {
            self.calm_writes.fetch_add(1, Ordering::Relaxed);
            return Outcome::Queue(mutations);
        }
        let _waiting = Inside::enter(&self.awaiting_sync, usize::MAX);
        if !self.take_lead() {
            self.calm_writes.store(0, Ordering::Relaxed);
            return Outcome::Queue(mutations);
        }
        let own = Arc::new(DurableWrite {
            mutations,
            state: AtomicU32::new(WAITING),
        });
        self.lead_durable_group(Some(own.clone()), &own, counters);
        match own.state.load(Ordering::Acquire) {
            DONE => Outcome::Done(Ok(())),
            FAILED => Outcome::Done(Err(self.failure_error())),
            _ => Outcome::Queue(own.mutations.clone()),
        }
    }

    fn take_lead(&self) -> bool {
        self.sync_leader
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Writes and syncs `handed` (if the lead came with it) and every write
    /// queued now, hands the lead on, and tells the group how it went.
    fn lead_durable_group(
        &self,
        handed: Option<Arc<DurableWrite>>,
        own: &Arc<DurableWrite>,
        counters: &Counters,
    ) {
        let mut group: Vec<Arc<DurableWrite>> = handed.into_iter().collect();
        if self.last_group.load(Ordering::Relaxed) > 1 {
            // Writers share syncs: those the last leader woke are runnable
            // and about to queue their next writes. Letting them run first
            // puts them in this group instead of the next one (fewer
            // syncs per write; docs/BENCHMARKS.md, sixth pass). A lone
            // writer never waits here.
            std::thread::yield_now();
        }
        while let Some(write) = self.durable_queue.pop() {
            group.push(write);
        }
        if group.is_empty() {
            // The last leader took this writer's write into its group and
            // let the lead go just before this writer took it.
            self.pass_lead();
            return;
        }
        self.last_group.store(group.len(), Ordering::Relaxed);
        let state = match self.write_and_sync(&group, counters) {
            Some(Ok(())) => DONE,
            Some(Err(_)) => FAILED,
            None => REQUEUE,
        };
        // The next group's sync can start while this one's writers wake.
        self.pass_lead();
        for write in &group {
            write.state.store(state, Ordering::Release);
            if !Arc::ptr_eq(write, own) {
                atomic_wait::wake_one(&write.state);
            }
        }
    }

    /// Numbers, inserts, appends and syncs `group`'s writes; `None` if the
    /// lane closed before they took numbers.
    fn write_and_sync(
        &self,
        group: &[Arc<DurableWrite>],
        counters: &Counters,
    ) -> Option<Result<()>> {
        let count: u64 = group.iter().map(|w| w.mutations.len() as u64).sum();
        let first = self.take_numbers(count)?;
        let Some(target) = self.target.load_full() else {
            return Some(Err(self.fail(Error::Closed, first)));
        };
        let last = first + count - 1;
        let appended = SCRATCH.with_borrow_mut(|(record, framed)| {
            framed.clear();
            let mut seq = first;
            for write in group {
                record.clear();
                encode_wal_batch(seq, &write.mutations, record);
                WalWriter::encode_record(record, framed);
                for m in &write.mutations {
                    let (key, value) = (m.key.clone(), m.value.clone());
                    target.table.insert_hidden(key, seq, value, m.expire_at_ms);
                    seq += 1;
                }
            }
            // Leaders take turns, and the actor writes only with the lane
            // drained: the turn is this group's already.
            self.wait_for_turn(first)?;
            if let Err(error) = target.wal.append_encoded(framed) {
                return Err(self.fail(error, first));
            }
            Counters::add(&counters.wal_bytes, framed.len() as u64);
            Ok(())
        });
        if let Err(error) = appended {
            return Some(Err(error));
        }
        self.pass_turn(last);
        if target.table.approximate_bytes() >= self.freeze_bytes {
            self.close();
        }
        if let Err(error) = target.wal.sync() {
            return Some(Err(self.fail(error, first)));
        }
        self.published.store(last, Ordering::Release);
        let requests = group.len() as u64;
        Counters::add(&counters.wal_syncs, 1);
        Counters::add(&counters.wal_synced_requests, requests);
        Counters::add(&counters.write_requests, requests);
        Counters::add(&counters.writes, count);
        Some(Ok(()))
    }

    /// Gives the lead to the first write queued, or lets it go. (A writer
    /// that queued after the last look and found the lead taken is seen
    /// by the look after letting go.)
    fn pass_lead(&self) {
        loop {
            if let Some(next) = self.durable_queue.pop() {
                next.state.store(LEAD, Ordering::Release);
                atomic_wait::wake_one(&next.state);
                return;
            }
            self.sync_leader.store(false, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.durable_queue.is_empty() || !self.take_lead() {
                return;
            }
        }
    }

    fn failure_error(&self) -> Error {
        let failure = self.failure.load();
        let error = failure.as_ref().map(|f| f.error.clone());
        error.unwrap_or(Error::Closed)
    }

    /// Hands out `count` numbers if the lane is open: the first of them.
    fn take_numbers(&self, count: u64) -> Option<u64> {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & OPEN == 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                state,
                state + count,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((state & !OPEN) + 1),
                Err(now) => state = now,
            }
        }
    }

    /// Returns once every number below `first` is appended, or with the
    /// error of a write ahead that failed. Spins, yields a few times, then
    /// sleeps: a writer ahead that was preempted then gets this core
    /// instead of a stream of yields (docs/BENCHMARKS.md, session 14).
    fn wait_for_turn(&self, first: u64) -> Result<()> {
        let mut polls = 0u32;
        loop {
            if self.is_turn(first)? {
                return Ok(());
            }
            if polls >= POLLS_BEFORE_SLEEP {
                return self.sleep_until_turn(first);
            }
            pause(&mut polls);
        }
    }

    fn is_turn(&self, first: u64) -> Result<bool> {
        if self.appended.load(Ordering::SeqCst) + 1 == first {
            return Ok(true);
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(self.failure_error());
        }
        Ok(false)
    }

    /// Counted in `turn_sleepers`, sleeps on `turn_bell` until the turn
    /// comes. An appender stores `appended` then reads `turn_sleepers`; a
    /// sleeper counts itself then reads `appended` (all sequentially
    /// consistent), so one of the two sees the other: no wake-up is lost.
    fn sleep_until_turn(&self, first: u64) -> Result<()> {
        self.turn_sleepers.fetch_add(1, Ordering::SeqCst);
        let turn = loop {
            let bell = self.turn_bell.load(Ordering::SeqCst);
            match self.is_turn(first) {
                Ok(false) => atomic_wait::wait(&self.turn_bell, bell),
                done => break done.map(|_| ()),
            }
        };
        self.turn_sleepers.fetch_sub(1, Ordering::SeqCst);
        turn
    }

    /// Every number up to `last` is appended: the next writer's turn.
    fn pass_turn(&self, last: u64) {
        self.appended.store(last, Ordering::SeqCst);
        self.ring_turn_bell();
    }

    /// Wakes the writers asleep waiting for their turn, if any.
    fn ring_turn_bell(&self) {
        if self.turn_sleepers.load(Ordering::SeqCst) != 0 {
            self.turn_bell.fetch_add(1, Ordering::SeqCst);
            atomic_wait::wake_all(&self.turn_bell);
        }
    }

    /// Records the first failure and closes the lane.
    fn fail(&self, error: Error, first_seq: u64) -> Error {
        if self.failure.load().is_none() {
            self.failure.store(Some(Arc::new(Failure {
                error: error.clone(),
                first_seq,
            })));
        }
        self.failed.store(true, Ordering::SeqCst);
        self.close();
        self.ring_turn_bell();
        error
    }

    // The actor's side.

    /// Opens the lane after `last_seq` (everything up to it published) with
    /// writes going to `target`. Only the actor calls this, with the lane
    /// drained.
    pub fn open(&self, last_seq: u64, target: Target) {
        self.appended.store(last_seq, Ordering::Release);
        self.published.store(last_seq, Ordering::Release);
        self.target.store(Some(Arc::new(target)));
        self.state.store(OPEN | last_seq, Ordering::SeqCst);
    }

    /// Closes the lane: writers that have not taken their numbers queue
    /// their writes from now on.
    pub fn close(&self) {
        self.state.fetch_and(!OPEN, Ordering::SeqCst);
    }

    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::SeqCst) & OPEN != 0
    }

    /// Closed, and no writer inside: the actor may use the table and WAL.
    pub fn is_drained(&self) -> bool {
        !self.is_open()
            && self.writers.load(Ordering::SeqCst) == 0
            && self.awaiting_sync.load(Ordering::SeqCst) == 0
    }

    /// The last sequence number handed out.
    pub fn last_handed(&self) -> u64 {
        self.state.load(Ordering::SeqCst) & !OPEN
    }

    /// The actor has applied everything up to `seq` (lane drained).
    pub fn publish(&self, seq: u64) {
        self.state.store(seq, Ordering::SeqCst);
        self.appended.store(seq, Ordering::Release);
        self.published.store(seq, Ordering::Release);
    }

    /// The failure of a direct append, once (lane drained).
    pub fn take_failure(&self) -> Option<Failure> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let failure = self.failure.swap(None)?;
        self.failed.store(false, Ordering::Release);
        Some(Arc::try_unwrap(failure).unwrap_or_else(|shared| Failure {
            error: shared.error.clone(),
            first_seq: shared.first_seq,
        }))
    }

    /// Fails the writes inside the lane and closes it: the actor's own WAL
    /// sync failed. Handled as a failed direct append.
    pub fn refuse(&self, error: Error) {
        self.fail(error, self.last_handed() + 1);
    }

    /// Drops the target (lane drained), so that the old WAL's file closes.
    pub fn clear_target(&self) {
        self.target.store(None);
    }

    /// A write is about to be queued for the actor.
    pub fn queueing(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// The actor has taken `count` queued writes (with the lane closed).
    pub fn taken(&self, count: usize) {
        self.queued.fetch_sub(count, Ordering::SeqCst);
    }
}

/// Counts a writer inside the lane for as long as it lives.
struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    /// Waits until fewer than `max` writers are inside, and comes in.
    fn enter(writers: &'a AtomicUsize, max: usize) -> Self {
        let mut polls = 0u32;
        let mut inside = writers.load(Ordering::Relaxed);
        loop {
            if inside < max {
                match writers.compare_exchange_weak(
                    inside,
                    inside + 1,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Inside(writers),
                    Err(now) => inside = now,
                }
                continue;
            }
            pause(&mut polls);
            inside = writers.load(Ordering::Relaxed);
        }
    }
}

/// Whether the calling thread may block until an fdatasync returns: it runs
/// no tokio runtime, so no async task (of the server, or of an actix
/// program) waits behind it.
fn may_block_for_sync() -> bool {
    tokio::runtime::Handle::try_current().is_err()
}

/// One poll's pause: spin a while, then yield the core.
fn pause(polls: &mut u32) {
    *polls = polls.saturating_add(1);
    if *polls < SPINS_BEFORE_YIELD {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;

    /// An open lane that has handed out numbers 1 and 2, and a thread
    /// waiting for number 2's turn, asleep once this returns.
    fn writer_asleep_behind_one() -> (Arc<DirectWrites>, mpsc::Receiver<Result<()>>) {
        let lane = Arc::new(DirectWrites::new(0, usize::MAX, false));
        lane.state.store(OPEN, Ordering::SeqCst);
        assert_eq!(lane.take_numbers(1), Some(1));
        assert_eq!(lane.take_numbers(1), Some(2));
        let waiting = lane.clone();
        let (sender, turn) = mpsc::channel();
        thread::spawn(move || sender.send(waiting.wait_for_turn(2)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while lane.turn_sleepers.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the waiter never slept");
            thread::sleep(Duration::from_millis(1));
        }
        let early = turn.recv_timeout(Duration::from_millis(20));
        assert!(early.is_err(), "the turn came before it was passed");
        (lane, turn)
    }

    #[test]
    fn a_writer_asleep_for_its_turn_wakes_when_the_one_ahead_appends() {
        let (lane, turn) = writer_asleep_behind_one();
        lane.pass_turn(1);
        let turn = turn.recv_timeout(Duration::from_secs(10));
        assert!(matches!(turn, Ok(Ok(()))), "{turn:?}");
        assert_eq!(lane.turn_sleepers.load(Ordering::SeqCst), 0);
    }

    /// A durable lane (sync always, async writers may lead) open on an
    /// empty table and a WAL in a simulated file system.
    fn durable_lane(fs: &crate::fs::sim::SimFs) -> (DirectWrites, MemTable) {
        use crate::fs::FileSystem;
        let path = std::path::Path::new("/db/000001.log");
        fs.create_dir_all(path.parent().expect("a directory"))
            .expect("directory");
        let file = fs.create_log(path).expect("WAL");
        for dir in ["/", "/db"] {
            fs.sync_dir(std::path::Path::new(dir)).expect("sync");
        }
        let wal = Arc::new(WalWriter::new(file, path.to_path_buf()));
        let table = MemTable::default();
        let lane = DirectWrites::new(0, usize::MAX, true).syncing_async_writers(true);
        lane.open(
            0,
            Target {
                table: table.clone(),
                wal,
            },
        );
        (lane, table)
    }

    fn put(key: &str) -> Vec<Mutation> {
        vec![Mutation {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Some(Bytes::from_static(b"v")),
            expire_at_ms: 0,
        }]
    }

    #[test]
    fn a_lone_async_writer_syncs_its_own_writes_after_calm_ones() {
        let fs = crate::fs::sim::SimFs::new(7);
        let (lane, table) = durable_lane(&fs);
        let counters = Counters::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            for i in 0..CALM_WRITES_BEFORE_INLINE {
                let outcome = lane.write(put(&format!("queued{i}")), &counters);
                assert!(matches!(outcome, Outcome::Queue(_)), "write {i} led");
            }
            let outcome = lane.write(put("led"), &counters);
            assert!(matches!(outcome, Outcome::Done(Ok(()))), "not led");
        });
        assert_eq!(lane.published(), 1);
        assert!(table.get_at(b"led", lane.published()).is_some());
        assert_eq!(counters.wal_syncs.load(Ordering::Relaxed), 1);
        // Synced: a crash keeps it.
        let crashed = fs.crash().expect("crash");
        let path = std::path::Path::new("/db/000001.log");
        let wal = crate::format::wal::read_wal(&crashed, path).expect("WAL");
        assert_eq!(wal.records.len(), 1);
    }

    #[test]
    fn a_durable_async_writer_that_meets_a_leader_queues() {
        let fs = crate::fs::sim::SimFs::new(7);
        let (lane, _table) = durable_lane(&fs);
        lane.calm_writes
            .store(CALM_WRITES_BEFORE_INLINE, Ordering::SeqCst);
        assert!(lane.take_lead(), "the lead was free");
        let counters = Counters::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let outcome = runtime.block_on(async { lane.write(put("k"), &counters) });
        assert!(matches!(outcome, Outcome::Queue(_)), "led beside a leader");
        assert_eq!(lane.calm_writes.load(Ordering::SeqCst), 0);
        assert_eq!(lane.published(), 0);
    }

    #[test]
    fn a_writer_asleep_for_its_turn_wakes_with_the_failure_ahead() {
        let (lane, turn) = writer_asleep_behind_one();
        lane.fail(Error::Closed, 1);
        let turn = turn.recv_timeout(Duration::from_secs(10));
        assert!(matches!(turn, Ok(Err(Error::Closed))), "{turn:?}");
    }
}
