//! The segment manager actor: owns the live segment set and the manifest.
//!
//! It runs one job at a time, in order: flushing a frozen memtable into a
//! level-0 segment, or installing a compaction's output. Each job's file
//! work runs on a blocking thread; the manifest names a segment only after
//! the segment's data and directory entry are durable, and a WAL or an input
//! segment is deleted only after the manifest that supersedes it is durable.
//! After each change the new set goes to the memtable actor (for readers)
//! and to the compactor.

use std::collections::VecDeque;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::checkpoint::{Checkpointed, write_checkpoint};
use super::compaction::CompactionTask;
use super::compactor::{Compactor, SetChanged};
use super::inventory::DirectoryFiles;
use super::memtable::{FlushDone, FlushFailed, FrozenMemtable, MemtableActor, SegmentsChanged};
use super::merge::{ExpiredAsTombstones, MemTableIter};
use super::range_delete::{self, DeletedAsTombstones, RangeTombstone};
use super::segment::{FileNumbers, Segment, SegmentBuilder};
use super::stats::Counters;
use super::version::SegmentSet;
use crate::format::manifest::write_manifest;
use crate::format::sstable::{BlockCache, TableOptions};
use crate::format::{EntryIter, segment_file_name, wal_file_name};
use crate::fs::DirectoryLock;
use crate::proto::storage::{Manifest, SegmentMeta};
use crate::{Error, Options, Result};

/// How long a failed flush waits before it is tried again.
const FLUSH_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Tells the manager who to report to (they start after it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub memtable: Addr<MemtableActor>,
    pub compactor: Addr<Compactor>,
}

/// Writes a frozen memtable into a level-0 segment.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushMemtable {
    pub frozen: Arc<FrozenMemtable>,
    /// The WAL the memtable actor started after `frozen`'s, once it exists
    /// (its directory entry durable); `None` when none could be started.
    pub next_wal: Option<u64>,
}

/// The memtable actor started WAL `number` after a full disk stopped
/// writes, and no write it holds is in an older WAL: every write before the
/// pause is in a frozen memtable sent (and so queued) before this message.
/// Once those are flushed, the WALs below `number` hold nothing live.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WalResumed {
    pub number: u64,
}

/// Swaps a compaction's inputs for its outputs (already written and synced).
/// Answered with the new set.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InstallCompaction {
    pub task: CompactionTask,
    pub outputs: Vec<SegmentMeta>,
    /// Sequence numbers of the range tombstones the merge applied.
    pub known_tombstones: Vec<u64>,
    pub reply: oneshot::Sender<Result<Arc<SegmentSet>>>,
}

/// Finishes the running job, drops the queue and the directory lock, stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSegments {
    pub reply: oneshot::Sender<()>,
    /// Set when the memtable actor closed cleanly (its WAL synced): every
    /// write up to it is acknowledged and in the segments or the live WALs.
    /// The last manifest records it (`closed_at_seq`).
    pub clean_at_seq: Option<u64>,
}

/// Writes a checkpoint of the current segment set (see `checkpoint.rs`);
/// queued behind running jobs, so no segment it links is removed under it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckpointSegments {
    pub target: PathBuf,
    pub reply: oneshot::Sender<Result<Checkpointed>>,
}

enum Job {
    Flush(Arc<FrozenMemtable>, Option<u64>),
    Install(InstallCompaction),
    /// Moves `oldest_live_wal` to a WAL started after a full disk.
    RetireWalsBelow(u64),
    Checkpoint(CheckpointSegments),
}

/// What the manager starts from, as recovery left it.
pub struct SegmentManagerStart {
    pub options: Arc<Options>,
    pub set: Arc<SegmentSet>,
    pub flushed_seq: u64,
    /// The WAL recovery started; WALs below it are gone.
    pub oldest_live_wal: u64,
    pub file_numbers: Arc<FileNumbers>,
    pub counters: Arc<Counters>,
    /// The directory lock, shared with every blocking job that writes there.
    pub lock: Arc<dyn DirectoryLock>,
    /// Where a flush puts the blocks it writes
    /// ([`Options::caches_flushed_blocks`]), if anywhere.
    pub flush_cache: Option<Arc<BlockCache>>,
}

/// Owns the segment set and the manifest. See the module doc.
pub struct SegmentManager {
    options: Arc<Options>,
    set: Arc<SegmentSet>,
    flushed_seq: u64,
    /// WALs numbered below this are flushed; recorded in the manifest.
    oldest_live_wal: u64,
    file_numbers: Arc<FileNumbers>,
    counters: Arc<Counters>,
    jobs: VecDeque<Job>,
    busy: bool,
    memtable: Option<Addr<MemtableActor>>,
    compactor: Option<Addr<Compactor>>,
    lock: Option<Arc<dyn DirectoryLock>>,
    closing: Option<CloseSegments>,
    flush_cache: Option<Arc<BlockCache>>,
}

