//! The block cache: checked, indexed data blocks ([`Block`]) shared by every
//! reader of a database, so that a hot block is read from the file, checked
//! and indexed once rather than on every get.
//!
//! It takes no lock. The cache is a fixed array of slots, each an
//! `ArcSwapOption` holding one immutable cached block; a lookup loads the
//! slots of the key's set (4 ways, chosen by a hash of table and block) and
//! clones the `Arc` of a match. An insert stores into a free or unreferenced
//! way of the set (second chance: a hit sets the block's `referenced` bit).
//! Whoever swaps a block out of a slot subtracts its charge, so the byte count
//! stays exact under races; while it is over capacity, a clock hand sweeps the
//! slots, clearing referenced bits and evicting unreferenced blocks.
//!
//! Admission (two touches): a block read from its file is cached only if it
//! was read before, recently. A miss that is not admitted leaves the block's
//! tag in a "ghost" table (one tag per slot, no block) and the reader looks
//! its key up in a buffer of its own without keeping the block, so one-off
//! reads (a uniform read over data far larger than the cache, a cold key)
//! neither pay for an insert nor evict blocks read again and again. A
//! flush's table writer inserts its blocks as it writes them
//! ([`super::SstableWriter::caching_blocks`]), and so does a merge's when
//! most of its inputs' blocks are here; unreferenced: read, they stay;
//! never read, they are the first to go.
//!
//! The bound: the blocks in the slots charge at most `capacity` bytes, except
//! for the moment between one insert and its own eviction sweep (at most one
//! block per inserting thread over). A block a reader still holds stays in
//! memory until that reader drops it. Blocks larger than an eighth of the
//! capacity are not cached. Blocks of a deleted table are not looked up
//! again and go first, being unreferenced.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwapOption;

use super::block::Block;

/// Ways per set.
const WAYS: usize = 4;

/// Bytes charged per cached block beyond [`Block::memory_bytes`]: the
/// `CachedBlock`, its `Arc` header, the block's buffer header and the
/// allocator's rounding, roughly.
const BLOCK_OVERHEAD_BYTES: usize = 128;

/// One cached block, immutable except for its second-chance bit.
#[derive(Debug)]
pub struct CachedBlock {
    table: u64,
    index: u32,
    /// The block.
    pub block: Block,
    charge: usize,
    referenced: AtomicBool,
}

/// A lock-free cache of data blocks, shared by the tables of one database.
#[derive(Debug)]
pub struct BlockCache {
    slots: Box<[ArcSwapOption<CachedBlock>]>,
    /// A hash of what each slot holds, so that a lookup dereferences only a
    /// slot that may match (a hint: a racing insert can leave it stale, so a
    /// match is always checked against the block itself).
    tags: Box<[AtomicU64]>,
    /// Tags of blocks missed once and not cached (see the module doc); as
    /// many as there are slots.
    ghosts: Box<[AtomicU64]>,
    capacity: usize,
    charged: AtomicUsize,
    hand: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What the cache holds and how it has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes charged by the blocks held now.
    pub bytes: u64,
}

