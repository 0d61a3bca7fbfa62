//! NaiveKV through its embedding API, inside an actix system.
//!
//! Durability: sync=always opens with `SyncPolicy::Always` (a write is
//! answered after fdatasync of the WAL; writers waiting meanwhile share the
//! next sync); sync=none opens with `SyncPolicy::None` (the WAL is written at
//! once, never synced). Other options are the defaults (64 MiB memtable,
//! 4 KiB blocks, no compression, no block cache, read threads = cores).
//!
//! Concurrency: `--threads` requests are kept in flight from one task (the
//! request methods enqueue eagerly and return 'static futures), rather than
//! `--threads` OS threads as for the blocking peers.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use naive_kv::{Db, Options, ScanRequest, SyncPolicy, WriteBatch};

use crate::args::{SyncMode, Workload};
use crate::keys::{Values, present_key};
use crate::measure::{
    Progress, Report, directory_bytes, new_histogram, process_write_bytes, record, summarize,
};
use crate::workload::{BenchResult, Op, PAGE_ENTRIES, Spec, worker_rng};

/// Counters of `Db::stats` copied into the report.
const STATS: [&str; 7] = [
    "writes_per_sync",
    "wal_syncs",
    "write_requests",
    "flushes",
    "compactions",
    "write_stalls",
    "bloom_filter_hits",
];

type Pending = Pin<Box<dyn Future<Output = (naive_kv::Result<bool>, Duration)>>>;

/// Opens the database in `dir` and runs the prefill or the measured phase.
pub fn run_child(dir: &Path, sync: SyncMode, spec: Spec, prefill: bool) -> BenchResult<Report> {
    let mut options = Options::new(dir);
    options.sync = match sync {
        SyncMode::Always => SyncPolicy::Always,
        SyncMode::None => SyncPolicy::None,
    };
    let dir = dir.to_path_buf();
    actix_rt::System::new().block_on(async move {
        let db = Db::open(options).await?;
        if prefill {
            load(&db, spec).await?;
            db.close().await?;
            return Ok(Report::default());
        }
        let written_before = process_write_bytes();
        let mut report = measure(&db, spec).await?;
        db.flush().await?;
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

/// Writes keys `0..num` in order, in batches, then flushes the memtable.
async fn load(db: &Db, spec: Spec) -> BenchResult<()> {
    let values = Values::new(spec.value_size);
    let mut pending = FuturesUnordered::new();
    let mut batch = WriteBatch::new();
    for id in 0..spec.num {
        let value = Bytes::copy_from_slice(values.get(id));
        batch.put(Bytes::copy_from_slice(&present_key(id)), value);
        if batch.len() == PAGE_ENTRIES || id + 1 == spec.num {
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

async fn measure(db: &Db, spec: Spec) -> BenchResult<Report> {
    let label = format!("naivekv {}", spec.workload.name());
    let progress = Progress::start(label, spec.ops);
    let mut report = Report {
        ops: spec.ops,
        ..Report::default()
    };
    let stop = Rc::new(AtomicBool::new(false));
    let writer = (spec.workload == Workload::Readwhilewriting)
        .then(|| actix_rt::spawn(background_writer(db.clone(), spec, stop.clone())));
    let start = Instant::now();
    let histogram = if spec.workload == Workload::Readseq {
        scan_all(db, &progress, &mut report).await?
    } else {
        keep_in_flight(db, spec, &progress, &mut report).await?
    };
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        report.background_writes = writer.await.map_err(|e| e.to_string())??;
    }
    summarize(&mut report, &histogram, elapsed);
    Ok(report)
}

async fn keep_in_flight(
    db: &Db,
    spec: Spec,
    progress: &Progress,
    report: &mut Report,
) -> BenchResult<hdrhistogram::Histogram<u64>> {
    let values = Arc::new(Values::new(spec.value_size));
    let permutation = spec.permutation();
    let mut rng = worker_rng(0);
    let mut histogram = new_histogram();
    let mut in_flight = FuturesUnordered::<Pending>::new();
    let mut next = 0u64;
    while next < spec.ops || !in_flight.is_empty() {
        while in_flight.len() < spec.threads.max(1) && next < spec.ops {
            in_flight.push(issue(db, spec.op(&permutation, next, &mut rng), &values));
            next += 1;
        }
        if let Some((outcome, latency)) = in_flight.next().await {
            report.found += u64::from(outcome?);
            record(&mut histogram, latency);
            progress.done.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(histogram)
}

/// Sends one request now; the future yields whether a get found its key.
fn issue(db: &Db, op: Op, values: &Values) -> Pending {
    let start = Instant::now();
    match op {
        Op::Put(key, v) => {
            let done = db.put(
                Bytes::copy_from_slice(&key),
                Bytes::copy_from_slice(values.get(v)),
            );
            Box::pin(async move { (done.await.map(|()| false), start.elapsed()) })
        }
        Op::Get(key) => {
            let done = db.get(Bytes::copy_from_slice(&key));
            Box::pin(async move { (done.await.map(|v| v.is_some()), start.elapsed()) })
        }
        Op::Delete(key) => {
            let done = db.delete(Bytes::copy_from_slice(&key));
            Box::pin(async move { (done.await.map(|()| false), start.elapsed()) })
        }
    }
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

/// readwhilewriting's writer: one put at a time until told to stop.
async fn background_writer(db: Db, spec: Spec, stop: Rc<AtomicBool>) -> BenchResult<u64> {
    let values = Values::new(spec.value_size);
    let mut rng = worker_rng(usize::MAX);
    let mut written = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = present_key(rng.below(spec.num.max(1)));
        db.put(
            Bytes::copy_from_slice(&key),
            Bytes::copy_from_slice(values.get(written)),
        )
        .await?;
        written += 1;
    }
    Ok(written)
}
