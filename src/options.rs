//! Engine options, one struct with documented defaults. The server's clap
//! flags mirror the ones an operator tunes.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::format::sstable::Compression;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, StdFs};

/// The smallest memtable budget [`Options::validate`] accepts: below it the
/// active memtable's share cannot hold a large value.
pub const MIN_MEMTABLE_BYTES: usize = 1 << 20;

/// When an acknowledged write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Acknowledge after fdatasync of the WAL. Writers that arrive while a
    /// sync runs share the next one (group commit). A write from a thread
    /// with no async runtime is synced by that thread itself, as its group's
    /// leader (it blocks until then, as it would waiting for the answer);
    /// one from an async task is group-committed by the memtable actor, so
    /// the task's thread never blocks on the disk. The default.
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
    /// Bytes a table writer (flush, compaction) collects before it writes
    /// them to the file; default 256 KiB. Writing each block as it was made
    /// took two `write(2)` calls per block, a fifth of a flush's time
    /// (docs/BENCHMARKS.md, session 27). 0 writes every block at once.
    pub table_write_buffer_bytes: usize,
    /// Memory for data blocks kept checked and indexed for point lookups,
    /// shared by all segments; default 32 MiB. 0 turns the cache off (every
    /// get then reads its block, usually from the OS page cache).
    pub block_cache_bytes: usize,
    /// Whether a flush also puts the blocks it writes into the block cache,
    /// so that gets of recently written keys find them in memory (RocksDB's
    /// `prepopulate_block_cache`, flushes only); default `true`. Only
    /// while the cache is at least 8 times
    /// [`Options::memtable_freeze_bytes`] ([`Options::caches_flushed_blocks`]):
    /// a flush into a smaller cache would push out much of what reads keep
    /// there. Without it a block enters the cache on its second read from
    /// the file: pipelined GETs of keys just written over the Redis port
    /// ran about 20 % slower until every block had been read twice
    /// (docs/BENCHMARKS.md, session 28).
    pub cache_flushed_blocks: bool,
    /// Whether a merge puts the blocks it writes into the block cache when
    /// at least half the blocks of the segments it rewrites were there
    /// (read at the merge's start): data that was warm stays warm, where
    /// otherwise every get after a level-0 merge read its block from the
    /// file, twice, before the block was cached again. A merge of cold
    /// segments leaves the cache alone. A warm merge's output is no larger
    /// than its inputs, at least half of which were cached blocks that no
    /// get asks for again once the merge is installed (so they go first);
    /// the cache's capacity bounds it as always. Default `true`.
    pub cache_warm_merge_output: bool,
    /// Bloom filter bits per key; default 10 (about 1% false positives).
    pub bloom_bits_per_key: usize,
    /// Whether each memtable keeps a point index (a hash from key to its
    /// newest version, `engine/memtable/index.rs`) so that a get of a key
    /// it holds skips the skip-list search; default `false`. It costs 88
    /// bytes per version, counted in the memtable's size, so memtables
    /// hold about a quarter fewer small entries and are flushed more often.
    /// `run_server` turns it on: its gets of recent keys took about 15 %
    /// less CPU with it. With it a put also skips the skip list (the
    /// memtable orders its versions by one sort when a scan or the flush
    /// first needs them): pipelined SETs ran about 45 % faster, and the
    /// first scan after many writes pays for the sort (docs/BENCHMARKS.md,
    /// session 22).
    pub memtable_point_index: bool,
    /// Under [`SyncPolicy::Always`], whether a write from an async task
    /// that finds no durable write in progress writes and fdatasyncs the
    /// WAL on its own thread, blocking that thread for the sync (as
    /// redis-server's event loop does), instead of handing the write to the
    /// memtable actor's group commit; default `false`. It saves the hand-offs
    /// between threads (four per group) when writes come one at a time.
    /// Writes that find a durable write in progress still go to the actor,
    /// so a burst is still committed in groups; the actor then syncs each
    /// group on its own thread too, instead of on a blocking thread (so
    /// the thread the database was opened on blocks for those syncs, and
    /// after each, for up to as long again while the writers it answered
    /// send their next writes: see `engine/memtable/gather.rs`).
    /// `run_server` turns it on:
    /// a worker thread serving many connections then waits for one sync at
    /// a time, as the single-threaded Redis does (docs/BENCHMARKS.md,
    /// session 14).
    pub inline_durable_writes: bool,
    /// How new SSTable data blocks are compressed; default
    /// [`Compression::Lz4`] (docs/BENCHMARKS.md, "Compression": it halves
    /// the files of JSON-like values, and incompressible blocks are stored
    /// raw, so random values cost only the attempt at flush time).
    /// [`Compression::Zstd`] shrinks text further at more CPU per block.
    /// Each block records how it is stored, so tables written with
    /// different settings are read alike.
    pub compression: Compression,
    /// Compaction splits its output into segments of about this size;
    /// default 32 MiB.
    pub target_segment_bytes: u64,
    /// Level 0 is merged into level 1 when it holds this many segments;
    /// default 12. Level-0 segments are frozen memtables, which hold less
    /// on disk than their 32 MiB memory budget: about 15 MB for 16-byte keys
    /// and 100-byte values. Each merge rewrites the level-1 segments it
    /// overlaps (all of them, for random keys), so the more level 0 gathers
    /// per merge, the fewer times level 1 is rewritten: 12 segments (about
    /// 180 MB) wrote 5.0 times the data of a 10M-key random fill where 8
    /// wrote 6.4 (docs/BENCHMARKS.md, "Fourth pass", issue 18). A get checks
    /// each level-0 segment's bloom filter, so reads pay for it: a random
    /// 2M-key load left with 4 level-0 segments read 25-35% slower than one
    /// with none.
    pub l0_compaction_trigger: usize,
    /// Writers are slowed while level 0 holds this many segments; default 24
    /// (well above the trigger, so a merge in progress does not hold writers
    /// back).
    pub l0_stall_trigger: usize,
    /// Level 0 is also merged into level 1 before it reaches the trigger
    /// once gets have paid for it: once, since the segment set last
    /// changed, they have checked this many segments beyond the first each
    /// asked (bloom filters included), and at least one per byte of the
    /// segments the merge would rewrite (LevelDB's seek compaction, counted
    /// in checks). A get pays about 35 ns per level-0 segment in its way:
    /// 10 of them cost a get at 632k keys 28 % of its time
    /// (docs/BENCHMARKS.md, session 18). So a read-heavy phase after a load
    /// gets level 0 out of the way, while a write-heavy one, whose flushes
    /// start the count again, keeps the trigger's write amplification.
    /// Default 16M (about half a second of one core's gets). 0 turns it off.
    pub read_compaction_checks: u64,
    /// Size budget of level 1; each deeper level gets `level_size_multiplier`
    /// times more. Default 256 MiB, fjall's base level too (a level-0 merge
    /// is about 180 MB of small entries). With 64 MiB, a 10M-key random fill
    /// (1.2 GB) pushed level 1 into a level 2 ten times its size, segment by
    /// segment (write amplification 7.3, against 6.4 with 256 MiB).
    pub level1_bytes: u64,
    /// Default 10.
    pub level_size_multiplier: u64,
    /// Threads that read segments for gets and scans; default: the number of cores.
    pub read_threads: usize,
    /// Whether a writer on another thread than the memtable actor polls for
    /// its (unsynced) write's answer for a few microseconds before parking;
    /// default `true`. It saves a wake-up per write for a program writing
    /// from its own threads; a server whose threads each serve many
    /// connections turns it off, since the poll holds up the others.
    pub writers_spin: bool,
    /// The file system; default the operating system's ([`StdFs`]).
    pub fs: Arc<dyn FileSystem>,
    /// What "now" is when deciding whether an entry has expired; default
    /// the system clock ([`SystemClock`]). Tests inject a [`ManualClock`].
    pub clock: Arc<dyn Clock>,
}