/// What a finished job hands back to the actor.
struct JobResult {
    set: Arc<SegmentSet>,
    flushed_seq: u64,
    oldest_live_wal: u64,
}

impl SegmentManager {
    /// A manager over the recovered set.
    pub fn new(start: SegmentManagerStart) -> Self {
        SegmentManager {
            options: start.options,
            set: start.set,
            flushed_seq: start.flushed_seq,
            oldest_live_wal: start.oldest_live_wal,
            file_numbers: start.file_numbers,
            counters: start.counters,
            jobs: VecDeque::new(),
            busy: false,
            memtable: None,
            compactor: None,
            lock: Some(start.lock),
            closing: None,
            flush_cache: start.flush_cache,
        }
    }

    fn run_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        if self.closing.is_some() {
            self.finish_close(ctx);
            return;
        }
        let Some(job) = self.jobs.pop_front() else {
            return;
        };
        self.busy = true;
        let context = JobContext {
            options: self.options.clone(),
            numbers: self.file_numbers.clone(),
            counters: self.counters.clone(),
            set: self.set.clone(),
            flushed_seq: self.flushed_seq,
            oldest_live_wal: self.oldest_live_wal,
            flush_cache: self.flush_cache.clone(),
            _lock: self.lock.clone(),
        };
        match job {
            Job::Flush(frozen, next_wal) => {
                let for_thread = frozen.clone();
                let work =
                    actix_rt::task::spawn_blocking(move || context.flush(&for_thread, next_wal));
                let fut = async move { joined(work.await) };
                ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
                    act.busy = false;
                    act.flush_finished(result, frozen, next_wal, ctx);
                    act.run_next(ctx);
                }));
            }
            Job::RetireWalsBelow(number) => {
                let work =
                    actix_rt::task::spawn_blocking(move || context.retire_wals_below(number));
                let fut = async move { joined(work.await) };
                ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
                    act.busy = false;
                    act.retire_finished(result, number, ctx);
                    act.run_next(ctx);
                }));
            }
            Job::Checkpoint(request) => {
                let target = request.target;
                let work = actix_rt::task::spawn_blocking(move || context.checkpoint(&target));
                let fut = async move { joined(work.await) };
                ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
                    act.busy = false;
                    let _ = request.reply.send(result);
                    act.run_next(ctx);
                }));
            }
            Job::Install(install) => {
                let (task, outputs) = (install.task.clone(), install.outputs.clone());
                let known = install.known_tombstones.clone();
                let work =
                    actix_rt::task::spawn_blocking(move || context.install(&task, outputs, &known));
                let fut = async move { joined(work.await) };
                ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
                    act.busy = false;
                    let reply = result.map(|done| {
                        act.publish(done, None);
                        act.set.clone()
                    });
                    let _ = install.reply.send(reply);
                    act.run_next(ctx);
                }));
            }
        }
    }

    fn flush_finished(
        &mut self,
        result: Result<JobResult>,
        frozen: Arc<FrozenMemtable>,
        next_wal: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        match result {
            Ok(done) => self.publish(done, Some(frozen.wal_number)),
            Err(error) => {
                log::error!(
                    "flush of WAL {} failed, retrying: {error}",
                    frozen.wal_number
                );
                Counters::add(&self.counters.background_errors, 1);
                if let Some(memtable) = &self.memtable {
                    memtable.do_send(FlushFailed { error });
                }
                self.retry_later(Job::Flush(frozen, next_wal), ctx);
            }
        }
    }

    fn retire_finished(&mut self, result: Result<u64>, number: u64, ctx: &mut Context<Self>) {
        match result {
            Ok(oldest_live_wal) => self.oldest_live_wal = oldest_live_wal,
            Err(error) => {
                log::error!(
                    "recording that WALs below {number} are flushed failed, retrying: {error}"
                );
                Counters::add(&self.counters.background_errors, 1);
                self.retry_later(Job::RetireWalsBelow(number), ctx);
            }
        }
    }

    /// Holds the queue, in order, until `job` is tried again.
    fn retry_later(&mut self, job: Job, ctx: &mut Context<Self>) {
        self.busy = true;
        ctx.run_later(FLUSH_RETRY_DELAY, move |act, ctx| {
            act.busy = false;
            act.jobs.push_front(job);
            act.run_next(ctx);
        });
    }

    fn publish(&mut self, done: JobResult, flushed_wal: Option<u64>) {
        self.set = done.set;
        self.flushed_seq = done.flushed_seq;
        self.oldest_live_wal = done.oldest_live_wal;
        // The compactor first: once the memtable answers a flush, the
        // caller's next CompactAll must find the flushed segment in the set.
        if let Some(compactor) = &self.compactor {
            compactor.do_send(SetChanged {
                set: self.set.clone(),
                checks_at: self.counters.extra_segment_checks.load(Ordering::Relaxed),
            });
        }
        if let Some(memtable) = &self.memtable {
            match flushed_wal {
                Some(wal_number) => memtable.do_send(FlushDone {
                    wal_number,
                    segments: self.set.clone(),
                }),
                None => memtable.do_send(SegmentsChanged(self.set.clone())),
            }
        }
    }

    fn finish_close(&mut self, ctx: &mut Context<Self>) {
        self.jobs.clear();
        let closing = self.closing.take();
        if let Some(seq) = closing.as_ref().and_then(|c| c.clean_at_seq) {
            self.record_clean_close(seq);
        }
        self.lock = None;
        if let Some(closing) = closing {
            let _ = closing.reply.send(());
        }
        ctx.stop();
    }

    /// Writes the last manifest with `closed_at_seq`, so that the next
    /// open refuses WALs that end before `seq` (every write past
    /// `flushed_seq` is in a live WAL: a frozen memtable's WAL stays live
    /// until its flush is installed). A failure here costs only that
    /// check, so it is logged, not returned.
    fn record_clean_close(&self, seq: u64) {
        let manifest = manifest_of(
            &self.file_numbers,
            &self.set,
            self.flushed_seq,
            self.oldest_live_wal,
            seq,
        );
        let fs = self.options.fs.as_ref();
        if let Err(error) = write_manifest(fs, &self.options.directory, &manifest) {
            log::warn!("could not record the clean close in the MANIFEST: {error}");
        }
    }
}

