//! NaiveKV through its embedding API, inside an actix system.
//!
//! Durability: sync=always opens with `SyncPolicy::Always` (a write is
//! answered after fdatasync of the WAL; writers waiting meanwhile share the
//! next sync); sync=none opens with `SyncPolicy::None` (the WAL is written at
//! once, never synced). Other options are the defaults: 64 MiB for all
//! memtables (the active one is flushed at 32 MiB, beside one frozen one),
//! 4 KiB blocks, no compression, a 32 MiB block cache, read threads = cores.
//!
//! Concurrency, two ways (two rows of the table):
//! - `naivekv`: as for the blocking peers, `--threads` OS threads issue the
//!   requests, taking operation numbers from one shared counter, each with
//!   its own latency histogram (the driver's `run_threads`). Each worker
//!   thread drives its requests with a plain `block_on` (no async runtime on
//!   it) and keeps `--naive-in-flight` requests in flight (default 1, like a
//!   peer's thread). readwhilewriting's writer is one more such thread. With
//!   `--sync always`, a put from such a thread is appended and synced by the
//!   thread itself (the engine's sync leader, `src/engine/memtable/direct.rs`).
//! - `naivekv-1sys`: `--threads` requests in flight from one task on the
//!   system that opened the database, where the memtable actor runs: an
//!   actix program embedding NaiveKV in its own system. The writer is a
//!   task beside it; the requests yield every 64 completions so it runs.
//!
//! A get answered from a memtable, a bloom filter, the block cache or the
//! page cache completes on the calling thread (other gets and scans go to
//! the read pool's threads). A put or delete is made by the calling thread
//! too while the memtable actor keeps the writers' lane open
//! (`src/engine/memtable/direct.rs`); otherwise, and for every durable write
//! from `naivekv-1sys`, it goes to the memtable actor, which lives on the
//! system that opened the database: this process's main thread, which
//! opens, loads, flushes and closes the database, runs readseq (one page at
//! a time) and keeps running its arbiter while `naivekv`'s workers run (it
//! awaits them through `spawn_blocking`).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use naive_kv::{Db, Options, ScanRequest, SyncPolicy, WriteBatch};

use crate::args::{Args, SyncMode, Workload};
use crate::driver::{self, InlineRun, Ops, ThreadedEngine, Writes};
use crate::keys::{Values, present_key};
use crate::measure::{
    Progress, Report, directory_bytes, new_histogram, process_write_bytes, record, summarize,
};
use crate::settle::{POLL, Settled, Watch};
use crate::workload::{BenchResult, Op, PAGE_ENTRIES, Spec};

/// Counters of `Db::stats` copied into the report.
const STATS: [&str; 10] = [
    "writes_per_sync",
    "wal_syncs",
    "write_requests",
    "flushes",
    "compactions",
    "write_stalls",
    "bloom_filter_hits",
    "live_segments",
    "level_0_segments",
    "scans_on_read_pool",
];

/// Where NaiveKV's requests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// `--threads` OS threads, each with this many
    /// requests in flight (engine `naivekv`).
    Threads { in_flight: usize },
    /// `--threads` requests in flight from one task on the actix system that
    /// opened the database, where the memtable actor runs (engine
    /// `naivekv-1sys`).
    OneSystem,
}

/// Compaction settings taken from the environment, for trying them without a
/// rebuild (unset: the engine's defaults): `NAIVEKV_BENCH_L0_TRIGGER`,
/// `NAIVEKV_BENCH_L0_STALL`, `NAIVEKV_BENCH_LEVEL1_MB`,
/// `NAIVEKV_BENCH_SEGMENT_MB`, `NAIVEKV_BENCH_MEMTABLE_MB`.
fn tuning_from_env(options: &mut Options) {
    let var = |name: &str| std::env::var(name).ok()?.parse::<u64>().ok();
    if let Some(trigger) = var("NAIVEKV_BENCH_L0_TRIGGER") {
        options.l0_compaction_trigger = trigger as usize;
    }
    if let Some(stall) = var("NAIVEKV_BENCH_L0_STALL") {
        options.l0_stall_trigger = stall as usize;
    }
    if let Some(mb) = var("NAIVEKV_BENCH_LEVEL1_MB") {
        options.level1_bytes = mb << 20;
    }
    if let Some(mb) = var("NAIVEKV_BENCH_SEGMENT_MB") {
        options.target_segment_bytes = mb << 20;
    }
    if let Some(mb) = var("NAIVEKV_BENCH_MEMTABLE_MB") {
        options.memtable_bytes = (mb << 20) as usize;
    }
}

