//! What a child process measures and reports: latencies (an HDR histogram),
//! bytes written (from /proc/self/io), bytes on disk and peak RSS.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One engine's result on one workload, as the child prints it (JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub engine: String,
    pub workload: String,
    /// `--value-kind` of the run.
    #[serde(default)]
    pub value_kind: String,
    pub sync: String,
    pub threads: usize,
    /// Requests each thread kept in flight (--naive-in-flight for NaiveKV,
    /// 1 for the blocking peers).
    #[serde(default)]
    pub in_flight_per_thread: usize,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Gets that found their key (reads) or entries scanned (readseq).
    pub found: u64,
    /// Writes the background writer of readwhilewriting completed.
    pub background_writes: u64,
    /// Keys plus values the workload asked to write.
    pub logical_bytes_written: u64,
    /// `write_bytes` of /proc/self/io, from the start of the workload until
    /// the database is closed (so a memtable flush on close is included, and
    /// the compaction the workload left, up to `--settle-secs`).
    pub disk_bytes_written: u64,
    /// Keys plus values live after the workload.
    pub logical_bytes_live: u64,
    /// Bytes allocated to the files under the database directory after close.
    pub disk_bytes_used: u64,
    /// VmHWM of the child process, in bytes.
    pub peak_rss_bytes: u64,
    /// The wait for background work before the measured phase (not timed).
    #[serde(default)]
    pub settle_before: crate::settle::Settled,
    /// The wait after the measured phase, before close; its writes are part
    /// of `disk_bytes_written`.
    #[serde(default)]
    pub settle_after: crate::settle::Settled,
    /// Engine counters worth printing (NaiveKV: writes_per_sync, wal_syncs).
    pub engine_stats: Vec<(String, u64)>,
}

/// Latencies in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 100_000_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    }
}

/// Records one latency, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    histogram.saturating_record(nanos.max(1));
}

/// Fills the latency fields of `report`.
pub fn summarize(report: &mut Report, histogram: &Histogram<u64>, elapsed: Duration) {
    let micros = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    report.seconds = elapsed.as_secs_f64();
    report.ops_per_sec = report.ops as f64 / report.seconds.max(1e-9);
    report.p50_us = micros(0.50);
    report.p99_us = micros(0.99);
    report.p999_us = micros(0.999);
}

/// `write_bytes` of /proc/self/io: bytes this process caused to be sent to
/// the storage layer (counted when pages are dirtied, fsync or not).
pub fn process_write_bytes() -> u64 {
    proc_field("/proc/self/io", "write_bytes:")
}

/// VmHWM of /proc/self/status (peak resident set), in bytes.
pub fn peak_rss_bytes() -> u64 {
    proc_field("/proc/self/status", "VmHWM:") * 1024
}

fn proc_field(path: &str, name: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Bytes allocated on disk to the files under `dir` (like `du`): a
/// preallocated or sparse file counts for the blocks it holds, not its length.
pub fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Prints a progress line to stderr every few seconds while a run lasts.
pub struct Progress {
    pub done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(label: String, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut next = Duration::from_secs(5);
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if start.elapsed() >= next {
                    let n = d.load(Ordering::Relaxed);
                    let rate = n as f64 / start.elapsed().as_secs_f64();
                    eprintln!("  [{label}] {n}/{total} ops, {rate:.0} ops/s");
                    next += Duration::from_secs(5);
                }
            }
        });
        Progress {
            done,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
