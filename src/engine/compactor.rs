//! The compactor actor: watches the segment set, asks the pure policy in
//! [`super::compaction`] what to merge, runs the merge on a blocking thread
//! and hands the output to the segment manager to install. One compaction
//! runs at a time, so the levels below a running merge do not change under it.
//!
//! Besides the set's changes, a timer looks again every
//! [`EXPIRY_CHECK_INTERVAL`]: a segment whose earliest expiry has passed is
//! rewritten (see `compaction::expired`) even when nothing is written, so
//! expired values leave the disk without being read; a compaction refused
//! for want of free space is tried again (writers stalled behind it would
//! otherwise wait for a change of the set that only it can bring); and
//! level 0 is merged early once gets have checked enough segments beyond
//! their first since the set last changed (`compaction::read_triggered`:
//! the engine counts those checks in a shared counter, read here). After
//! any other failed compaction the timer waits for the next change of the
//! set, as the rest does, instead of retrying a dead disk every tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::compaction::{self, CompactionTask};
use super::merge::{ExpiredAsTombstones, MergeIter};
use super::range_delete::{self, InstalledTombstone, Uncovered};
use super::segment::{FileNumbers, Segment, SegmentBuilder};
use super::segments::{InstallCompaction, SegmentManager};
use super::stats::Counters;
use super::version::{SegmentSet, chain_segments};
use crate::format::sstable::{BlockCache, BlockReads, TableOptions};
use crate::format::{Entry, EntryIter};
use crate::fs::DirectoryLock;
use crate::proto::storage::SegmentMeta;
use crate::{Error, Options, Result};

/// How often the compactor looks for segments holding expired values.
pub const EXPIRY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The segment set changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetChanged {
    pub set: Arc<SegmentSet>,
    /// `Counters::extra_segment_checks` when the set changed: gets' checks
    /// count toward a read-triggered merge from then, not from when this
    /// message is handled (gets made meanwhile, on other threads, paid for
    /// the new set too).
    pub checks_at: u64,
}

/// Merges everything into one sorted run, dropping tombstones; answered
/// once installed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CompactAll {
    pub reply: oneshot::Sender<Result<()>>,
}

/// Cancels a running merge and stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseCompactor {
    pub reply: oneshot::Sender<()>,
}

/// Runs compactions. See the module doc.
pub struct Compactor {
    options: Arc<Options>,
    numbers: Arc<FileNumbers>,
    counters: Arc<Counters>,
    segment_manager: Addr<SegmentManager>,
    latest: Arc<SegmentSet>,
    running: bool,
    /// The last compaction failed; cleared by the next change of the set.
    stalled: bool,
    /// The last compaction was refused for want of free space: the timer
    /// tries again (logged and counted once until one runs).
    waiting_for_space: bool,
    full_requests: Vec<oneshot::Sender<Result<()>>>,
    cancel: Arc<AtomicBool>,
    closing: Option<oneshot::Sender<()>>,
    /// Dropped at close, before the reply, so that the directory is free
    /// when `Db::close` returns.
    lock: Option<Arc<dyn DirectoryLock>>,
    /// `counters.extra_segment_checks` when the set last changed: gets'
    /// checks since then weigh for a read-triggered merge.
    checks_at_change: u64,
    /// The database's block cache, if merges of warm segments put their
    /// output there (`Options::cache_warm_merge_output`).
    cache: Option<Arc<BlockCache>>,
}

impl Compactor {
    /// A compactor reporting to `segment_manager`.
    pub fn new(
        options: Arc<Options>,
        numbers: Arc<FileNumbers>,
        counters: Arc<Counters>,
        segment_manager: Addr<SegmentManager>,
        lock: Arc<dyn DirectoryLock>,
    ) -> Self {
        Compactor {
            options,
            numbers,
            counters,
            segment_manager,
            latest: Arc::new(SegmentSet::default()),
            running: false,
            stalled: false,
            waiting_for_space: false,
            full_requests: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
            closing: None,
            lock: Some(lock),
            checks_at_change: 0,
            cache: None,
        }
    }

    /// Merges whose inputs are mostly in `cache` put their output there
    /// (`Options::cache_warm_merge_output`).
    pub fn caching_warm_output(mut self, cache: Option<Arc<BlockCache>>) -> Self {
        self.cache = cache;
        self
    }

