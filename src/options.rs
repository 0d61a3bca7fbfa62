//! Engine options, one struct with documented defaults. The server's clap
//! flags mirror the ones an operator tunes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::fs::{FileSystem, StdFs};

/// When an acknowledged write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Acknowledge after fdatasync of the WAL. Writers that arrive while a
    /// sync runs share the next one (group commit). The default.
    Always,
    /// Write the WAL at once, fdatasync it every interval: a crash may lose
    /// the last interval's acknowledged writes.
    Interval(Duration),
    /// Never fdatasync the WAL; the operating system writes it when it likes.
    None,
}

/// How a database is opened and run. `Options::new(dir)` gives the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database's directory; created (mode 0700) if missing.
    pub directory: PathBuf,
    /// WAL durability; default [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Memory for all memtables together, the active one and the frozen
    /// ones waiting to be flushed; default 64 MiB. The active memtable is
    /// frozen and flushed past [`Options::memtable_freeze_bytes`]:
    /// `memtable_bytes / (1 + max_frozen_memtables)`, 32 MiB by default.
    pub memtable_bytes: usize,
    /// Frozen memtables that may wait to be flushed (at least 1 is used);
    /// default 1 (one filling, one flushing). While this many wait and the
    /// active memtable is full, writers are slowed.
    pub max_frozen_memtables: usize,
    /// Longest key accepted; default 64 KiB. Keys are at least one byte.
    pub max_key_bytes: usize,
    /// Longest value accepted; default 32 MiB.
    pub max_value_bytes: usize,
    /// Target size of an SSTable data block before compression; default 4 KiB.
    pub block_bytes: usize,
    /// Memory for data blocks kept checked and indexed for point lookups,
    /// shared by all segments; default 32 MiB. 0 turns the cache off (every
    /// get then reads its block, usually from the OS page cache).
    pub block_cache_bytes: usize,
    /// Bloom filter bits per key; default 10 (about 1% false positives).
    pub bloom_bits_per_key: usize,
    /// Compaction splits its output into segments of about this size;
    /// default 32 MiB.
    pub target_segment_bytes: u64,
    /// Level 0 is merged into level 1 when it holds this many segments;
    /// default 4.
    pub l0_compaction_trigger: usize,
    /// Writers are slowed while level 0 holds this many segments; default 12.
    pub l0_stall_trigger: usize,
    /// Size budget of level 1; each deeper level gets `level_size_multiplier`
    /// times more. Default 64 MiB.
    pub level1_bytes: u64,
    /// Default 10.
    pub level_size_multiplier: u64,
    /// Threads that read segments for gets and scans; default: the number of cores.
    pub read_threads: usize,
    /// The file system; default the operating system's ([`StdFs`]).
    pub fs: Arc<dyn FileSystem>,
}

impl Options {
    /// The defaults, for a database in `directory`.
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        Options {
            directory: directory.into(),
            sync: SyncPolicy::Always,
            memtable_bytes: 64 << 20,
            max_frozen_memtables: 1,
            max_key_bytes: 64 << 10,
            max_value_bytes: 32 << 20,
            block_bytes: 4 << 10,
            block_cache_bytes: 32 << 20,
            bloom_bits_per_key: 10,
            target_segment_bytes: 32 << 20,
            l0_compaction_trigger: 4,
            l0_stall_trigger: 12,
            level1_bytes: 64 << 20,
            level_size_multiplier: 10,
            read_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            fs: Arc::new(StdFs),
        }
    }

    /// The size at which the active memtable is frozen: `memtable_bytes`
    /// shared by the active memtable and up to `max_frozen_memtables`
    /// frozen ones, so that together they stay within `memtable_bytes`.
    pub fn memtable_freeze_bytes(&self) -> usize {
        let memtables = self.max_frozen_memtables.max(1).saturating_add(1);
        self.memtable_bytes / memtables
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtable_budget_is_shared_by_active_and_frozen_memtables() {
        let mut options = Options::new("unused");
        assert_eq!(options.memtable_freeze_bytes(), 32 << 20);
        options.max_frozen_memtables = 3;
        assert_eq!(options.memtable_freeze_bytes(), 16 << 20);
        options.max_frozen_memtables = 0; // treated as 1
        assert_eq!(options.memtable_freeze_bytes(), 32 << 20);
    }
}