fn joined<T>(result: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    result.unwrap_or_else(|e| {
        Err(Error::io(
            "segment job thread",
            std::io::Error::other(e.to_string()),
        ))
    })
}

/// What a job's blocking thread needs.
struct JobContext {
    options: Arc<Options>,
    numbers: Arc<FileNumbers>,
    counters: Arc<Counters>,
    set: Arc<SegmentSet>,
    flushed_seq: u64,
    oldest_live_wal: u64,
    flush_cache: Option<Arc<BlockCache>>,
    /// Keeps the directory locked until the job's files are done, even if
    /// the actor is gone (a `Db` dropped without `close`).
    _lock: Option<Arc<dyn DirectoryLock>>,
}

impl JobContext {
    fn table_options(&self) -> TableOptions {
        TableOptions::from(&*self.options)
    }

    /// Memtable to segment, manifest, then the flushed WALs go.
    ///
    /// The manifest's `oldest_live_wal` moves to `next_wal`, the WAL the
    /// memtable actor started after the frozen memtable's, and only once
    /// that WAL exists: the number is then exact (never just a lower
    /// bound), so open refuses the database when that WAL is missing. With
    /// no next WAL (the actor could not start one) it stays where it was.
    fn flush(&self, frozen: &FrozenMemtable, next_wal: Option<u64>) -> Result<JobResult> {
        let started = std::time::Instant::now();
        let metas = write_segments(
            &self.options,
            &self.numbers,
            self.table_options(),
            frozen,
            self.flush_cache.clone(),
        )?;
        let bytes: u64 = metas.iter().map(|m| m.file_size).sum();
        let (keys, segments) = (
            metas.iter().map(|m| m.entry_count).sum::<u64>(),
            metas.len(),
        );
        let flushed_seq = self.flushed_seq.max(frozen.max_seq);
        let wals = DirectoryFiles::list(self.options.fs.as_ref(), &self.options.directory)?.wals;
        let oldest_live_wal = match next_wal {
            Some(next) => self.oldest_live_wal.max(next),
            None => self.oldest_live_wal,
        };
        let edit = TombstoneEdit::Flushed(&frozen.range_tombstones);
        let set = self.commit(metas, &[], edit, flushed_seq, oldest_live_wal)?;
        self.remove_wals_below(&wals, oldest_live_wal);
        Counters::add(&self.counters.flushes, 1);
        Counters::add(&self.counters.flush_bytes, bytes);
        let ms = started.elapsed().as_millis();
        log::info!(
            "flushed WAL {}: {keys} entries, {bytes} bytes in {segments} segment(s), {ms} ms",
            frozen.wal_number
        );
        Ok(JobResult {
            set,
            flushed_seq,
            oldest_live_wal,
        })
    }

