//! Engine counters: atomics shared by the actors, read by `Db::stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters that only grow. Relaxed atomics: each is a tally, not a signal.
#[derive(Debug, Default)]
pub struct Counters {
    /// Mutations applied (puts and deletes, batch members included).
    pub writes: AtomicU64,
    /// Write requests (a batch counts once).
    pub write_requests: AtomicU64,
    /// fdatasync calls on the WAL.
    pub wal_syncs: AtomicU64,
    /// Write requests made durable by those syncs.
    pub wal_synced_requests: AtomicU64,
    /// Bytes appended to WALs.
    pub wal_bytes: AtomicU64,
    /// Memtables flushed to segments.
    pub flushes: AtomicU64,
    /// Bytes written by flushes.
    pub flush_bytes: AtomicU64,
    /// Compactions finished.
    pub compactions: AtomicU64,
    /// Bytes written by compactions.
    pub compaction_bytes: AtomicU64,
    /// Times writers were held back because flushing or compaction fell behind.
    pub write_stalls: AtomicU64,
    /// Microseconds writers spent held back.
    pub write_stall_micros: AtomicU64,
    /// Point reads.
    pub gets: AtomicU64,
    /// Segment lookups a bloom filter answered without reading a block.
    pub bloom_filter_hits: AtomicU64,
    /// Segment lookups the bloom filter let through that found nothing.
    pub bloom_filter_false_positives: AtomicU64,
    /// Scans.
    pub scans: AtomicU64,
    /// Short scans that found a block neither cached nor in the page cache
    /// and were read again on the read pool (the rest ran on the caller's
    /// thread).
    pub scans_on_read_pool: AtomicU64,
    /// Background errors (failed flushes or compactions, retried later).
    pub background_errors: AtomicU64,
    /// Times compaction was postponed because the disk had less free space
    /// than its output could need (counted once until one runs; tried
    /// again every second).
    pub compactions_refused_for_space: AtomicU64,
    /// A gauge, 1 while compaction waits for free disk space (the last one
    /// was refused for it), else 0. While it is 1 and level 0 is at its
    /// stall trigger, writes fail at once instead of waiting.
    pub compaction_waiting_for_space: AtomicU64,
    /// Conditional writes refused because a key they read had changed.
    pub write_conflicts: AtomicU64,
    /// Segments gets checked beyond the first each asked (what the
    /// compactor weighs against a read-triggered merge; not reported).
    pub extra_segment_checks: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Every counter by name, plus `writes_per_sync`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let pairs = [
            ("writes", &self.writes),
            ("write_requests", &self.write_requests),
            ("wal_syncs", &self.wal_syncs),
            ("wal_synced_requests", &self.wal_synced_requests),
            ("wal_bytes", &self.wal_bytes),
            ("flushes", &self.flushes),
            ("flush_bytes", &self.flush_bytes),
            ("compactions", &self.compactions),
            ("compaction_bytes", &self.compaction_bytes),
            ("write_stalls", &self.write_stalls),
            ("write_stall_micros", &self.write_stall_micros),
            ("gets", &self.gets),
            ("bloom_filter_hits", &self.bloom_filter_hits),
            (
                "bloom_filter_false_positives",
                &self.bloom_filter_false_positives,
            ),
            ("scans", &self.scans),
            ("scans_on_read_pool", &self.scans_on_read_pool),
            ("background_errors", &self.background_errors),
            (
                "compactions_refused_for_space",
                &self.compactions_refused_for_space,
            ),
            ("write_conflicts", &self.write_conflicts),
            (
                "compaction_waiting_for_space",
                &self.compaction_waiting_for_space,
            ),
        ];
        let mut map: BTreeMap<String, u64> = pairs
            .iter()
            .map(|(name, c)| ((*name).to_string(), load(c)))
            .collect();
        let syncs = load(&self.wal_syncs);
        let per_sync = load(&self.wal_synced_requests)
            .checked_div(syncs)
            .unwrap_or(0);
        map.insert("writes_per_sync".to_string(), per_sync);
        map
    }
}

/// Engine counters and gauges, by name: `writes`, `wal_syncs`,
/// `writes_per_sync`, `flushes`, `compactions`, `write_stalls`,
/// `bloom_filter_hits`, `block_cache_hits`, `block_cache_misses`,
/// `block_cache_bytes`, `live_segments`, `bytes_on_disk`, `memtable_bytes`,
/// `compaction_debt_bytes`, `compactions_refused_for_space`,
/// `level_N_segments` and more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub counters: BTreeMap<String, u64>,
}

impl Stats {
    /// A counter's value, 0 if unknown.
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}
