//! A bloom filter over the keys of one memtable, so that a point read of a
//! key the memtable does not hold is answered without searching its skip
//! list (RocksDB's `memtable_whole_key_filtering`).
//!
//! Most point reads miss the memtable: a read of an absent key, and every
//! read of a key written before the last flush. A miss walks the whole
//! skip list (about twenty levels, a cache miss per node visited, one to
//! two microseconds at a few hundred thousand entries); the filter answers
//! it from one cache line.
//!
//! Shape: a blocked bloom filter, the segments' cache-local layout
//! ([`cache_local_probes`]): a key's 64-bit hash picks one 64-byte block
//! (eight words) and six bits inside it, so an insert or a lookup touches
//! one cache line. The filter is sized when its memtable is
//! made, for the most entries the memtable can hold before it is frozen:
//! every entry is counted as at least `ENTRY_OVERHEAD_BYTES` (160), so a
//! memtable frozen at `freeze_bytes` holds at most `freeze_bytes / 160`
//! of them. At `bloom_bits_per_key` bits for each (10 by default) that is
//! about 0.8 % of the memtable's budget, and a false-positive rate of
//! about 1-2 % when full (fewer entries, fewer false positives).
//!
//! Concurrency without a lock: whoever inserts an entry (the memtable
//! actor, or a direct writer, `direct.rs`) sets its bits (atomic
//! `fetch_or`) before the entry becomes visible: before its table is
//! published in a `ReadView` (an `ArcSwap` store, which releases) and
//! before its sequence number is published (a release store). A reader
//! loads the view and the published bound (acquires) before it looks at
//! the filter. So a reader always finds the bits of every entry it can
//! see: the filter never hides a visible key. Bits are never cleared; a
//! filter dies with its memtable.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::format::sstable::{
    CACHE_LOCAL_PROBES, WORDS_PER_LINE as WORDS_PER_BLOCK, cache_local_probes,
};
/// The largest filter made (16 MiB: 13M keys at 10 bits, a memtable of
/// about 2 GiB). A larger memtable gets this one; more keys than it is
/// sized for raise its false-positive rate, never hide a key.
const MAX_FILTER_BYTES: usize = 16 << 20;

/// The hash of a key, as the filter and the point index (`index.rs`) use
/// it: computed once per insert and per lookup, for both. The segments'
/// bloom filters' hash, so that a get that misses the memtables does not
/// hash its key again.
pub use crate::format::sstable::key_hash;

/// The filter of one memtable; see the module doc.
pub struct KeyFilter {
    words: Box<[AtomicU64]>,
    blocks: u64,
}

impl std::fmt::Debug for KeyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFilter")
            .field("blocks", &self.blocks)
            .finish_non_exhaustive()
    }
}

impl KeyFilter {
    /// A filter for up to `max_entries` keys at `bits_per_key`; `None`
    /// when `bits_per_key` is 0 (filtering off, as for segments).
    pub fn sized_for(max_entries: usize, bits_per_key: usize) -> Option<KeyFilter> {
        if bits_per_key == 0 {
            return None;
        }
        let bits = max_entries.max(1).saturating_mul(bits_per_key);
        let blocks = bits
            .div_ceil(WORDS_PER_BLOCK * 64)
            .clamp(1, MAX_FILTER_BYTES / (WORDS_PER_BLOCK * 8));
        let words = (0..blocks.saturating_mul(WORDS_PER_BLOCK))
            .map(|_| AtomicU64::new(0))
            .collect();
        Some(KeyFilter {
            words,
            blocks: blocks as u64,
        })
    }

    /// Records a key by its [`key_hash`], before the entry holding it
    /// becomes visible.
    pub fn insert(&self, hash: u64) {
        let (block, bits) = self.locate(hash);
        for (word, mask) in bits {
            if let Some(word) = self.words.get(block + word) {
                word.fetch_or(mask, Ordering::Relaxed);
            }
        }
    }

    /// False only if no key with this [`key_hash`] was inserted.
    pub fn may_contain(&self, hash: u64) -> bool {
        let (block, bits) = self.locate(hash);
        bits.into_iter().all(|(word, mask)| {
            self.words
                .get(block + word)
                .is_none_or(|word| word.load(Ordering::Relaxed) & mask == mask)
        })
    }

    /// Prefetches the block [`KeyFilter::may_contain`] reads for `hash`.
    pub fn prefetch(&self, hash: u64) {
        let (block, _) = self.locate(hash);
        if let Some(word) = self.words.get(block) {
            crate::format::prefetch(word);
        }
    }

    /// Memory the filter holds.
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<AtomicU64>()
    }

    /// The first word of the block of the key hashed `hash`, and each
    /// probe's word (within the block) and bit.
    fn locate(&self, hash: u64) -> (usize, [(usize, u64); CACHE_LOCAL_PROBES]) {
        let (block, bits) = cache_local_probes(hash, self.blocks);
        (block as usize * WORDS_PER_BLOCK, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inserted_key_passes() {
        let filter = KeyFilter::sized_for(10_000, 10).unwrap();
        for i in 0..10_000 {
            filter.insert(key_hash(format!("key{i}").as_bytes()));
        }
        assert!((0..10_000).all(|i| filter.may_contain(key_hash(format!("key{i}").as_bytes()))));
    }

    #[test]
    fn an_empty_filter_passes_nothing() {
        let filter = KeyFilter::sized_for(1000, 10).unwrap();
        assert!((0..1000).all(|i| !filter.may_contain(key_hash(format!("key{i}").as_bytes()))));
    }

    #[test]
    fn false_positives_stay_near_two_percent_when_full() {
        let filter = KeyFilter::sized_for(50_000, 10).unwrap();
        for i in 0..50_000 {
            filter.insert(key_hash(format!("key{i}").as_bytes()));
        }
        let passed = (0..100_000)
            .filter(|i| filter.may_contain(key_hash(format!("absent{i}").as_bytes())))
            .count();
        assert!(passed < 3_000, "{passed} of 100000 absent keys passed");
    }

    #[test]
    fn overfilling_degrades_to_more_false_positives_never_misses() {
        let filter = KeyFilter::sized_for(100, 10).unwrap();
        for i in 0..5_000 {
            filter.insert(key_hash(format!("key{i}").as_bytes()));
        }
        assert!((0..5_000).all(|i| filter.may_contain(key_hash(format!("key{i}").as_bytes()))));
    }

    #[test]
    fn a_huge_memtable_gets_the_largest_filter_not_a_huge_one() {
        let filter = KeyFilter::sized_for(usize::MAX / 2, 10).unwrap();
        assert_eq!(filter.memory_bytes(), MAX_FILTER_BYTES);
    }

    #[test]
    fn zero_bits_per_key_means_no_filter() {
        assert!(KeyFilter::sized_for(1000, 0).is_none());
    }

    #[test]
    fn size_follows_entries_and_bits_per_key() {
        let filter = KeyFilter::sized_for(204_800, 10).unwrap();
        // 2,048,000 bits in 512-bit blocks: 4000 blocks of 64 bytes.
        assert_eq!(filter.memory_bytes(), 4000 * 64);
    }
}