    /// Records in the manifest that WALs below `number` (a WAL started
    /// after a full disk, see [`WalResumed`]) are flushed, then removes
    /// them. Without this a WAL flushed while no next WAL existed would
    /// stay until the next flush, which the space it holds may prevent.
    fn retire_wals_below(&self, number: u64) -> Result<u64> {
        if number <= self.oldest_live_wal {
            return Ok(self.oldest_live_wal);
        }
        let fs = self.options.fs.as_ref();
        let wals = DirectoryFiles::list(fs, &self.options.directory)?.wals;
        let manifest = manifest_of(&self.numbers, &self.set, self.flushed_seq, number, 0);
        write_manifest(fs, &self.options.directory, &manifest)?;
        self.remove_wals_below(&wals, number);
        log::info!("WALs below {number} are flushed and removed");
        Ok(number)
    }

    /// Removes the WALs in `wals` numbered below `oldest_live_wal` (the
    /// manifest that says they are flushed is durable).
    fn remove_wals_below(&self, wals: &[u64], oldest_live_wal: u64) {
        for number in wals.iter().filter(|n| **n < oldest_live_wal) {
            let wal = self.options.directory.join(wal_file_name(*number));
            if let Err(error) = self.options.fs.remove_file(&wal) {
                log::warn!("could not remove flushed WAL {}: {error}", wal.display());
            }
        }
    }

    /// The live segments linked into `target` with a manifest of their own.
    fn checkpoint(&self, target: &Path) -> Result<Checkpointed> {
        write_checkpoint(
            self.options.fs.as_ref(),
            &self.options.directory,
            &self.set,
            self.flushed_seq,
            &self.numbers,
            target,
        )
    }

    /// Manifest with the outputs in and the inputs out, then the inputs go.
    fn install(
        &self,
        task: &CompactionTask,
        outputs: Vec<SegmentMeta>,
        known_tombstones: &[u64],
    ) -> Result<JobResult> {
        // An input moved to a deeper level without a rewrite is an output too.
        let kept: Vec<u64> = outputs.iter().map(|m| m.file_number).collect();
        let set = self.commit(
            outputs,
            &task.inputs,
            TombstoneEdit::Compacted(known_tombstones),
            self.flushed_seq,
            self.oldest_live_wal,
        )?;
        for number in task.inputs.iter().filter(|n| !kept.contains(n)) {
            let path = self.options.directory.join(segment_file_name(*number));
            if let Err(error) = self.options.fs.remove_file(&path) {
                log::warn!(
                    "could not remove compacted segment {}: {error}",
                    path.display()
                );
            }
        }
        Ok(JobResult {
            set,
            flushed_seq: self.flushed_seq,
            oldest_live_wal: self.oldest_live_wal,
        })
    }

    /// The segment `meta` names: a live one moved to another level keeps
    /// its open table (and so its cached blocks, index and filter); any
    /// other is opened from its file.
    fn reopened(&self, meta: SegmentMeta, database_id: u64) -> Result<Arc<Segment>> {
        let live = self
            .set
            .all()
            .find(|s| s.meta.file_number == meta.file_number && s.meta.file_size == meta.file_size);
        match live {
            Some(segment) => Ok(Arc::new(Segment {
                meta,
                reader: segment.reader.clone(),
            })),
            None => {
                let fs = self.options.fs.as_ref();
                Segment::open(fs, &self.options.directory, meta, database_id).map(Arc::new)
            }
        }
    }

    /// Opens `added`, writes the manifest of the edited set, returns the set.
    fn commit(
        &self,
        added: Vec<SegmentMeta>,
        removed: &[u64],
        tombstones: TombstoneEdit<'_>,
        flushed_seq: u64,
        oldest_live_wal: u64,
    ) -> Result<Arc<SegmentSet>> {
        let fs = self.options.fs.as_ref();
        let directory = &self.options.directory;
        let database_id = self.numbers.database_id();
        let opened = added
            .into_iter()
            .map(|meta| self.reopened(meta, database_id))
            .collect::<Result<Vec<_>>>()?;
        let added: Vec<u64> = opened.iter().map(|s| s.meta.file_number).collect();
        let mut set = self.set.edited(removed, opened);
        // Never installed: a bug upstream must fail the job, not the reads.
        if let Some((level, a, b)) = set.overlap_in_a_level() {
            return Err(Error::corruption(
                directory.join(segment_file_name(b)),
                0,
                format!("would overlap segment {a} in level {level}; not installed"),
            ));
        }
        set.range_tombstones = match tombstones {
            TombstoneEdit::Flushed(flushed) => range_delete::install_flushed(&set, &added, flushed),
            TombstoneEdit::Compacted(known) => {
                range_delete::after_compaction(&set.range_tombstones, removed, &added, known)
            }
        };
        let manifest = manifest_of(&self.numbers, &set, flushed_seq, oldest_live_wal, 0);
        write_manifest(fs, directory, &manifest)?;
        Ok(Arc::new(set))
    }
}

