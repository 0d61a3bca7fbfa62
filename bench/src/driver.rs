//! The threaded driver: `--threads` OS threads take operation numbers from a
//! shared counter, each records its latencies in its own histogram, merged at
//! the end; readwhilewriting's writer has a thread of its own.
//!
//! What a thread does with its operations is the engine's: a blocking engine
//! (fjall, sled) calls its API once per operation; NaiveKV runs an actix
//! system on each thread (see `engines::naive`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::args::Workload;
use crate::keys::{KEY_BYTES, Permutation, Rng, Values, present_key};
use crate::measure::{Progress, Report, new_histogram, record, summarize};
use crate::workload::{BenchResult, Op, PAGE_ENTRIES, Spec, worker_rng};
use crate::ycsb::{Chooser, Inserts, Mix};

/// An engine with a blocking API. Writes include the durability step the
/// sync mode asks for; dropping the engine closes it.
pub trait BlockingEngine: Send + Sync {
    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()>;
    /// True if the key was found.
    fn get(&self, key: &[u8]) -> BenchResult<bool>;
    fn delete(&self, key: &[u8]) -> BenchResult<()>;
    /// Reads up to `limit` entries from `start` on; returns how many.
    fn scan(&self, start: &[u8], limit: usize) -> BenchResult<usize>;
    /// Writes a batch atomically (used only to load the database).
    fn put_batch(&self, entries: &[([u8; KEY_BYTES], &[u8])]) -> BenchResult<()>;
    /// Scans every key in order, calling `on_page` every `PAGE_ENTRIES`
    /// entries (and at the end); returns the entries seen.
    fn scan_all(&self, on_page: &mut dyn FnMut(usize)) -> BenchResult<u64>;
    /// Writes the memtable (or dirty pages) to disk and waits.
    fn flush(&self) -> BenchResult<()>;
    /// True if no flush or compaction is running or queued, as far as the
    /// engine tells (see `settle`). Default: always (no background work).
    fn idle(&self) -> BenchResult<bool> {
        Ok(true)
    }
    /// Gauges worth printing beside the result (fjall: its tables and
    /// level-0 tables at the end of the run). Default: none.
    fn gauges(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// What the driver runs on each of its threads.
pub trait ThreadedEngine: Send + Sync {
    /// One worker thread: performs operations from `ops` until it has none.
    fn work(&self, ops: &mut Ops) -> BenchResult<()>;
    /// readwhilewriting's writer: performs the writes of `writes` until it
    /// has none.
    fn write(&self, writes: &mut Writes) -> BenchResult<()>;
}

/// A blocking engine performs one operation at a time on each thread.
impl<E: BlockingEngine + ?Sized> ThreadedEngine for E {
    fn work(&self, ops: &mut Ops) -> BenchResult<()> {
        while let Some(op) = ops.next_op() {
            let start = Instant::now();
            let found = match op {
                Op::Put(key, v) => self.put(&key, ops.value(v)).map(|()| false)?,
                Op::Get(key) => self.get(&key)?,
                Op::Delete(key) => self.delete(&key).map(|()| false)?,
                Op::Insert(key, v, n) => {
                    self.put(&key, ops.value(v))?;
                    ops.inserts().acknowledge(n);
                    false
                }
                Op::Scan(key, limit) => self.scan(&key, limit)? > 0,
                Op::ReadModifyWrite(key, v) => {
                    let found = self.get(&key)?;
                    self.put(&key, ops.value(v))?;
                    found
                }
            };
            ops.completed(start.elapsed(), found);
        }
        Ok(())
    }

    fn write(&self, writes: &mut Writes) -> BenchResult<()> {
        while let Some((key, value)) = writes.next_write() {
            self.put(&key, value)?;
        }
        Ok(())
    }
}

/// Loads keys `0..num` in batches of `PAGE_ENTRIES`, then flushes: in key
/// order, or in `random`'s order (fillrandom's) if given.
pub fn prefill(
    engine: &dyn BlockingEngine,
    num: u64,
    values: &Values,
    random: Option<&Permutation>,
) -> BenchResult<()> {
    let mut batch = Vec::with_capacity(PAGE_ENTRIES);
    for i in 0..num {
        let id = random.map_or(i, |p| p.at(i));
        batch.push((present_key(id), values.get(id)));
        if batch.len() == PAGE_ENTRIES || i + 1 == num {
            engine.put_batch(&batch)?;
            batch.clear();
        }
    }
    engine.flush()
}

/// Runs the measured phase of `spec` and fills the timing fields of a report.
pub fn run(engine: Arc<dyn BlockingEngine>, spec: Spec, label: String) -> BenchResult<Report> {
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
        run_threads(engine, spec, progress.done.clone(), &mut report)?
    };
    let elapsed = start.elapsed();
    summarize(&mut report, &histogram, elapsed);
    Ok(report)
}

/// Runs `spec.threads` worker threads (and, for readwhilewriting, the
/// writer's thread) until the operations are done; fills `report.found` and
/// `report.background_writes` and returns the merged latencies. Blocks the
/// calling thread until then.
pub fn run_threads<E: ThreadedEngine + ?Sized + 'static>(
    engine: Arc<E>,
    spec: Spec,
    done: Arc<AtomicU64>,
    report: &mut Report,
) -> BenchResult<Histogram<u64>> {
    let shared = Shared::new(spec, done);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = (spec.workload == Workload::Readwhilewriting).then(|| {
        let (engine, shared, stop) = (engine.clone(), shared.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut writes = Writes::new(shared, stop);
            engine.write(&mut writes).map(|()| writes.written)
        })
    });
    let workers: Vec<_> = (0..spec.threads.max(1))
        .map(|w| {
            let (engine, shared) = (engine.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut ops = Ops::new(shared, w);
                engine.work(&mut ops).map(|()| ops.histogram)
            })
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
    report.found = shared.found.load(Ordering::Relaxed);
    Ok(histogram)
}

