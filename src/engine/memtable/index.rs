//! A hash index over the keys of one memtable: for each key, its newest
//! version, so that a point read of a key the memtable holds is answered
//! without searching the skip list (RocksDB's hash memtables serve the same
//! purpose).
//!
//! A search of the skip list misses the cache at nearly every node it
//! visits, about fifteen to twenty of them in a full memtable; it was the
//! largest cost of a server answering gets from memory and of YCSB's
//! read-latest workload (docs/BENCHMARKS.md). A lookup here touches the
//! key's slot and the version it points to: two or three cache lines.
//!
//! Shape: every indexed version is appended to an arena of the memtable
//! (`boxcar::Vec`, a lock-free append-only vector: no allocation per
//! version, nothing freed before the memtable), and a power-of-two array of
//! slots, probed linearly, maps a key to its newest version there. A slot
//! is one `AtomicU64`: empty (0), or the position of a version in the arena
//! beside the top bits of its key's hash, so that a probe past another key
//! rarely looks at that key. Slots are claimed, never emptied; a key keeps
//! its slot and the slot is moved to newer versions by compare-and-swap.
//! Since no version is freed while the table lives, a reader never finds a
//! slot pointing at memory reused for something else. The slots are sized
//! when the memtable is made for the most entries it can hold (as the key
//! filter is, `filter.rs`). A key that finds no free slot within
//! [`MAX_PROBES`] is not indexed, and the index then answers "unknown" for
//! keys it cannot find, so the reader searches the skip list: a full index
//! slows reads down to the skip list, never hides a key.
//!
//! Why a lookup is right without a lock. The index holds, for each key,
//! the version with the highest sequence number inserted so far (a
//! replacement only raises it). Every version is indexed inside
//! `MemTable::insert_hidden`, before its sequence number can be published,
//! and a reader loads its bound (acquire) before it looks here. So when
//! the indexed version's number is at or below the reader's bound, no
//! version between the two exists: it would have been indexed, and raised
//! the number, before the bound was published. It is the newest version at
//! or below the bound, what the skip-list search would find. When the
//! indexed number is above the bound (a write not yet published, or a
//! reader at an older snapshot), the index answers "unknown" and the reader
//! searches the skip list. An empty slot on the key's probe path means the
//! key has no version at or below the bound, by the same argument (its
//! first insert claims a slot before publishing).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::format::Entry;

/// Slots probed for a key before it is given up on (not indexed, or for a
/// lookup, "unknown" if the index has given up on any key).
const MAX_PROBES: usize = 32;
/// The largest index made: 4M slots of 8 bytes (32 MiB), a memtable of
/// about 640 MiB. A larger memtable gets this one; its keys past
/// [`MAX_PROBES`] are read through the skip list.
const MAX_SLOTS: usize = 1 << 22;
/// Memory of one indexed version beyond its key and value buffers, which it
/// shares with the skip list: the entry's handles (80) and the arena's flag
/// beside it (8).
pub const VERSION_BYTES: usize = 88;
/// Low bits of a slot: the version's position in the arena, plus one.
const POSITION_BITS: u32 = 40;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;

/// What the index says of a key at a bound.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// The key's newest version at or below the bound.
    Found(Entry),
    /// The memtable holds no version of the key at or below the bound.
    Absent,
    /// The index cannot tell: search the skip list.
    Unknown,
}

/// The index of one memtable; see the module doc.
pub struct PointIndex {
    versions: boxcar::Vec<Entry>,
    /// One past the highest arena position whose push has completed: every
    /// version inserted before a bound was published lies below it
    /// (`boxcar`'s own count may lag behind a position while a lower push
    /// is still under way).
    end: AtomicUsize,
    slots: Box<[AtomicU64]>,
    /// Some key found no free slot: a key not found may be unindexed.
    gave_up: AtomicBool,
}

impl std::fmt::Debug for PointIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointIndex")
            .field("slots", &self.slots.len())
            .field("versions", &self.versions.count())
            .finish_non_exhaustive()
    }
}