/// The manifest naming `set`; `closed_at_seq` 0 but in the last one a
/// clean close writes.
fn manifest_of(
    numbers: &FileNumbers,
    set: &SegmentSet,
    flushed_seq: u64,
    oldest_live_wal: u64,
    closed_at_seq: u64,
) -> Manifest {
    Manifest {
        next_file_number: numbers.peek(),
        flushed_seq,
        segments: set.metas(),
        oldest_live_wal,
        // The manager starts from the WAL recovery created and moves only
        // to WALs that exist (`JobContext::flush`).
        oldest_live_wal_exists: true,
        wal_lineage: numbers.wal_identity().wal_lineage,
        database_id: numbers.database_id(),
        range_tombstones: range_delete::to_manifest(&set.range_tombstones),
        closed_at_seq,
    }
}

/// How a commit changes the installed range tombstones.
enum TombstoneEdit<'a> {
    /// A flush installs the memtable's range tombstones (it applied them).
    Flushed(&'a [RangeTombstone]),
    /// A compaction applied the installed tombstones with these numbers.
    Compacted(&'a [u64]),
}

/// Writes a frozen memtable as level-0 segment(s) and syncs the directory,
/// without the versions its own range tombstones delete; their blocks go
/// into `cache` too, if given.
pub fn write_segments(
    options: &Options,
    numbers: &FileNumbers,
    table_options: TableOptions,
    frozen: &FrozenMemtable,
    cache: Option<Arc<BlockCache>>,
) -> Result<Vec<SegmentMeta>> {
    let fs = options.fs.as_ref();
    let builder = SegmentBuilder::new(fs, &options.directory, numbers, table_options, u64::MAX, 0)
        .caching_blocks(cache);
    let all = (Bound::Unbounded, Bound::Unbounded);
    // Expired entries go out as tombstones: their values take no space.
    let now_ms = options.clock.now_ms();
    // With a point index, one sort of its arena (see `newest_in_order`).
    let entries: Box<dyn EntryIter> = match frozen.table.newest_in_order() {
        Some(sorted) => Box::new(sorted),
        None => Box::new(MemTableIter::new(frozen.table.clone(), all, false)),
    };
    let tombstones = frozen.range_tombstones.clone();
    builder.write_all(&mut ExpiredAsTombstones(
        DeletedAsTombstones::new(entries, tombstones),
        now_ms,
    ))
}

impl Actor for SegmentManager {
    type Context = Context<Self>;
}

impl Handler<Connect> for SegmentManager {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        msg.compactor.do_send(SetChanged {
            set: self.set.clone(),
            checks_at: self.counters.extra_segment_checks.load(Ordering::Relaxed),
        });
        self.memtable = Some(msg.memtable);
        self.compactor = Some(msg.compactor);
    }
}

impl Handler<FlushMemtable> for SegmentManager {
    type Result = ();
    fn handle(&mut self, msg: FlushMemtable, ctx: &mut Context<Self>) {
        self.jobs.push_back(Job::Flush(msg.frozen, msg.next_wal));
        self.run_next(ctx);
    }
}

impl Handler<WalResumed> for SegmentManager {
    type Result = ();
    fn handle(&mut self, msg: WalResumed, ctx: &mut Context<Self>) {
        self.jobs.push_back(Job::RetireWalsBelow(msg.number));
        self.run_next(ctx);
    }
}

impl Handler<InstallCompaction> for SegmentManager {
    type Result = ();
    fn handle(&mut self, msg: InstallCompaction, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            let _ = msg.reply.send(Err(Error::Closed));
            return;
        }
        self.jobs.push_back(Job::Install(msg));
        self.run_next(ctx);
    }
}

impl Handler<CheckpointSegments> for SegmentManager {
    type Result = ();
    fn handle(&mut self, msg: CheckpointSegments, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            let _ = msg.reply.send(Err(Error::Closed));
            return;
        }
        self.jobs.push_back(Job::Checkpoint(msg));
        self.run_next(ctx);
    }
}

impl Handler<CloseSegments> for SegmentManager {
    type Result = ();
    fn handle(&mut self, msg: CloseSegments, ctx: &mut Context<Self>) {
        self.closing = Some(msg);
        self.run_next(ctx);
    }
}