/// Opens the database in `dir` and runs the prefill or the measured phase.
pub fn run_child(
    dir: &Path,
    args: &Args,
    spec: Spec,
    concurrency: Concurrency,
) -> BenchResult<Report> {
    let prefill = args.prefill;
    let load_random = args.load_random;
    let mut options = Options::new(dir);
    options.sync = match args.sync {
        SyncMode::Always => SyncPolicy::Always,
        SyncMode::None => SyncPolicy::None,
    };
    if let Some(compression) = args.compression {
        options.compression = compression;
    }
    tuning_from_env(&mut options);
    let dir = dir.to_path_buf();
    actix_rt::System::new().block_on(async move {
        let db = Db::open(options).await?;
        let settle_deadline = Duration::from_secs(args.settle_secs);
        if prefill {
            load(&db, spec, load_random).await?;
            let settled = settle(&db, settle_deadline).await?;
            eprintln!("loaded; settled {settled:?}");
            db.close().await?;
            return Ok(Report::default());
        }
        let settle_before = settle(&db, settle_deadline).await?;
        let written_before = process_write_bytes();
        let mut report = measure(&db, spec, concurrency).await?;
        db.flush().await?;
        report.settle_after = settle(&db, settle_deadline).await?;
        report.settle_before = settle_before;
        let stats = db.stats().await?;
        report.engine_stats = STATS
            .iter()
            .map(|s| (s.to_string(), stats.get(s)))
            .collect();
        db.close().await?;
        drop(db);
        report.disk_bytes_written = process_write_bytes() - written_before;
        report.disk_bytes_used = directory_bytes(&dir);
        Ok(report)
    })
}

/// Waits until the database owes no compaction and has no memtable waiting
/// to be flushed (`Db::stats`: `compaction_debt_bytes`, `frozen_memtables`),
/// polled as `settle` does for every engine.
async fn settle(db: &Db, deadline: Duration) -> BenchResult<Settled> {
    if deadline.is_zero() {
        return Ok(Settled::default());
    }
    let mut watch = Watch::start(deadline);
    loop {
        let stats = db.stats().await?;
        let idle = stats.get("compaction_debt_bytes") == 0 && stats.get("frozen_memtables") == 0;
        if let Some(settled) = watch.observe(idle) {
            return Ok(settled);
        }
        actix_rt::time::sleep(POLL).await;
    }
}

/// Writes keys `0..num` in batches, then flushes the memtable: in key order,
/// or in fillrandom's order if `random`.
async fn load(db: &Db, spec: Spec, random: bool) -> BenchResult<()> {
    let values = Values::new(spec.value_size, spec.value_kind);
    let order = random.then(|| spec.permutation());
    let mut pending = FuturesUnordered::new();
    let mut batch = WriteBatch::new();
    for i in 0..spec.num {
        let id = order.as_ref().map_or(i, |p| p.at(i));
        let value = Bytes::copy_from_slice(values.get(id));
        batch.put(Bytes::copy_from_slice(&present_key(id)), value);
        if batch.len() == PAGE_ENTRIES || i + 1 == spec.num {
            pending.push(db.write(std::mem::take(&mut batch)));
        }
        if pending.len() >= 8 {
            pending.next().await.transpose()?;
        }
    }
    while pending.next().await.transpose()?.is_some() {}
    db.flush().await?;
    Ok(())
}

async fn measure(db: &Db, spec: Spec, concurrency: Concurrency) -> BenchResult<Report> {
    let label = format!("naivekv {} {:?}", spec.workload.name(), concurrency);
    let progress = Progress::start(label, spec.ops);
    let mut report = Report {
        ops: spec.ops,
        ..Report::default()
    };
    let start = Instant::now();
    let histogram = match concurrency {
        _ if spec.workload == Workload::Readseq => scan_all(db, &progress, &mut report).await?,
        Concurrency::OneSystem => {
            let mut run = InlineRun::new(spec, progress.done.clone());
            let writer = run.writes.take().map(|mut writes| {
                let db = db.clone();
                actix_rt::spawn(async move {
                    write_all(&db, &mut writes).await.map(|()| writes.written)
                })
            });
            let done = keep_in_flight(db, &mut run.ops, spec.threads.max(1)).await;
            run.stop_writer();
            if let Some(writer) = writer {
                report.background_writes = writer.await.map_err(|e| e.to_string())??;
            }
            done?;
            run.finish(&mut report)
        }
        Concurrency::Threads { in_flight } => {
            let engine = Arc::new(Threads {
                db: db.clone(),
                in_flight: in_flight.max(1),
            });
            let done = progress.done.clone();
            // Waits for the threads on a blocking-pool thread, so that this
            // thread goes on running the memtable actor meanwhile.
            let (histogram, measured) = actix_rt::task::spawn_blocking(move || {
                driver::run_threads(engine, spec, done, &mut report).map(|h| (h, report))
            })
            .await
            .map_err(|e| e.to_string())??;
            report = measured;
            histogram
        }
    };
    let elapsed = start.elapsed();
    summarize(&mut report, &histogram, elapsed);
    Ok(report)
}