impl PointIndex {
    /// An index for up to `max_entries` keys: the next power of two slots,
    /// so that it is at most half full when every entry has its own key of
    /// at least twice the smallest size counted.
    pub fn sized_for(max_entries: usize) -> PointIndex {
        let slots = max_entries.max(2).next_power_of_two().min(MAX_SLOTS);
        PointIndex {
            versions: boxcar::Vec::new(),
            end: AtomicUsize::new(0),
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            gave_up: AtomicBool::new(false),
        }
    }

    /// Makes `entry` (of a key whose hash is `hash`) the key's indexed
    /// version unless a newer one is. Every call keeps one version in the
    /// arena (the caller counts [`VERSION_BYTES`] for it).
    pub fn insert(&self, hash: u64, entry: Entry) {
        let seq = entry.seq;
        let position = self.versions.push(entry) as u64;
        self.end.fetch_max(position as usize + 1, Ordering::Release);
        let Some(key) = self.versions.get(position as usize).map(|e| &e.key[..]) else {
            return self.give_up();
        };
        let new = tag(hash) | (position + 1);
        for slot in self.probe_path(hash) {
            let mut current = slot.load(Ordering::Acquire);
            loop {
                if current != 0 {
                    match self.version_of(current, hash, key) {
                        Some(old) if old.seq >= seq => return,
                        Some(_) => {}
                        None => break,
                    }
                }
                match slot.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return,
                    Err(now) => current = now,
                }
            }
        }
        self.give_up();
    }

    /// What the index says of `key` (hash `hash`) at bound `seq`.
    pub fn lookup(&self, hash: u64, key: &[u8], seq: u64) -> Lookup {
        for slot in self.probe_path(hash) {
            let current = slot.load(Ordering::Acquire);
            if current == 0 {
                return Lookup::Absent;
            }
            if let Some(found) = self.version_of(current, hash, key) {
                return match found.seq <= seq {
                    true => Lookup::Found(found.clone()),
                    false => Lookup::Unknown,
                };
            }
        }
        match self.gave_up.load(Ordering::Acquire) {
            true => Lookup::Unknown,
            false => Lookup::Absent,
        }
    }

    /// One past the highest arena position pushed so far (see `end`): read
    /// after a bound, every version at or below it lies below this.
    pub fn end(&self) -> usize {
        self.end.load(Ordering::Acquire)
    }

    /// The version at arena position `position`, below [`PointIndex::end`].
    /// A lower push may still be under way on another thread (it reserved
    /// its position before a later push completed); this waits for it: the
    /// pusher is between two instructions of `boxcar`'s push.
    pub fn version_at(&self, position: usize) -> &Entry {
        let mut tries = 0u32;
        loop {
            if let Some(version) = self.versions.get(position) {
                return version;
            }
            tries += 1;
            match tries < 64 {
                true => std::hint::spin_loop(),
                false => std::thread::yield_now(),
            }
        }
    }

    /// Prefetches what [`PointIndex::lookup`] reads for `hash`: the first
    /// slot of its probe path (`level` 0), then the version it names (1).
    pub fn prefetch(&self, hash: u64, level: u8) {
        let Some(slot) = self.probe_path(hash).next() else {
            return;
        };
        if level == 0 {
            return crate::format::prefetch(slot);
        }
        let current = slot.load(Ordering::Relaxed);
        let position = (current & POSITION_MASK).checked_sub(1);
        if current & !POSITION_MASK == tag(hash)
            && let Some(version) = position.and_then(|p| self.versions.get(p as usize))
        {
            crate::format::prefetch(version);
        }
    }

    /// The version slot value `slot` points at, if it is one of `key`'s.
    fn version_of(&self, slot: u64, hash: u64, key: &[u8]) -> Option<&Entry> {
        if slot & !POSITION_MASK != tag(hash) {
            return None;
        }
        let position = (slot & POSITION_MASK).checked_sub(1)?;
        let version = self.versions.get(position as usize)?;
        (version.key == key).then_some(version)
    }

    fn give_up(&self) {
        self.gave_up.store(true, Ordering::Release);
    }

    /// The slots a key with hash `hash` may occupy, in probe order.
    fn probe_path(&self, hash: u64) -> impl Iterator<Item = &AtomicU64> {
        let mask = self.slots.len() - 1;
        let start = hash as usize & mask;
        (0..MAX_PROBES.min(self.slots.len()))
            .filter_map(move |i| self.slots.get((start + i) & mask))
    }

    /// Memory the slot array holds.
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }
}