/// A run whose requests all come from the calling thread (an async engine
/// keeping several in flight): its operations and, for readwhilewriting, the
/// writer's writes, which the caller runs as a task beside them.
pub struct InlineRun {
    pub ops: Ops,
    pub writes: Option<Writes>,
    stop: Arc<AtomicBool>,
}

impl InlineRun {
    pub fn new(spec: Spec, done: Arc<AtomicU64>) -> InlineRun {
        let shared = Shared::new(spec, done);
        let stop = Arc::new(AtomicBool::new(false));
        let writes = (spec.workload == Workload::Readwhilewriting)
            .then(|| Writes::new(shared.clone(), stop.clone()));
        InlineRun {
            ops: Ops::new(shared, 0),
            writes,
            stop,
        }
    }

    /// Tells the writer to stop: the operations are done.
    pub fn stop_writer(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Fills `report.found` and returns the latencies.
    pub fn finish(self, report: &mut Report) -> Histogram<u64> {
        report.found = self.ops.shared.found.load(Ordering::Relaxed);
        self.ops.histogram
    }
}

/// What the threads of one run share.
struct Shared {
    spec: Spec,
    values: Values,
    /// The number of the next operation to take.
    next: AtomicU64,
    /// Gets that found their key.
    found: AtomicU64,
    /// Operations completed (the progress line reads it).
    done: Arc<AtomicU64>,
    /// The inserts of a YCSB run.
    inserts: Arc<Inserts>,
}

impl Shared {
    fn new(spec: Spec, done: Arc<AtomicU64>) -> Arc<Shared> {
        Arc::new(Shared {
            spec,
            values: Values::new(spec.value_size, spec.value_kind),
            next: AtomicU64::new(0),
            found: AtomicU64::new(0),
            done,
            inserts: Arc::new(Inserts::default()),
        })
    }
}

/// One worker thread's operations: it takes their numbers from the counter
/// all threads share and records their latencies in its own histogram.
pub struct Ops {
    shared: Arc<Shared>,
    permutation: Permutation,
    rng: Rng,
    /// Draws the operations of a YCSB workload (`None`: `Spec::op` does).
    ycsb: Option<Chooser>,
    histogram: Histogram<u64>,
}

impl Ops {
    fn new(shared: Arc<Shared>, worker: usize) -> Ops {
        let spec = shared.spec;
        let ycsb = Mix::of(spec.workload).map(|mix| {
            let inserts = shared.inserts.clone();
            Chooser::new(mix, spec.distribution, spec.num, spec.ops, inserts)
        });
        Ops {
            permutation: spec.permutation(),
            ycsb,
            shared,
            rng: worker_rng(worker),
            histogram: new_histogram(),
        }
    }

    /// The next operation to perform, `None` once all have been taken.
    pub fn next_op(&mut self) -> Option<Op> {
        let i = self.shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.shared.spec.ops {
            return None;
        }
        Some(match &mut self.ycsb {
            Some(chooser) => chooser.op(i),
            None => self.shared.spec.op(&self.permutation, i, &mut self.rng),
        })
    }

    /// The inserts of a YCSB run (to acknowledge one once done).
    pub fn inserts(&self) -> &Arc<Inserts> {
        &self.shared.inserts
    }

    /// Value number `v` of a put.
    pub fn value(&self, v: u64) -> &[u8] {
        self.shared.values.get(v)
    }

    /// Counts an operation done after `latency`; `found`: a get found its key.
    pub fn completed(&mut self, latency: Duration, found: bool) {
        record(&mut self.histogram, latency);
        self.shared
            .found
            .fetch_add(u64::from(found), Ordering::Relaxed);
        self.shared.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// readwhilewriting's writes: overwrites of random keys until told to stop.
pub struct Writes {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    rng: Rng,
    /// Writes taken so far.
    pub written: u64,
}

impl Writes {
    fn new(shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Writes {
        Writes {
            shared,
            stop,
            rng: worker_rng(usize::MAX),
            written: 0,
        }
    }

    /// The next key and value to put, `None` once the readers are done.
    pub fn next_write(&mut self) -> Option<([u8; KEY_BYTES], &[u8])> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let key = present_key(self.rng.below(self.shared.spec.num.max(1)));
        let value = self.shared.values.get(self.written);
        self.written += 1;
        Some((key, value))
    }
}