/// The time expiries are compared with.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        // A clock set before 1970 reads as the epoch: nothing has expired.
        since_epoch.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to: deterministic expiry in tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: std::sync::atomic::AtomicU64,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        ManualClock {
            now_ms: now_ms.into(),
        }
    }

    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.now_ms
            .store(now_ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
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
            table_write_buffer_bytes: 256 << 10,
            block_cache_bytes: 32 << 20,
            cache_flushed_blocks: true,
            cache_warm_merge_output: true,
            bloom_bits_per_key: 10,
            memtable_point_index: false,
            inline_durable_writes: false,
            compression: Compression::Lz4,
            target_segment_bytes: 32 << 20,
            l0_compaction_trigger: 12,
            l0_stall_trigger: 24,
            read_compaction_checks: 16 << 20,
            level1_bytes: 256 << 20,
            level_size_multiplier: 10,
            read_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            writers_spin: true,
            fs: Arc::new(StdFs),
            clock: Arc::new(SystemClock),
        }
    }

    /// The size at which the active memtable is frozen: `memtable_bytes`
    /// shared by the active memtable and up to `max_frozen_memtables`
    /// frozen ones, so that together they stay within `memtable_bytes`.
    pub fn memtable_freeze_bytes(&self) -> usize {
        let memtables = self.max_frozen_memtables.max(1).saturating_add(1);
        self.memtable_bytes / memtables
    }

    /// Whether flushes put their blocks into the block cache: asked to
    /// ([`Options::cache_flushed_blocks`]), and the cache holds at least 8
    /// memtables' worth.
    pub fn caches_flushed_blocks(&self) -> bool {
        self.cache_flushed_blocks
            && self.block_cache_bytes > 0
            && self.memtable_freeze_bytes() <= self.block_cache_bytes / 8
    }

    /// Checks every value is in its documented range: a sync interval of at
    /// least 1 ms, a memtable budget of at least [`MIN_MEMTABLE_BYTES`],
    /// keys and values of at least one byte, at least one read thread, a
    /// block of at least 256 bytes, compaction triggers of at least 1 with
    /// the stall trigger above the compaction trigger, and levels that grow
    /// (multiplier at least 2).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first option out of range.
    pub fn validate(&self) -> Result<()> {
        if let SyncPolicy::Interval(interval) = self.sync {
            at_least(interval.as_millis(), 1, "sync interval (ms)")?;
        }
        at_least(self.memtable_bytes, MIN_MEMTABLE_BYTES, "memtable_bytes")?;
        at_least(self.max_key_bytes, 1, "max_key_bytes")?;
        at_least(self.max_value_bytes, 1, "max_value_bytes")?;
        at_least(self.block_bytes, 256, "block_bytes")?;
        at_least(self.target_segment_bytes, 1 << 16, "target_segment_bytes")?;
        at_least(self.l0_compaction_trigger, 1, "l0_compaction_trigger")?;
        at_least(
            self.l0_stall_trigger,
            self.l0_compaction_trigger.saturating_add(1),
            "l0_stall_trigger (above l0_compaction_trigger)",
        )?;
        at_least(self.level1_bytes, 1 << 20, "level1_bytes")?;
        at_least(self.level_size_multiplier, 2, "level_size_multiplier")?;
        at_least(self.read_threads, 1, "read_threads")?;
        // The cache's table is sized for its capacity when it is made.
        if self.block_cache_bytes > MAX_BLOCK_CACHE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "block_cache_bytes must be at most {MAX_BLOCK_CACHE_BYTES} (1 TiB), not {}",
                self.block_cache_bytes
            )));
        }
        Ok(())
    }
}