/// The top bits of a slot: the top bits of the key's hash (the low ones
/// pick the slot).
fn tag(hash: u64) -> u64 {
    hash & !POSITION_MASK
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::engine::memtable::filter::key_hash;

    fn version(key: &str, seq: u64, value: &str) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            seq,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            expire_at_ms: 0,
        }
    }

    fn insert(index: &PointIndex, entry: Entry) {
        index.insert(key_hash(&entry.key), entry);
    }

    fn lookup(index: &PointIndex, key: &str, seq: u64) -> Lookup {
        index.lookup(key_hash(key.as_bytes()), key.as_bytes(), seq)
    }

    #[test]
    fn the_highest_sequence_number_wins_whatever_the_insert_order() {
        let index = PointIndex::sized_for(16);
        insert(&index, version("k", 5, "five"));
        insert(&index, version("k", 3, "three"));
        assert_eq!(
            lookup(&index, "k", 9),
            Lookup::Found(version("k", 5, "five"))
        );
        insert(&index, version("k", 7, "seven"));
        assert_eq!(
            lookup(&index, "k", 7),
            Lookup::Found(version("k", 7, "seven"))
        );
    }

    #[test]
    fn a_bound_below_the_newest_version_is_left_to_the_skip_list() {
        let index = PointIndex::sized_for(16);
        insert(&index, version("k", 5, "five"));
        assert_eq!(lookup(&index, "k", 4), Lookup::Unknown);
        assert_eq!(lookup(&index, "other", 4), Lookup::Absent);
    }

    #[test]
    fn a_key_never_inserted_is_absent_in_a_half_full_index() {
        let index = PointIndex::sized_for(2000);
        for i in 0..1000 {
            insert(&index, version(&format!("key{i}"), i + 1, "v"));
        }
        assert!(
            (0..1000).all(|i| lookup(&index, &format!("absent{i}"), u64::MAX) == Lookup::Absent)
        );
        assert!((0..1000).all(|i| {
            let key = format!("key{i}");
            lookup(&index, &key, u64::MAX) == Lookup::Found(version(&key, i + 1, "v"))
        }));
    }

    #[test]
    fn an_overfull_index_says_unknown_never_a_wrong_answer() {
        let index = PointIndex::sized_for(64);
        for i in 0..1000 {
            insert(&index, version(&format!("key{i}"), i + 1, "v"));
        }
        for i in 0..1000 {
            let key = format!("key{i}");
            match lookup(&index, &key, u64::MAX) {
                Lookup::Found(entry) => assert_eq!(entry, version(&key, i + 1, "v")),
                Lookup::Unknown => {}
                Lookup::Absent => panic!("{key} was inserted but reads as absent"),
            }
        }
        assert_eq!(lookup(&index, "absent", u64::MAX), Lookup::Unknown);
    }

    #[test]
    fn concurrent_writers_of_the_same_keys_leave_each_keys_newest_version() {
        let index = PointIndex::sized_for(256);
        let threads = 4u64;
        let rounds = 2000u64;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let index = &index;
                scope.spawn(move || {
                    for round in 0..rounds {
                        let seq = round * threads + t + 1;
                        insert(
                            index,
                            version(&format!("key{}", seq % 37), seq, &seq.to_string()),
                        );
                    }
                });
            }
        });
        let last = rounds * threads;
        for k in 0..37 {
            let key = format!("key{k}");
            let newest = (1..=last).rev().find(|seq| seq % 37 == k).unwrap();
            assert_eq!(
                lookup(&index, &key, u64::MAX),
                Lookup::Found(version(&key, newest, &newest.to_string()))
            );
        }
    }

    #[test]
    fn size_is_a_power_of_two_at_least_the_entries_and_capped() {
        assert_eq!(PointIndex::sized_for(1000).memory_bytes(), 1024 * 8);
        assert_eq!(
            PointIndex::sized_for(usize::MAX / 2).memory_bytes(),
            MAX_SLOTS * 8
        );
    }
}
