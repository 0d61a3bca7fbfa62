//! The threaded driver for engines with a blocking API (fjall, sled):
//! `--threads` OS threads take operation numbers from a shared counter, each
//! records its latencies in its own histogram, merged at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::args::Workload;
use crate::keys::{KEY_BYTES, Values, present_key};
use crate::measure::{Progress, Report, new_histogram, record, summarize};
use crate::workload::{BenchResult, Op, PAGE_ENTRIES, Spec, worker_rng};

/// An engine with a blocking API. Writes include the durability step the
/// sync mode asks for; dropping the engine closes it.
pub trait BlockingEngine: Send + Sync {
    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()>;
    /// True if the key was found.
    fn get(&self, key: &[u8]) -> BenchResult<bool>;
    fn delete(&self, key: &[u8]) -> BenchResult<()>;
    /// Writes a batch atomically (used only to load the database).
    fn put_batch(&self, entries: &[([u8; KEY_BYTES], &[u8])]) -> BenchResult<()>;
    /// Scans every key in order, calling `on_page` every `PAGE_ENTRIES`
    /// entries (and at the end); returns the entries seen.
    fn scan_all(&self, on_page: &mut dyn FnMut(usize)) -> BenchResult<u64>;
    /// Writes the memtable (or dirty pages) to disk and waits.
    fn flush(&self) -> BenchResult<()>;
}

/// Loads keys `0..num` in order in batches of `PAGE_ENTRIES`, then flushes.
pub fn prefill(engine: &dyn BlockingEngine, num: u64, values: &Values) -> BenchResult<()> {
    let mut batch = Vec::with_capacity(PAGE_ENTRIES);
    for id in 0..num {
        batch.push((present_key(id), values.get(id)));
        if batch.len() == PAGE_ENTRIES || id + 1 == num {
            engine.put_batch(&batch)?;
            batch.clear();
        }
    }
    engine.flush()
}

/// Runs the measured phase of `spec` and fills the timing fields of a report.
pub fn run(engine: Arc<dyn BlockingEngine>, spec: Spec, label: String) -> BenchResult<Report> {
    let values = Arc::new(Values::new(spec.value_size));
    let progress = Progress::start(label, spec.ops);
    let mut report = Report {
        ops: spec.ops,
        ..Report::default()
    };
    let start = Instant::now();
    let histogram = if spec.workload == Workload::Readseq {
        let mut histogram = new_histogram();
        let mut last = Instant::now();
        report.found = engine.scan_all(&mut |n| {
            record(&mut histogram, last.elapsed());
            progress.done.fetch_add(n as u64, Ordering::Relaxed);
            last = Instant::now();
        })?;
        histogram
    } else {
        run_workers(&engine, spec, &values, &progress, &mut report)?
    };
    let elapsed = start.elapsed();
    summarize(&mut report, &histogram, elapsed);
    Ok(report)
}

fn run_workers(
    engine: &Arc<dyn BlockingEngine>,
    spec: Spec,
    values: &Arc<Values>,
    progress: &Progress,
    report: &mut Report,
) -> BenchResult<Histogram<u64>> {
    let next = Arc::new(AtomicU64::new(0));
    let found = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = (spec.workload == Workload::Readwhilewriting)
        .then(|| spawn_writer(engine.clone(), spec, values.clone(), stop.clone()));
    let workers: Vec<_> = (0..spec.threads.max(1))
        .map(|w| {
            let (engine, next, found) = (engine.clone(), next.clone(), found.clone());
            let (values, done) = (values.clone(), progress.done.clone());
            std::thread::spawn(move || worker(&*engine, spec, w, &next, &found, &values, &done))
        })
        .collect();
    let mut histogram = new_histogram();
    let mut failure = None;
    for handle in workers {
        match handle.join() {
            Ok(Ok(h)) => histogram.add(&h).map_err(|e| e.to_string())?,
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("worker thread panicked".into()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        report.background_writes = writer.join().map_err(|_| "writer panicked")??;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    report.found = found.load(Ordering::Relaxed);
    Ok(histogram)
}

fn worker(
    engine: &dyn BlockingEngine,
    spec: Spec,
    id: usize,
    next: &AtomicU64,
    found: &AtomicU64,
    values: &Values,
    done: &AtomicU64,
) -> BenchResult<Histogram<u64>> {
    let permutation = spec.permutation();
    let mut rng = worker_rng(id);
    let mut histogram = new_histogram();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= spec.ops {
            return Ok(histogram);
        }
        let op = spec.op(&permutation, i, &mut rng);
        let start = Instant::now();
        let hit = match op {
            Op::Put(key, v) => engine.put(&key, values.get(v)).map(|()| false)?,
            Op::Get(key) => engine.get(&key)?,
            Op::Delete(key) => engine.delete(&key).map(|()| false)?,
        };
        record(&mut histogram, start.elapsed());
        found.fetch_add(u64::from(hit), Ordering::Relaxed);
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// readwhilewriting's writer: overwrites random keys until told to stop.
fn spawn_writer(
    engine: Arc<dyn BlockingEngine>,
    spec: Spec,
    values: Arc<Values>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BenchResult<u64>> {
    std::thread::spawn(move || {
        let mut rng = worker_rng(usize::MAX);
        let mut written = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = present_key(rng.below(spec.num.max(1)));
            engine.put(&key, values.get(written))?;
            written += 1;
        }
        Ok(written)
    })
}