    /// Segment checks beyond the first that gets made since the set last
    /// changed.
    fn checks_since_change(&self) -> u64 {
        let now = self.counters.extra_segment_checks.load(Ordering::Relaxed);
        now.saturating_sub(self.checks_at_change)
    }

    fn maybe_start(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        if let Some(reply) = self.closing.take() {
            self.lock = None;
            let _ = reply.send(());
            ctx.stop();
            return;
        }
        let levels = self.latest.meta_levels();
        let (task, waiters) = if self.full_requests.is_empty() {
            let task = compaction::pick(&levels, &self.options).or_else(|| {
                compaction::read_triggered(&levels, &self.options, self.checks_since_change())
            });
            let moved = task
                .as_ref()
                .and_then(|t| compaction::trivial_move(&levels, t));
            if let (Some(task), Some(moved)) = (task.clone(), moved) {
                self.running = true;
                self.run(task, Some(moved), Vec::new(), ctx);
                return;
            }
            let reclaim = || range_delete::reclaim_task(&levels, &self.latest);
            let expired = || compaction::expired(&levels, self.options.clock.now_ms());
            (task.or_else(reclaim).or_else(expired), Vec::new())
        } else {
            (
                compaction::full(&levels),
                std::mem::take(&mut self.full_requests),
            )
        };
        let Some(task) = task else {
            waiters.into_iter().for_each(|w| {
                let _ = w.send(Ok(()));
            });
            return;
        };
        self.running = true;
        self.run(task, None, waiters, ctx);
    }

    /// The same, starting from the segment set `latest` (the recovered one).
    pub fn starting_from(mut self, latest: Arc<SegmentSet>) -> Self {
        self.latest = latest;
        self
    }

    /// Runs `task`: installs `moved` (the inputs relabelled to the output
    /// level) if given, else merges the inputs into new segments.
    fn run(
        &mut self,
        task: CompactionTask,
        moved: Option<Vec<SegmentMeta>>,
        waiters: Vec<oneshot::Sender<Result<()>>>,
        ctx: &mut Context<Self>,
    ) {
        let merge = MergeJob {
            options: self.options.clone(),
            numbers: self.numbers.clone(),
            inputs: inputs_by_level(&self.latest, &task.inputs),
            tombstones: self.latest.range_tombstones.clone(),
            task: task.clone(),
            moved,
            cancel: self.cancel.clone(),
            cache: self.cache.clone(),
            _lock: self.lock.clone(),
        };
        let manager = self.segment_manager.clone();
        let counters = self.counters.clone();
        // A move rewrites nothing, so it applies no range tombstone: the
        // moved segments stay dirty for every one they were dirty for.
        let known_tombstones: Vec<u64> = match merge.moved {
            Some(_) => Vec::new(),
            None => self
                .latest
                .range_tombstones
                .iter()
                .map(|t| t.tombstone.seq)
                .collect(),
        };
        let bytes_in: u64 = merge
            .inputs
            .iter()
            .flatten()
            .map(|s| s.meta.file_size)
            .sum();
        let (started, inputs, level) = (
            std::time::Instant::now(),
            task.inputs.len(),
            task.output_level,
        );
        let work = async move {
            let outputs = actix_rt::task::spawn_blocking(move || merge.run())
                .await
                .unwrap_or_else(|e| {
                    Err(Error::io(
                        "compaction thread",
                        std::io::Error::other(e.to_string()),
                    ))
                })?;
            let (outputs, moved) = outputs;
            let bytes: u64 = if moved {
                0
            } else {
                outputs.iter().map(|m| m.file_size).sum()
            };
            let (reply, installed) = oneshot::channel();
            manager.do_send(InstallCompaction {
                task,
                outputs,
                known_tombstones,
                reply,
            });
            let set = installed.await.unwrap_or(Err(Error::Closed))?;
            Counters::add(&counters.compactions, 1);
            Counters::add(&counters.compaction_bytes, bytes);
            let ms = started.elapsed().as_millis();
            log::info!(
                "compacted {inputs} segment(s) into level {level}: {bytes_in} bytes in, {bytes} bytes out, {ms} ms"
            );
            Ok(set)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |result: Result<Arc<SegmentSet>>, act, ctx| {
                    act.running = false;
                    match result {
                        Ok(set) => {
                            if std::mem::take(&mut act.waiting_for_space) {
                                log::info!("compaction resumed: the disk has room again");
                                act.counters
                                    .compaction_waiting_for_space
                                    .store(0, Ordering::Relaxed);
                            }
                            act.adopt(set);
                            waiters.into_iter().for_each(|w| {
                                let _ = w.send(Ok(()));
                            });
                            act.maybe_start(ctx);
                        }
                        Err(error) if is_refused_for_space(&error) => {
                            // Not `stalled`: the timer looks again each
                            // second (a statvfs), since writers stalled
                            // behind level 0 make no other change.
                            if !std::mem::replace(&mut act.waiting_for_space, true) {
                                log::warn!("compaction postponed until the disk has room: {error}");
                                Counters::add(&act.counters.compactions_refused_for_space, 1);
                                act.counters
                                    .compaction_waiting_for_space
                                    .store(1, Ordering::Relaxed);
                            }
                            let queued = std::mem::take(&mut act.full_requests);
                            waiters.into_iter().chain(queued).for_each(|w| {
                                let _ = w.send(Err(error.clone()));
                            });
                            if act.closing.is_some() {
                                act.maybe_start(ctx);
                            }
                        }
                        Err(error) => {
                            act.stalled = true;
                            if act.closing.is_none() {
                                log::error!("compaction failed: {error}");
                                Counters::add(&act.counters.background_errors, 1);
                            }
                            // Full compactions asked for during this one would
                            // wait for the next change of the set, which a dead
                            // disk never brings: they fail with it.
                            let queued = std::mem::take(&mut act.full_requests);
                            waiters.into_iter().chain(queued).for_each(|w| {
                                let _ = w.send(Err(error.clone()));
                            });
                            // Try again on the next change of the segment set, not at once.
                            if act.closing.is_some() {
                                act.maybe_start(ctx);
                            }
                        }
                    }
                }),
        );
    }

    /// Keeps the newest set: replies and notices may arrive out of order.
    fn adopt(&mut self, set: Arc<SegmentSet>) {
        if set.version >= self.latest.version {
            self.latest = set;
        }
    }
}