impl BlockCache {
    /// A cache of about `capacity` bytes for blocks of about `block_bytes`
    /// (which sets the number of slots: two per expected block, counting
    /// blocks as at least 4 KiB, so that bytes, not slots, usually run out).
    /// `capacity` 0 caches nothing.
    ///
    /// Making and dropping the cache costs time in the number of slots
    /// (about 16,000 for the library's default 32 MiB; 760,000 for 1.5 GiB,
    /// `run_server`'s default on a 24 GiB machine), and each slot's drop
    /// walks arc-swap's per-thread lists: cheap once per database (0.12 s
    /// to start and 0.02 s to stop a server at 16 GiB), but tests that open
    /// thousands of databases should give them small caches.
    pub fn new(capacity: usize, block_bytes: usize) -> BlockCache {
        let expected = block_bytes.max(4 << 10) + BLOCK_OVERHEAD_BYTES;
        let sets = match capacity {
            0 => 0,
            _ => (2 * capacity / expected).div_ceil(WAYS).max(1),
        };
        let slots = (0..sets * WAYS).map(|_| ArcSwapOption::empty()).collect();
        let tags = (0..sets * WAYS).map(|_| AtomicU64::new(0)).collect();
        let ghosts = (0..sets * WAYS).map(|_| AtomicU64::new(0)).collect();
        BlockCache {
            slots,
            tags,
            ghosts,
            capacity,
            charged: AtomicUsize::new(0),
            hand: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Block `index` of table `table`, if cached.
    pub fn get(&self, table: u64, index: u32) -> Option<Arc<CachedBlock>> {
        let (set, tags, tag) = self.set(table, index);
        for (slot, hint) in set.iter().zip(tags) {
            if hint.load(Ordering::Relaxed) != tag {
                continue;
            }
            let held = slot.load();
            if let Some(cached) = held.as_ref()
                && cached.table == table
                && cached.index == index
            {
                if !cached.referenced.load(Ordering::Relaxed) {
                    cached.referenced.store(true, Ordering::Relaxed);
                }
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(Arc::clone(cached));
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Block `index` of `table`, if cached, without counting a hit or
    /// marking it referenced (for prefetching: the get that follows counts).
    pub fn peek(&self, table: u64, index: u32) -> Option<Arc<CachedBlock>> {
        let (set, tags, tag) = self.set(table, index);
        let way = tags
            .iter()
            .position(|hint| hint.load(Ordering::Relaxed) == tag)?;
        let held = set.get(way)?.load_full()?;
        (held.table == table && held.index == index).then_some(held)
    }

    /// How many of blocks `0..count` of `table` are cached, found as
    /// [`BlockCache::peek`] finds them (no hit counted, nothing marked).
    pub fn cached_blocks(&self, table: u64, count: usize) -> usize {
        (0..count)
            .filter_map(|index| u32::try_from(index).ok())
            .filter(|&index| self.peek(table, index).is_some())
            .count()
    }

    /// Prefetches the tags and slots of the set [`BlockCache::get`] reads
    /// for block `index` of `table`.
    pub fn prefetch_set(&self, table: u64, index: u32) {
        let (set, tags, _) = self.set(table, index);
        if let (Some(slot), Some(tag)) = (set.first(), tags.first()) {
            crate::format::prefetch(slot);
            crate::format::prefetch(tag);
        }
    }

    /// Prefetches the cached block itself (its header: the block's fields
    /// and the `Arc`'s counts), if the set holds it; the set should be in
    /// the CPU's cache already ([`BlockCache::prefetch_set`]).
    pub fn prefetch_block(&self, table: u64, index: u32) {
        let (set, tags, tag) = self.set(table, index);
        for (slot, hint) in set.iter().zip(tags) {
            if hint.load(Ordering::Relaxed) == tag {
                // The pointer only: nothing behind it is read here.
                if let Some(cached) = slot.load().as_ref() {
                    crate::format::prefetch(&**cached);
                }
                return;
            }
        }
    }

    /// Whether block `index` of `table`, just missed, should be cached when
    /// read: true if it was missed recently ([`BlockCache::missed_once`]).
    /// False for a cache of capacity 0.
    pub fn admits(&self, table: u64, index: u32) -> bool {
        let (_, _, tag) = self.set(table, index);
        self.ghost(tag)
            .is_some_and(|ghost| ghost.load(Ordering::Relaxed) == tag)
    }

    /// Notes that block `index` of `table` was read and not cached, so that
    /// the next miss on it admits it (unless another block's note takes its
    /// place first).
    pub fn missed_once(&self, table: u64, index: u32) {
        let (_, _, tag) = self.set(table, index);
        if let Some(ghost) = self.ghost(tag) {
            ghost.store(tag, Ordering::Relaxed);
        }
    }

    /// The ghost slot of a block's tag: its low bits (a set is chosen by the
    /// high ones).
    fn ghost(&self, tag: u64) -> Option<&AtomicU64> {
        let at = (tag as u32 as usize).checked_rem(self.ghosts.len())?;
        self.ghosts.get(at)
    }

    /// Caches `block` as block `index` of table `table` and returns it.
    pub fn insert(&self, table: u64, index: u32, block: Block) -> Arc<CachedBlock> {
        let charge = block.memory_bytes() + BLOCK_OVERHEAD_BYTES;
        let cached = Arc::new(CachedBlock {
            table,
            index,
            block,
            charge,
            referenced: AtomicBool::new(false),
        });
        let (set, tags, tag) = self.set(table, index);
        if set.is_empty() || charge > self.capacity / 8 {
            return cached;
        }
        let empty = set.iter().position(|slot| slot.load().is_none());
        let victim = empty
            .or_else(|| {
                set.iter().position(|slot| {
                    slot.load()
                        .as_ref()
                        .is_none_or(|held| !held.referenced.load(Ordering::Relaxed))
                })
            })
            .unwrap_or(index as usize % WAYS);
        if let (Some(slot), Some(hint)) = (set.get(victim), tags.get(victim)) {
            self.charged.fetch_add(charge, Ordering::Relaxed);
            self.uncharge(slot.swap(Some(Arc::clone(&cached))));
            hint.store(tag, Ordering::Relaxed);
            self.evict_while_over();
        }
        cached
    }

    /// Hits, misses and bytes held.
    pub fn stats(&self) -> BlockCacheStats {
        BlockCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.charged.load(Ordering::Relaxed) as u64,
        }
    }

    /// The ways of the set that block `index` of `table` maps to, their
    /// tags, and the block's tag.
    fn set(&self, table: u64, index: u32) -> (&[ArcSwapOption<CachedBlock>], &[AtomicU64], u64) {
        // MurmurHash3's finalizer: every bit of table and block number
        // moves every bit of the hash (a bare product left the blocks of a
        // table in one set when the number of sets is a power of two).
        let mut hash = table.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(index);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^= hash >> 33;
        let sets = self.slots.len() / WAYS;
        if sets == 0 {
            return (&[], &[], hash);
        }
        let ways = ((hash >> 32) as usize % sets) * WAYS..((hash >> 32) as usize % sets + 1) * WAYS;
        let slots = self.slots.get(ways.clone()).unwrap_or(&[]);
        let tags = self.tags.get(ways).unwrap_or(&[]);
        (slots, tags, hash)
    }

    fn uncharge(&self, evicted: Option<Arc<CachedBlock>>) {
        if let Some(evicted) = evicted {
            self.charged.fetch_sub(evicted.charge, Ordering::Relaxed);
        }
    }

    /// The clock: while over capacity, give referenced blocks a second chance
    /// and evict the others. Two turns of the hand at most.
    fn evict_while_over(&self) {
        let mut steps = 2 * self.slots.len();
        while self.charged.load(Ordering::Relaxed) > self.capacity && steps > 0 {
            steps -= 1;
            let at = self.hand.fetch_add(1, Ordering::Relaxed) % self.slots.len();
            let Some(slot) = self.slots.get(at) else {
                return;
            };
            let held = slot.load();
            match held.as_ref() {
                None => {}
                Some(cached) if cached.referenced.swap(false, Ordering::Relaxed) => {}
                Some(_) => self.uncharge(slot.swap(None)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::format::Entry;
    use crate::format::sstable::block::{BlockLayout, encode_entry};

    /// A block of one entry with a value of `value_len` bytes.
    fn block(key: &str, value_len: usize) -> Block {
        let entry = Entry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            seq: 1,
            value: Some(Bytes::from(vec![7u8; value_len])),
            expire_at_ms: 0,
        };
        let mut data = Vec::new();
        encode_entry(&entry, &mut data);
        Block::decode(
            Bytes::from(data),
            BlockLayout::Entries,
            None,
            key.as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_cached_block_is_found_until_evicted() {
        let cache = BlockCache::new(64 << 10, 1024);
        assert!(cache.get(1, 0).is_none());
        cache.insert(1, 0, block("a", 1000));
        let hit = cache.get(1, 0).unwrap();
        assert_eq!(
            hit.block.get(b"a").unwrap().unwrap().value.unwrap().len(),
            1000
        );
        assert!(cache.get(1, 1).is_none());
        assert!(cache.get(2, 0).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 3));
    }

    #[test]
    fn bytes_stay_within_capacity() {
        let capacity = 256 << 10;
        let cache = BlockCache::new(capacity, 4096);
        for index in 0..1000 {
            cache.insert(7, index, block("k", 4000));
            assert!(cache.stats().bytes as usize <= capacity);
        }
        let held = (0..1000).filter(|&i| cache.get(7, i).is_some()).count();
        // At most capacity / (4000 + overhead) = 63 blocks fit; set
        // conflicts may leave a few slots unused.
        assert!((40..=63).contains(&held), "{held} blocks held");
    }

    #[test]
    fn referenced_blocks_survive_a_sweep() {
        let cache = BlockCache::new(64 << 10, 1024);
        cache.insert(1, 0, block("hot", 1000));
        for index in 0..2000 {
            assert!(cache.get(1, 0).is_some(), "hot block lost at {index}");
            cache.insert(2, index, block("cold", 1000));
        }
    }

    #[test]
    fn a_block_is_admitted_on_its_second_miss() {
        let cache = BlockCache::new(64 << 10, 1024);
        assert!(!cache.admits(1, 0));
        cache.missed_once(1, 0);
        assert!(cache.admits(1, 0));
        assert!(!cache.admits(1, 1), "another block of the table");
        assert!(!cache.admits(2, 0), "the same block of another table");
        let none = BlockCache::new(0, 4096);
        none.missed_once(1, 0);
        assert!(!none.admits(1, 0));
    }

    #[test]
    fn one_off_misses_leave_hot_blocks_cached() {
        // A cache of 32 slots; 8 hot blocks read over and over between
        // misses on 10,000 blocks read once each.
        let cache = BlockCache::new(64 << 10, 1024);
        let mut hot_misses = 0;
        for round in 0..10_000u32 {
            for (table, index) in [(1, round % 8), (2, round)] {
                if cache.get(table, index).is_none() {
                    hot_misses += u32::from(table == 1);
                    if cache.admits(table, index) {
                        cache.insert(table, index, block("k", 1000));
                    } else {
                        cache.missed_once(table, index);
                    }
                }
            }
        }
        // Each hot block misses twice (noted, then admitted), then stays.
        assert!(hot_misses <= 2 * 8 + 8, "{hot_misses} misses on hot blocks");
        let cold_cached = (0..10_000).filter(|&i| cache.get(2, i).is_some()).count();
        assert_eq!(cold_cached, 0, "blocks read once were cached");
    }

    #[test]
    fn the_blocks_of_a_table_spread_over_the_sets() {
        // 8 sets (a power of two) and 8 blocks: a bare multiplicative hash
        // put them all in one set.
        let cache = BlockCache::new(64 << 10, 1024);
        let sets = cache.slots.len() / WAYS;
        assert_eq!(sets, 8);
        let used: std::collections::HashSet<usize> = (0..8)
            .map(|index| (cache.set(1, index).2 >> 32) as usize % sets)
            .collect();
        assert!(used.len() >= 4, "8 blocks in {} sets", used.len());
    }

    #[test]
    fn oversized_and_zero_capacity_are_not_cached() {
        let cache = BlockCache::new(64 << 10, 1024);
        cache.insert(1, 0, block("big", 9 << 10));
        assert!(cache.get(1, 0).is_none());
        let none = BlockCache::new(0, 4096);
        none.insert(1, 0, block("a", 10));
        assert!(none.get(1, 0).is_none());
        assert_eq!(none.stats().bytes, 0);
    }

    #[test]
    fn concurrent_readers_and_inserters_keep_the_count_exact() {
        let cache = Arc::new(BlockCache::new(256 << 10, 1024));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..3000u32 {
                        let index = i % 700;
                        if cache.get(t % 2, index).is_none() {
                            cache.insert(t % 2, index, block("k", 1000));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let held: usize = cache
            .slots
            .iter()
            .filter_map(|slot| slot.load_full())
            .map(|cached| cached.charge)
            .sum();
        assert_eq!(held as u64, cache.stats().bytes);
        assert!(held <= 256 << 10);
    }
}