/// What each driver thread runs: requests on the shared database, driven by
/// a plain executor (no async runtime on the thread, as a program that
/// embeds the engine in ordinary threads would do).
struct Threads {
    db: Db,
    /// Requests each worker thread keeps in flight.
    in_flight: usize,
}

impl ThreadedEngine for Threads {
    fn work(&self, ops: &mut Ops) -> BenchResult<()> {
        futures_executor::block_on(keep_in_flight(&self.db, ops, self.in_flight))
    }

    fn write(&self, writes: &mut Writes) -> BenchResult<()> {
        futures_executor::block_on(write_all(&self.db, writes))
    }
}

/// Performs `ops` with `in_flight` requests in flight. Every so often it
/// yields to the other tasks of its thread: gets answered from memory
/// complete at once, and would otherwise starve them (the memtable actor,
/// readwhilewriting's writer).
async fn keep_in_flight(db: &Db, ops: &mut Ops, in_flight: usize) -> BenchResult<()> {
    let mut pending = FuturesUnordered::new();
    let mut completed = 0u64;
    loop {
        while pending.len() < in_flight
            && let Some(op) = ops.next_op()
        {
            pending.push(issue(db, op, ops));
        }
        match pending.next().await {
            Some((outcome, latency)) => ops.completed(latency, outcome?),
            None => return Ok(()),
        }
        completed += 1;
        if completed.is_multiple_of(64) {
            actix_rt::task::yield_now().await;
        }
    }
}

/// readwhilewriting's writer: one put at a time until the readers are done.
async fn write_all(db: &Db, writes: &mut Writes) -> BenchResult<()> {
    while let Some((key, value)) = writes.next_write() {
        let (key, value) = (Bytes::copy_from_slice(&key), Bytes::copy_from_slice(value));
        db.put(key, value).await?;
    }
    Ok(())
}

/// Sends one request now; the future yields whether a get found its key,
/// and the request's latency.
fn issue(
    db: &Db,
    op: Op,
    ops: &Ops,
) -> impl Future<Output = (naive_kv::Result<bool>, Duration)> + 'static {
    let start = Instant::now();
    let done = match op {
        Op::Put(key, v) => {
            let value = Bytes::copy_from_slice(ops.value(v));
            let put = db.put(Bytes::copy_from_slice(&key), value);
            Either::Left(put.map(|done| done.map(|()| false)))
        }
        Op::Get(key) => {
            let get = db.get(Bytes::copy_from_slice(&key));
            Either::Right(Either::Left(get.map(|found| found.map(|v| v.is_some()))))
        }
        Op::Delete(key) => {
            let delete = db.delete(Bytes::copy_from_slice(&key));
            Either::Right(Either::Right(Either::Left(
                delete.map(|done| done.map(|()| false)),
            )))
        }
        // Boxed: the YCSB-only operations, so that the others' futures
        // stay as they were.
        Op::Insert(key, v, n) => {
            let inserts = ops.inserts().clone();
            let value = Bytes::copy_from_slice(ops.value(v));
            let put = db.put(Bytes::copy_from_slice(&key), value);
            let insert = put.map(move |done| {
                inserts.acknowledge(n);
                done.map(|()| false)
            });
            Either::Right(Either::Right(Either::Right(insert.boxed_local())))
        }
        Op::Scan(key, limit) => {
            let mut request = ScanRequest::all();
            request.start = std::ops::Bound::Included(Bytes::copy_from_slice(&key));
            request.limit = limit;
            let scan = db.scan(request);
            let scanned = scan.map(|page| page.map(|page| !page.entries.is_empty()));
            Either::Right(Either::Right(Either::Right(scanned.boxed_local())))
        }
        Op::ReadModifyWrite(key, v) => {
            let (db, key) = (db.clone(), Bytes::copy_from_slice(&key));
            let value = Bytes::copy_from_slice(ops.value(v));
            let rmw = async move {
                let found = db.get(key.clone()).await?.is_some();
                db.put(key, value).await?;
                Ok::<bool, naive_kv::Error>(found)
            };
            Either::Right(Either::Right(Either::Right(rmw.boxed_local())))
        }
    };
    done.map(move |outcome| (outcome, start.elapsed()))
}

/// readseq: every key, one page of `PAGE_ENTRIES` at a time.
async fn scan_all(
    db: &Db,
    progress: &Progress,
    report: &mut Report,
) -> BenchResult<hdrhistogram::Histogram<u64>> {
    let mut histogram = new_histogram();
    let mut request = ScanRequest::all();
    request.limit = PAGE_ENTRIES;
    loop {
        let start = Instant::now();
        let page = db.scan(request.clone()).await?;
        record(&mut histogram, start.elapsed());
        report.found += page.entries.len() as u64;
        progress
            .done
            .fetch_add(page.entries.len() as u64, Ordering::Relaxed);
        match page.continuation(false) {
            Some(next) => request.start = std::ops::Bound::Included(next),
            None => return Ok(histogram),
        }
    }
}