/// True for the error `MergeJob::check_space` returns.
fn is_refused_for_space(error: &Error) -> bool {
    matches!(error, Error::Io { context, source }
        if source.kind() == std::io::ErrorKind::StorageFull && context.starts_with("compaction needs"))
}

/// The input segments, grouped by level, each level in the set's order.
fn inputs_by_level(set: &SegmentSet, numbers: &[u64]) -> Vec<Vec<Arc<Segment>>> {
    set.levels
        .iter()
        .map(|level| {
            level
                .iter()
                .filter(|s| numbers.contains(&s.meta.file_number))
                .cloned()
                .collect()
        })
        .collect()
}

/// A merge, with everything its blocking thread needs.
struct MergeJob {
    options: Arc<Options>,
    numbers: Arc<FileNumbers>,
    inputs: Vec<Vec<Arc<Segment>>>,
    /// The installed range deletes, whose victims the merge drops.
    tombstones: Arc<Vec<InstalledTombstone>>,
    task: CompactionTask,
    /// The inputs relabelled to the output level, when the task moves them
    /// instead of merging (see `compaction::trivial_move`).
    moved: Option<Vec<SegmentMeta>>,
    cancel: Arc<AtomicBool>,
    /// Where the output goes too if the inputs are warm.
    cache: Option<Arc<BlockCache>>,
    /// Keeps the directory locked while the merge writes, even if the actor
    /// is gone.
    _lock: Option<Arc<dyn DirectoryLock>>,
}

impl MergeJob {
    /// The output segments, and whether they are the inputs moved.
    fn run(self) -> Result<(Vec<SegmentMeta>, bool)> {
        if let Some(moved) = self.moved {
            return Ok((moved, true));
        }
        self.merge().map(|outputs| (outputs, false))
    }