/// The largest block cache: its table, sized when the cache is made, takes
/// about 0.4 % of it (a cache of 1000 TB asked for 3.7 TB at once).
pub const MAX_BLOCK_CACHE_BYTES: usize = 1 << 40;

fn at_least<T: PartialOrd + std::fmt::Display>(value: T, min: T, what: &str) -> Result<()> {
    if value < min {
        return Err(Error::InvalidArgument(format!(
            "{what} must be at least {min}, not {value}"
        )));
    }
    Ok(())
}

/// Parses a size flag: a whole number of bytes with an optional unit, `K`,
/// `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB` (powers of 1024) or `KB`, `MB`,
/// `GB`, `TB` (powers of 1000), case-insensitive, `B` for bytes; `64MiB`,
/// `4k`, `1GB`, `65536`.
///
/// # Errors
/// A message saying what is wrong: no number, an unknown unit, or a size
/// that does not fit in `usize`.
pub fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 65536, 4KiB, 64MiB, 1GB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use K, KiB, M, MiB, G, GiB, KB, MB, GB)"
            ));
        }
    };
    usize::try_from(multiplier)
        .ok()
        .and_then(|m| number.checked_mul(m))
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// `bytes` for people: `512 B`, `4.0 KiB`, `64.0 MiB`, `1.5 GiB`.
pub fn display_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).unwrap_or(&"TiB"))
}

/// Parses a host flag: an IP address, or a name (`localhost`) resolved by
/// the system, its first IPv4 address preferred (so that a server and a
/// client given the same name meet on the same address).
///
/// # Errors
/// A message when the name does not resolve.
pub fn parse_host(host: &str) -> std::result::Result<IpAddr, String> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let addrs: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}': {e}"))?
        .map(|addr| addr.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("host '{host}' has no address"))
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

    #[test]
    fn validate_accepts_the_defaults_and_names_a_bad_value() {
        let options = Options::new("unused");
        assert!(options.validate().is_ok());
        let refused = |change: fn(&mut Options)| {
            let mut options = Options::new("unused");
            change(&mut options);
            match options.validate() {
                Err(Error::InvalidArgument(message)) => message,
                other => panic!("accepted: {other:?}"),
            }
        };
        let message = refused(|o| o.sync = SyncPolicy::Interval(Duration::ZERO));
        assert!(message.starts_with("sync interval"), "{message}");
        let message = refused(|o| o.memtable_bytes = 1);
        assert_eq!(message, "memtable_bytes must be at least 1048576, not 1");
        let message = refused(|o| o.l0_stall_trigger = o.l0_compaction_trigger);
        assert!(message.starts_with("l0_stall_trigger"), "{message}");
        let message = refused(|o| o.read_threads = 0);
        assert!(message.starts_with("read_threads"), "{message}");
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 M"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("10B"), Ok(10));
        assert!(parse_size("MiB").unwrap_err().contains("not a size"));
        assert!(parse_size("-1").unwrap_err().contains("not a size"));
        assert!(
            parse_size("1.5GiB")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(
            parse_size("3furlongs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_display_in_binary_units() {
        assert_eq!(display_size(512), "512 B");
        assert_eq!(display_size(4096), "4.0 KiB");
        assert_eq!(display_size(64 << 20), "64.0 MiB");
        assert_eq!(display_size(3 << 29), "1.5 GiB");
    }

    #[test]
    fn hosts_are_addresses_or_resolved_names() {
        assert_eq!(parse_host("10.1.2.3"), Ok("10.1.2.3".parse().unwrap()));
        assert_eq!(parse_host("::1"), Ok("::1".parse().unwrap()));
        assert!(parse_host("localhost").unwrap().is_loopback());
        assert!(parse_host("no-such-host.invalid").is_err());
    }
}