    fn merge(self) -> Result<Vec<SegmentMeta>> {
        let fs = self.options.fs.as_ref();
        let directory = &self.options.directory;
        self.check_space()?;
        let table_options = TableOptions::from(&*self.options);
        let builder = SegmentBuilder::new(
            fs,
            directory,
            &self.numbers,
            table_options,
            self.options.target_segment_bytes,
            self.task.output_level,
        )
        .caching_blocks(self.warm_cache());
        let now_ms = self.options.clock.now_ms();
        let tombstones = self.tombstones.iter().map(|t| t.tombstone.clone());
        builder.write_all(&mut CompactionStream {
            merged: ExpiredAsTombstones(
                Uncovered::new(self.merged_inputs(), tombstones.collect()),
                now_ms,
            ),
            drop_tombstones: self.task.drop_tombstones,
            cancel: &self.cancel,
        })
    }

    /// The cache, if at least half the inputs' blocks are in it.
    fn warm_cache(&self) -> Option<Arc<BlockCache>> {
        let cache = self.cache.as_ref()?;
        let (mut blocks, mut cached) = (0, 0);
        for segment in self.inputs.iter().flatten() {
            let reader = &segment.reader;
            blocks += reader.block_count();
            cached += cache.cached_blocks(reader.cache_id(), reader.block_count());
        }
        log::debug!(
            "merge to level {}: {cached} of {blocks} input blocks cached",
            self.task.output_level
        );
        (blocks > 0 && cached * 2 >= blocks).then(|| cache.clone())
    }

    /// Refuses to start when the disk has less free space than the inputs
    /// take (a merge writes at most that much before it deletes them):
    /// better no compaction than one that fills the disk and fails.
    fn check_space(&self) -> Result<()> {
        let needed: u64 = self.inputs.iter().flatten().map(|s| s.meta.file_size).sum();
        let directory = &self.options.directory;
        let available = self
            .options
            .fs
            .available_bytes(directory)
            .map_err(|e| Error::io(format!("free space of {}", directory.display()), e))?;
        match available {
            Some(free) if free < needed => Err(Error::io(
                format!("compaction needs up to {needed} bytes, {free} are free"),
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            )),
            _ => Ok(()),
        }
    }

    /// The inputs merged, newest version of each key first.
    fn merged_inputs(&self) -> MergeIter {
        let all = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
        let mut sources: Vec<Box<dyn EntryIter>> = Vec::new();
        for (level, segments) in self.inputs.iter().enumerate() {
            if level == 0 {
                let iters = segments.iter().map(|s| s.reader.iter(all.clone(), false));
                sources.extend(iters.map(|iter| Box::new(iter) as Box<dyn EntryIter>));
            } else if !segments.is_empty() {
                sources.push(Box::new(chain_segments(
                    segments.clone(),
                    all.clone(),
                    false,
                    BlockReads::uncached(),
                )));
            }
        }
        MergeIter::new(sources, false)
    }
}

/// What a compaction writes: the merged inputs with expired entries made
/// tombstones, without tombstones when nothing deeper can hold the key;
/// stops with `Closed` when cancelled.
struct CompactionStream<'a> {
    merged: ExpiredAsTombstones<Uncovered<MergeIter>>,
    drop_tombstones: bool,
    cancel: &'a AtomicBool,
}

impl EntryIter for CompactionStream<'_> {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        while let Some(entry) = self.merged.next_entry()? {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Closed);
            }
            if entry.value.is_some() || !self.drop_tombstones {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }
}

impl Actor for Compactor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(EXPIRY_CHECK_INTERVAL, |act, ctx| {
            if !act.stalled {
                act.maybe_start(ctx);
            }
        });
    }
}

impl Handler<SetChanged> for Compactor {
    type Result = ();
    fn handle(&mut self, msg: SetChanged, ctx: &mut Context<Self>) {
        self.stalled = false;
        self.checks_at_change = self.checks_at_change.max(msg.checks_at);
        self.adopt(msg.set);
        self.maybe_start(ctx);
    }
}

impl Handler<CompactAll> for Compactor {
    type Result = ();
    fn handle(&mut self, msg: CompactAll, ctx: &mut Context<Self>) {
        self.full_requests.push(msg.reply);
        self.maybe_start(ctx);
    }
}

impl Handler<CloseCompactor> for Compactor {
    type Result = ();
    fn handle(&mut self, msg: CloseCompactor, ctx: &mut Context<Self>) {
        self.cancel.store(true, Ordering::Relaxed);
        self.closing = Some(msg.reply);
        self.maybe_start(ctx);
    }
}
