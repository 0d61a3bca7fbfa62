//! The in-memory sorted table that takes writes before they reach a segment.
//!
//! It is a lock-free skip list (`crossbeam_skiplist::SkipMap`) of versions:
//! each write adds an entry keyed by (user key ascending, sequence number
//! descending) whose value is the written value, or `None` for a tombstone.
//! An overwrite is a new entry; no entry is ever changed or removed.
//!
//! With a point index (`index.rs`, `Options::memtable_point_index`, which
//! `run_server` sets) a write does not search the skip list at all: it
//! goes into the index, whose arena keeps every version in the order they
//! were inserted, and reaches the skip list only when something needs the
//! order: a scan, a get the index cannot answer, the flush
//! ([`MemTable::order_pending`]). Those sort the versions not yet ordered
//! and insert them from left to right, which walks nodes already in the
//! cache; a put's insert at a random place missed the cache at nearly
//! every level and was its largest cost (docs/BENCHMARKS.md, session 22).
//! A write-only stretch thus pays for ordering once, in one sort, usually
//! at the flush, on the flush's blocking thread; the first scan after it
//! pays for what piled up.
//!
//! The map lives behind an `Arc`. Its writers are the memtable actor (its
//! write groups) and, while the actor lets them, writers on their own
//! threads (`direct.rs`). A [`MemTable`] is that `Arc` plus a visibility
//! bound, `visible_seq`: it ignores entries with a higher sequence number
//! and, for each user key, shows only the newest version at or below the
//! bound. Readers of the active table take the bound from the published
//! sequence number instead ([`MemTable::get_at`], [`MemTable::at`]).
//!
//! Why what a reader sees never changes, so that readers need no lock and
//! no message: every version is inserted *hidden*, with a sequence number
//! above the bound any reader uses, and the bound moves past a number only
//! once every version up to it is inserted (the actor publishes after a
//! whole group; a direct writer publishes its numbers only when every lower
//! one is published). What lies at or below a bound is never changed or
//! removed. So a snapshot at a bound never changes, though the map under it
//! grows: the project rule "what others read is an immutable `Arc` snapshot
//! or a message" holds. The skip list's lock-free insert makes walking it
//! during an insert safe; the bound makes what a walk returns consistent. A
//! reader never sees half a group or half a batch.
//!
//! The price: superseded versions stay in memory until the table is flushed
//! (they are counted in [`MemTable::approximate_bytes`]), and a walk steps
//! over older and not yet visible versions: one by one for a few, then with
//! one search past the rest of a key's versions ([`VERSIONS_WALKED`]).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use bytes::Bytes;
use crossbeam_skiplist::SkipMap;
use crossbeam_skiplist::map::{Entry as Version, Range};

use super::filter::{KeyFilter, key_hash};
use super::index::{self, Lookup, PointIndex};
use crate::engine::range_delete::RangeTombstone;
use crate::format::sstable::compare_keys;
use crate::format::{Entry, EntryIter, KeyRange};

/// Bytes counted per entry beyond its key and value.
///
/// Measured: 1M and 2M puts of random 16-byte keys with 100-byte values
/// through `Db::put` (sync none, 4 in flight, a memtable too large to
/// freeze) grew the process's RSS by 316.0 bytes per entry both times:
/// 116 of key and value and 200 of overhead. Where the 200 go (glibc
/// malloc, whose chunks are the request plus 8, rounded up to 16):
/// - the skip-list node, value (`Option<Bytes>`, 32) + key (`Bytes` 32 +
///   seq 8) + reference count and height (8) + a tower of 8-byte links
///   (two on average): 96 bytes, about 112 as chunks;
/// - the key's and value's buffers as chunks: 16 + 12 more than their bytes;
/// - a `Bytes` shared header (24, a 32-byte chunk) for each of the two
///   buffers, made when the WAL encoder cloned the handles. It no longer
///   clones them (`encode_wal_batch` borrows), but the point index
///   (`index.rs`) keeps a clone of each version's handles, so these 64
///   bytes appear at insert again when the buffers were plain vectors (an
///   embedding program's `Vec`s; the server's buffers are shared already).
///   They are not counted: a memtable fed from vectors holds up to 64 bytes
///   per entry more than counted.
///
/// The index's own copy of the handles is counted apart, as
/// [`index::VERSION_BYTES`] per version.
///
/// Larger values add only their own rounding, so this is about right for
/// any entry; tiny entries are undercounted by a few bytes. The expiry
/// (8 bytes beside the value in the node) and the key's inline head (16,
/// [`InternalKey::head`]) came after the measurement and are added to it.
pub const ENTRY_OVERHEAD_BYTES: usize = 160;

/// The versions, ordered by [`InternalKey`].
type Versions = SkipMap<InternalKey, Stored>;

/// What a version holds: the value (`None` for a tombstone) and when it
/// expires (Unix milliseconds, 0: never). Expired versions stay until the
/// flush, which writes them as tombstones (see `merge::ExpiredAsTombstones`).
struct Stored {
    value: Option<Bytes>,
    expire_at_ms: u64,
}

/// One version of a user key. Ordered by key ascending, then by sequence
/// number descending, so that a key's newest version comes first.
///
/// `head` holds the key's first [`HEAD_BYTES`] bytes inside the skip-list
/// node, so that most comparisons of an insert's or a lookup's search are
/// decided without following `key` to its buffer: a search of a large
/// table misses the cache at every node it visits, and the key's buffer
/// was a second miss per node (perf: the skip-list search was the memtable
/// actor's largest cost, see docs/BENCHMARKS.md, issue 14). fjall's keys
/// are kept inline in its nodes for the same reason.
#[derive(Clone)]
struct InternalKey {
    head: u128,
    key: Bytes,
    seq: u64,
}

/// Bytes of a key kept inline in its node ([`InternalKey::head`]).
const HEAD_BYTES: usize = 16;

/// The first [`HEAD_BYTES`] of `key`, zero-padded, as a big-endian number:
/// two keys whose heads differ are ordered as their heads are. (Where `a`
/// is shorter, its padding zero is below or equal to `b`'s byte, and equal
/// heads are left to the whole keys.)
fn key_head(key: &[u8]) -> u128 {
    let mut head = [0u8; HEAD_BYTES];
    for (to, from) in head.iter_mut().zip(key) {
        *to = *from;
    }
    u128::from_be_bytes(head)
}

impl InternalKey {
    fn new(key: Bytes, seq: u64) -> Self {
        InternalKey {
            head: key_head(&key),
            key,
            seq,
        }
    }

    /// Whether both are versions of one user key; keys whose heads differ
    /// are not compared (a flush's walk compared every neighbour's buffer).
    fn same_user_key(&self, other: &InternalKey) -> bool {
        self.head == other.head && self.key == other.key
    }
}

/// What the ordering looks at: lets a lookup search with a borrowed key
/// ([`Probe`]) instead of building an [`InternalKey`].
trait VersionKey {
    fn head(&self) -> u128;
    fn user_key(&self) -> &[u8];
    fn seq(&self) -> u64;
}

/// Byte order of the user keys, looking at their inline heads first.
fn user_key_order<A, B>(a: &A, b: &B) -> Ordering
where
    A: VersionKey + ?Sized,
    B: VersionKey + ?Sized,
{
    let by_head = a.head().cmp(&b.head());
    if by_head != Ordering::Equal {
        return by_head;
    }
    let (a, b) = (a.user_key(), b.user_key());
    if a.len() <= HEAD_BYTES && b.len() <= HEAD_BYTES {
        // Equal heads of keys that fit in them: the keys are equal up to
        // the shorter one's length, and the padding of the shorter one
        // matched zeros: the shorter key is the smaller.
        return a.len().cmp(&b.len());
    }
    compare_keys(a, b)
}

fn version_order<A, B>(a: &A, b: &B) -> Ordering
where
    A: VersionKey + ?Sized,
    B: VersionKey + ?Sized,
{
    user_key_order(a, b).then_with(|| b.seq().cmp(&a.seq()))
}

impl VersionKey for InternalKey {
    fn head(&self) -> u128 {
        self.head
    }
    fn user_key(&self) -> &[u8] {
        &self.key
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// A borrowed key and sequence number to search for.
struct Probe<'a> {
    head: u128,
    key: &'a [u8],
    seq: u64,
}

impl VersionKey for Probe<'_> {
    fn head(&self) -> u128 {
        self.head
    }
    fn user_key(&self) -> &[u8] {
        self.key
    }
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl<'a> Borrow<dyn VersionKey + 'a> for InternalKey {
    fn borrow(&self) -> &(dyn VersionKey + 'a) {
        self
    }
}

impl PartialEq for dyn VersionKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        version_order(self, other) == Ordering::Equal
    }
}

impl Eq for dyn VersionKey + '_ {}

impl PartialOrd for dyn VersionKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn VersionKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        version_order(self, other)
    }
}

impl PartialEq for InternalKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InternalKey {}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        version_order(self, other)
    }
}

/// A memtable snapshot: the shared version map and the highest sequence
/// number this snapshot sees. Cloning is O(1) and the clone is immutable
/// (see the module doc).
#[derive(Clone, Default)]
pub struct MemTable {
    shared: Arc<Shared>,
    /// Entries with a higher sequence number are not part of this snapshot.
    visible_seq: u64,
}

/// What every clone of a table shares.
#[derive(Default)]
struct Shared {
    versions: Versions,
    /// The keys of `versions`, so that a get of a key the table does not
    /// hold skips the search; `None`: no filter (every get searches).
    filter: Option<KeyFilter>,
    /// Each key's newest version, so that a get of a key the table holds
    /// skips the search too; `None`: no index (every get searches).
    index: Option<PointIndex>,
    /// Versions inserted, superseded ones included (hidden ones too).
    entries: AtomicUsize,
    /// With an index: the index's versions at arena positions below this
    /// are in `versions` too (`MemTable::order_pending`).
    ordered: AtomicUsize,
    approximate_bytes: AtomicUsize,
}

impl fmt::Debug for MemTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemTable")
            .field("visible_seq", &self.visible_seq)
            .field("entries", &self.shared.entries.load(Relaxed))
            .field("approximate_bytes", &self.approximate_bytes())
            .finish_non_exhaustive()
    }
}

impl MemTable {
    /// An empty table that will be frozen at about `freeze_bytes`
    /// ([`MemTable::approximate_bytes`]), with a key filter of
    /// `bits_per_key` bits for each entry it can hold by then (none if 0)
    /// and, if `point_index`, a point index sized for as many entries.
    pub fn sized_for(freeze_bytes: usize, bits_per_key: usize, point_index: bool) -> Self {
        // Every entry counts at least ENTRY_OVERHEAD_BYTES.
        let max_entries = freeze_bytes / ENTRY_OVERHEAD_BYTES + 1;
        MemTable {
            shared: Arc::new(Shared {
                filter: KeyFilter::sized_for(max_entries, bits_per_key),
                index: point_index.then(|| PointIndex::sized_for(max_entries)),
                ..Shared::default()
            }),
            visible_seq: 0,
        }
    }

    /// Records `value` (or a tombstone) for `key` at sequence `seq`, and
    /// makes it visible to this handle (not to clones taken before).
    ///
    /// Only with sequence numbers higher than any bound readers use; a
    /// write group is applied whole before its numbers are published.
    #[cfg(test)]
    pub fn apply(&mut self, key: Bytes, seq: u64, value: Option<Bytes>) {
        self.apply_expiring(key, seq, value, 0);
    }

    /// As [`MemTable::apply`], for a put that expires at `expire_at_ms`
    /// (Unix milliseconds; 0: never; ignored for a tombstone).
    pub fn apply_expiring(
        &mut self,
        key: Bytes,
        seq: u64,
        value: Option<Bytes>,
        expire_at_ms: u64,
    ) {
        self.insert_hidden(key, seq, value, expire_at_ms);
        self.visible_seq = self.visible_seq.max(seq);
    }

    /// Records a version without making it visible to any clone: it shows
    /// only through a bound at or above `seq` ([`MemTable::get_at`],
    /// [`MemTable::at`]). Safe from any thread at any time, as long as
    /// `seq` is above every bound readers use now (a direct writer's
    /// numbers are, until it publishes them: `direct.rs`).
    pub fn insert_hidden(&self, key: Bytes, seq: u64, value: Option<Bytes>, expire_at_ms: u64) {
        let shared = &*self.shared;
        let mut bytes = key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD_BYTES;
        let expire_at_ms = if value.is_some() { expire_at_ms } else { 0 };
        let hash = key_hash(&key);
        if let Some(filter) = &shared.filter {
            filter.insert(hash);
        }
        match &shared.index {
            // The index holds the version; the skip list takes it when a
            // reader first needs the order (`order_pending`).
            Some(index) => {
                let entry = Entry {
                    key,
                    seq,
                    value,
                    expire_at_ms,
                };
                index.insert(hash, entry);
                bytes += index::VERSION_BYTES;
            }
            None => {
                let stored = Stored {
                    value,
                    expire_at_ms,
                };
                shared.versions.insert(InternalKey::new(key, seq), stored);
            }
        }
        shared.approximate_bytes.fetch_add(bytes, Relaxed);
        shared.entries.fetch_add(1, Relaxed);
    }

    /// Puts into the skip list every version the index holds and the skip
    /// list does not yet, in key order; after it, the skip list holds every
    /// version inserted before the caller's bound was published.
    ///
    /// Sorted first, the versions are inserted from left to right: each
    /// search walks the nodes the previous one just brought into the cache,
    /// where an insert at a random place misses the cache at nearly every
    /// level (the largest cost of a put, docs/BENCHMARKS.md). Threads that
    /// order at once may insert the same versions; an insert of a version
    /// already there keeps the one there, so that is only work repeated.
    /// `ordered` rises only past positions inserted, so it never claims a
    /// version the skip list lacks.
    fn order_pending(&self) {
        let shared = &*self.shared;
        let Some(index) = &shared.index else {
            return;
        };
        let end = index.end();
        let start = shared.ordered.load(Acquire);
        if start >= end {
            return;
        }
        for sorted in sorted_versions(index, start..end, u64::MAX) {
            let version = index.version_at(sorted.position);
            let key = InternalKey {
                head: sorted.head(),
                key: version.key.clone(),
                seq: version.seq,
            };
            let stored = Stored {
                value: version.value.clone(),
                expire_at_ms: version.expire_at_ms,
            };
            shared.versions.get_or_insert(key, stored);
        }
        shared.ordered.fetch_max(end, Release);
    }

    /// With a point index: the newest version at or below this snapshot's
    /// bound of every key, in key order, tombstones included, as
    /// `range(all, false)` lists them; `None` without an index. Sorts the
    /// index's arena instead of ordering the skip list: a frozen table's
    /// flush reads its versions once, and a sort of them is a fraction of
    /// the cost of inserting each into the skip list.
    pub fn newest_in_order(&self) -> Option<NewestInOrder> {
        let index = self.shared.index.as_ref()?;
        let mut sorted = sorted_versions(index, 0..index.end(), self.visible_seq);
        // Older versions follow their key's newest: keep the first of each
        // key, telling keys apart by their sort fields where they can.
        sorted.dedup_by(|later, kept| key_order(index, kept, later) == Ordering::Equal);
        Some(NewestInOrder {
            table: self.clone(),
            sorted: sorted.into_iter(),
            started: false,
        })
    }

    /// This table as of `seq`: a snapshot that sees versions up to it.
    pub fn at(&self, seq: u64) -> MemTable {
        MemTable {
            shared: self.shared.clone(),
            visible_seq: seq,
        }
    }

    /// Moves this handle's bound to `seq` (the actor's own table, after
    /// direct writers published up to it).
    pub fn show_through(&mut self, seq: u64) {
        self.visible_seq = self.visible_seq.max(seq);
    }

    /// The newest visible version of `key`, if this table holds one.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.get_at(key, self.visible_seq)
    }

    /// Prefetching a get of the key hashed `hash` ([`key_hash`]), stage by
    /// stage (see `engine/prefetch.rs`): the key filter's block (`level`
    /// 0); then, if the filter may hold the key, the point index's slot (1)
    /// and the version it names (2). False once the filter rules the key
    /// out (the table cannot answer the get).
    pub fn prefetch(&self, hash: u64, level: u8) -> bool {
        let shared = &*self.shared;
        if let Some(filter) = &shared.filter {
            if level == 0 {
                filter.prefetch(hash);
                return true;
            }
            if !filter.may_contain(hash) {
                return false;
            }
        }
        if let (Some(index), 1..) = (&shared.index, level) {
            index.prefetch(hash, level - 1);
        }
        true
    }

    /// The newest version of `key` at or below `seq`, if this table holds one.
    pub fn get_at(&self, key: &[u8], seq: u64) -> Option<Entry> {
        let shared = &*self.shared;
        let hash = key_hash(key);
        if shared.filter.as_ref().is_some_and(|f| !f.may_contain(hash)) {
            return None;
        }
        match shared.index.as_ref().map(|i| i.lookup(hash, key, seq)) {
            Some(Lookup::Found(entry)) => return Some(entry),
            Some(Lookup::Absent) => return None,
            Some(Lookup::Unknown) | None => {}
        }
        self.order_pending();
        let probe = Probe {
            head: key_head(key),
            key,
            seq,
        };
        // The first version at or after (key, seq) is key's newest version
        // at or below seq, if it is a version of key at all.
        let found = shared
            .versions
            .lower_bound(Bound::Included(&probe as &dyn VersionKey))?;
        (found.key().key == key).then(|| to_entry(&found))
    }

    /// Roughly how much memory the table holds, superseded versions
    /// included (its key filter, sized when the table was made, is not
    /// counted: about 0.8 % of the budget it was sized for).
    pub fn approximate_bytes(&self) -> usize {
        self.shared.approximate_bytes.load(Relaxed)
    }

    /// True if the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.shared.entries.load(Relaxed) == 0
    }

    /// The newest visible version of each key in `range`, ascending or
    /// descending, tombstones included.
    pub fn range(&self, range: &KeyRange, reverse: bool) -> Box<dyn Iterator<Item = Entry> + '_> {
        if invalid_range(range) {
            return Box::new(std::iter::empty());
        }
        self.order_pending();
        let map = &self.shared.versions;
        let (start, end) = (lower(&range.0), upper(&range.1));
        let versions = map.range((start.clone(), end.clone()));
        let visible_seq = self.visible_seq;
        if reverse {
            Box::new(NewestBackward {
                map,
                start,
                versions,
                visible_seq,
                candidate: None,
                walked: 0,
            })
        } else {
            Box::new(NewestForward {
                map,
                end,
                versions,
                visible_seq,
                last: None,
                skipped: 0,
            })
        }
    }
}

/// A version of the point index's arena as a sort of the arena sees it:
/// the fields of [`version_order`] inline, so that comparing two reads no
/// version unless their keys share a head and one is longer than it.
/// Comparisons that followed a reference to each version for its number
/// and length missed the cache: sorting 88k versions took 30-40 ms that
/// way, 12-18 ms this way (docs/BENCHMARKS.md, session 27).
#[derive(Clone, Copy)]
struct ArenaVersion {
    /// [`key_head`], as two halves (high first): 8-byte alignment keeps
    /// the item at 48 bytes.
    head: [u64; 2],
    seq: u64,
    position: usize,
    /// Where the version lies in the arena: prefetched by address (reading
    /// the arena's slot through `version_at` would wait for the line).
    address: usize,
    /// The key's length, saturated: only compared when both keys fit the
    /// head.
    key_len: u32,
}

impl ArenaVersion {
    fn new(position: usize, version: &Entry) -> Self {
        let head = key_head(&version.key);
        ArenaVersion {
            head: [(head >> 64) as u64, head as u64],
            seq: version.seq,
            position,
            address: std::ptr::from_ref(version) as usize,
            key_len: u32::try_from(version.key.len()).unwrap_or(u32::MAX),
        }
    }

    fn head(&self) -> u128 {
        (u128::from(self.head[0]) << 64) | u128::from(self.head[1])
    }

    fn fits_head(&self) -> bool {
        self.key_len as usize <= HEAD_BYTES
    }
}

/// The arena's versions at `positions` with numbers at or below `bound`, in
/// [`version_order`]; of two versions with one key and number (a repair's
/// duplicates) the first pushed stays first, as the index keeps it.
fn sorted_versions(
    index: &PointIndex,
    positions: std::ops::Range<usize>,
    bound: u64,
) -> Vec<ArenaVersion> {
    let mut sorted: Vec<ArenaVersion> = positions
        .map(|position| (position, index.version_at(position)))
        .filter(|(_, version)| version.seq <= bound)
        .map(|(position, version)| ArenaVersion::new(position, version))
        .collect();
    sorted.sort_unstable_by(|a, b| {
        key_order(index, a, b)
            .then_with(|| b.seq.cmp(&a.seq))
            .then_with(|| a.position.cmp(&b.position))
    });
    sorted
}

/// Byte order of two arena versions' keys, from their sort fields where
/// they decide it (the entries are read only for equal heads of keys
/// longer than them).
fn key_order(index: &PointIndex, a: &ArenaVersion, b: &ArenaVersion) -> Ordering {
    a.head
        .cmp(&b.head)
        .then_with(|| match a.fits_head() && b.fits_head() {
            // Equal heads of keys that fit them: the shorter is smaller
            // (see `user_key_order`).
            true => a.key_len.cmp(&b.key_len),
            false => compare_keys(
                &index.version_at(a.position).key,
                &index.version_at(b.position).key,
            ),
        })
}

/// Versions ahead of the one returned whose memory [`NewestInOrder`] asks
/// the CPU to load: the arena's entry at this distance, its key's and
/// value's bytes at half of it (the entry's line is loaded by then).
const PREFETCH_AHEAD: usize = 16;

/// A frozen table's newest versions in key order
/// ([`MemTable::newest_in_order`]), cloned one at a time. The sort left them
/// in no order of the arena, so each one's entry and its key's and value's
/// bytes would miss the cache where the flush reads them; they are
/// prefetched a few versions ahead.
pub struct NewestInOrder {
    table: MemTable,
    sorted: std::vec::IntoIter<ArenaVersion>,
    /// The first versions' entries are prefetched (by the first call).
    started: bool,
}

impl Iterator for NewestInOrder {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let index = self.table.shared.index.as_ref()?;
        let ahead = self.sorted.as_slice();
        let first_entries = if self.started { PREFETCH_AHEAD } else { 0 };
        self.started = true;
        for sorted in ahead.iter().take(PREFETCH_AHEAD + 1).skip(first_entries) {
            // Both ends of its arena slot: the flag after the entry, which
            // `version_at` reads, often lies on the next line.
            crate::format::prefetch_address(sorted.address);
            crate::format::prefetch_address(sorted.address + index::VERSION_BYTES - 1);
        }
        if let Some(sorted) = ahead.get(PREFETCH_AHEAD / 2) {
            let version = index.version_at(sorted.position);
            crate::format::prefetch(&version.key[..]);
            if let Some(value) = &version.value {
                crate::format::prefetch(&value[..]);
            }
        }
        let sorted = self.sorted.next()?;
        Some(index.version_at(sorted.position).clone())
    }
}

impl EntryIter for NewestInOrder {
    fn next_entry(&mut self) -> crate::Result<Option<Entry>> {
        Ok(self.next())
    }
}

fn to_entry(version: &Version<'_, InternalKey, Stored>) -> Entry {
    let stored = version.value();
    Entry {
        key: version.key().key.clone(),
        seq: version.key().seq,
        value: stored.value.clone(),
        expire_at_ms: stored.expire_at_ms,
    }
}

/// The internal-key bound that starts at (or after) every version of a
/// user key: a key's first version is the one with the highest seq.
fn lower(bound: &Bound<Bytes>) -> Bound<InternalKey> {
    match bound {
        Bound::Included(key) => Bound::Included(InternalKey::new(key.clone(), u64::MAX)),
        Bound::Excluded(key) => Bound::Excluded(InternalKey::new(key.clone(), 0)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The internal-key bound that ends at (or before) every version of a user
/// key: a key's last version is the one with the lowest seq.
fn upper(bound: &Bound<Bytes>) -> Bound<InternalKey> {
    match bound {
        Bound::Included(key) => Bound::Included(InternalKey::new(key.clone(), 0)),
        Bound::Excluded(key) => Bound::Excluded(InternalKey::new(key.clone(), u64::MAX)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// A start after the end, or equal bounds not both included: an empty range.
fn invalid_range(range: &KeyRange) -> bool {
    use Bound::{Excluded, Included};
    match (&range.0, &range.1) {
        (Included(s), Included(e)) => s > e,
        (Included(s) | Excluded(s), Excluded(e)) | (Excluded(s), Included(e)) => s >= e,
        _ => false,
    }
}

type VersionRange<'a> =
    Range<'a, InternalKey, (Bound<InternalKey>, Bound<InternalKey>), InternalKey, Stored>;

/// Versions of one key a walk steps over one by one before it seeks past
/// them instead. A key updated many times keeps every version until the
/// flush (under a Zipfian workload the hottest key gets thousands), and a
/// scan crossing it walked every one; a seek is one search.
const VERSIONS_WALKED: usize = 8;

/// Walks versions forward: a key's versions come newest first, so the first
/// visible one is returned and the rest of that key's versions are skipped.
struct NewestForward<'a> {
    map: &'a Versions,
    /// The range's end, for a walk that seeks.
    end: Bound<InternalKey>,
    versions: VersionRange<'a>,
    visible_seq: u64,
    /// The version returned last; older versions of its key are skipped.
    last: Option<Version<'a, InternalKey, Stored>>,
    /// Older versions of `last`'s key stepped over so far.
    skipped: usize,
}

impl Iterator for NewestForward<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let version = self.versions.next()?;
            if let Some(last) = &self.last
                && last.key().same_user_key(version.key())
            {
                self.skipped += 1;
                if self.skipped >= VERSIONS_WALKED {
                    // After the key's last possible version (seq 0).
                    let past = InternalKey::new(last.key().key.clone(), 0);
                    let rest = (Bound::Excluded(past), self.end.clone());
                    self.versions = self.map.range(rest);
                    self.skipped = 0;
                }
                continue;
            }
            if version.key().seq > self.visible_seq {
                continue;
            }
            let entry = to_entry(&version);
            self.last = Some(version);
            self.skipped = 0;
            return Some(entry);
        }
    }
}

/// Walks versions backward: a key's versions come oldest first, so the
/// newest visible one is known only when the walk reaches another key, or
/// when it seeks to it after [`VERSIONS_WALKED`] versions of the key.
struct NewestBackward<'a> {
    map: &'a Versions,
    /// The range's start, for a walk that seeks.
    start: Bound<InternalKey>,
    versions: VersionRange<'a>,
    visible_seq: u64,
    /// The newest visible version seen so far of the key being walked.
    candidate: Option<Version<'a, InternalKey, Stored>>,
    /// Versions of the key being walked stepped over so far.
    walked: usize,
}

impl<'a> NewestBackward<'a> {
    /// Finds the newest visible version of `key` with one search, and goes
    /// on from the version before the key's first.
    fn seek_newest(&mut self, key: &Bytes) {
        let probe = Probe {
            head: key_head(key),
            key,
            seq: self.visible_seq,
        };
        let newest = self
            .map
            .lower_bound(Bound::Included(&probe as &dyn VersionKey))
            .filter(|v| v.key().key == *key);
        // None if no version of the key is visible. The range starts and
        // ends at whole keys (`lower`, `upper`), so what the search finds
        // is inside it.
        if let Some(newest) = newest {
            self.candidate = Some(newest);
        }
        let before = InternalKey::new(key.clone(), u64::MAX);
        self.versions = self
            .map
            .range((self.start.clone(), Bound::Excluded(before)));
        self.walked = 0;
    }
}

impl Iterator for NewestBackward<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let Some(version) = self.versions.next_back() else {
                return self.candidate.take().map(|c| to_entry(&c));
            };
            let visible = version.key().seq <= self.visible_seq;
            if let Some(candidate) = &self.candidate
                && !candidate.key().same_user_key(version.key())
            {
                let entry = to_entry(candidate);
                self.candidate = visible.then_some(version);
                self.walked = 0;
                return Some(entry);
            }
            self.walked += 1;
            if self.walked >= VERSIONS_WALKED {
                let key = version.key().key.clone();
                if visible {
                    self.candidate = Some(version);
                }
                self.seek_newest(&key);
                continue;
            }
            if visible {
                self.candidate = Some(version);
            }
        }
    }
}

/// A memtable that takes no more writes, waiting to be flushed.
#[derive(Debug)]
pub struct FrozenMemtable {
    /// The table's contents.
    pub table: MemTable,
    /// The WAL that holds these writes; deleted once they are in a segment.
    pub wal_number: u64,
    /// The highest sequence number in the table.
    pub max_seq: u64,
    /// The range deletes written into this memtable (see `range_delete.rs`).
    pub range_tombstones: Vec<RangeTombstone>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_byte_order() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefgi",
            b"\xff",
            b"0000000000000001",
            b"0000000000000010",
            b"00000000000000100",
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(compare_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn versions_are_ordered_by_key_bytes_whatever_their_heads() {
        // Keys shorter than, equal to and longer than the inline head, with
        // zero bytes where the padding is, and long keys sharing a head.
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"a\0\0",
            b"a\x01",
            b"0123456789abcdef",
            b"0123456789abcdef\0",
            b"0123456789abcdefa",
            b"0123456789abcdefb",
            b"0123456789abcdef\xff",
            b"0123456789abcdeg",
            b"0123456789abcde",
            b"0123456789abcde\0\0",
            b"\xff\xff",
        ];
        for a in &keys {
            for b in &keys {
                for (sa, sb) in [(1, 1), (1, 2), (2, 1)] {
                    let x = InternalKey::new(Bytes::copy_from_slice(a), sa);
                    let y = InternalKey::new(Bytes::copy_from_slice(b), sb);
                    let expected = a.cmp(b).then(sb.cmp(&sa));
                    assert_eq!(x.cmp(&y), expected, "{a:?}@{sa} vs {b:?}@{sb}");
                    let probe = Probe {
                        head: key_head(b),
                        key: b,
                        seq: sb,
                    };
                    let (x, probe): (&dyn VersionKey, &dyn VersionKey) = (&x, &probe);
                    assert_eq!(x.cmp(probe), expected, "{a:?}@{sa} vs probe {b:?}@{sb}");
                }
            }
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn all() -> KeyRange {
        (Bound::Unbounded, Bound::Unbounded)
    }

    /// (key, seq, value) of each entry of `table.range(range, reverse)`.
    fn listed(
        table: &MemTable,
        range: &KeyRange,
        reverse: bool,
    ) -> Vec<(Bytes, u64, Option<Bytes>)> {
        table
            .range(range, reverse)
            .map(|e| (e.key, e.seq, e.value))
            .collect()
    }

    #[test]
    fn expiries_are_kept_with_their_version() {
        let mut table = MemTable::default();
        table.apply_expiring(b("k"), 1, Some(b("v")), 500);
        table.apply_expiring(b("gone"), 2, None, 700);
        assert_eq!(table.get(b"k").unwrap().expire_at_ms, 500);
        // A tombstone carries no expiry.
        assert_eq!(table.get(b"gone").unwrap().expire_at_ms, 0);
        table.apply(b("k"), 3, Some(b("w")));
        assert_eq!(table.get(b"k").unwrap().expire_at_ms, 0);
        let expiries: Vec<u64> = table.range(&all(), true).map(|e| e.expire_at_ms).collect();
        assert_eq!(expiries, vec![0, 0]);
    }

    #[test]
    fn newest_version_wins_and_every_version_is_counted() {
        let mut table = MemTable::default();
        assert!(table.is_empty());
        table.apply(b("k"), 1, Some(b("first")));
        let size_one = table.approximate_bytes();
        table.apply(b("k"), 2, Some(b("again")));
        assert_eq!(table.approximate_bytes(), 2 * size_one);
        table.apply(b("k"), 3, None);
        assert!(!table.is_empty());
        let entry = table.get(b"k").unwrap();
        assert_eq!((entry.seq, entry.value), (3, None));
        assert_eq!(table.get(b"j"), None);
        assert_eq!(table.get(b"kk"), None);
        assert_eq!(listed(&table, &all(), false), vec![(b("k"), 3, None)]);
    }

    #[test]
    fn a_filtered_table_finds_every_key_it_holds_and_only_those() {
        // Sized for about 64 entries, filled with 2000: past its size the
        // filter lets more absent keys through, but never hides a held one.
        let mut table = MemTable::sized_for(64 * ENTRY_OVERHEAD_BYTES, 10, true);
        for i in 0..2000u64 {
            let value = (i % 3 != 0).then(|| b(&format!("v{i}")));
            table.apply(b(&format!("key{i}")), i + 1, value.clone());
            let snapshot = table.clone();
            assert_eq!(
                snapshot.get(format!("key{i}").as_bytes()).unwrap().value,
                value
            );
        }
        for i in 0..2000u64 {
            let entry = table.get(format!("key{i}").as_bytes()).unwrap();
            assert_eq!(entry.seq, i + 1);
            assert_eq!(table.get(format!("absent{i}").as_bytes()), None);
        }
    }

    #[test]
    fn a_filtered_snapshot_does_not_see_later_writes() {
        let mut table = MemTable::sized_for(1 << 20, 10, true);
        table.apply(b("a"), 1, Some(b("1")));
        let snapshot = table.clone();
        table.apply(b("b"), 2, Some(b("2")));
        // b's bits are in the shared filter now; the snapshot's bound
        // still hides b.
        assert_eq!(snapshot.get(b"b"), None);
        assert_eq!(snapshot.get(b"a").unwrap().value, Some(b("1")));
        assert_eq!(table.get(b"b").unwrap().value, Some(b("2")));
    }

    #[test]
    fn an_indexed_table_answers_every_bound_as_the_skip_list_does() {
        // Versions of 50 keys (some deletes), inserted hidden in shuffled
        // order within windows as concurrent writers would, then read at
        // every bound: the index's answer (or its fallback) must equal the
        // plain search of a table with neither filter nor index.
        let indexed = MemTable::sized_for(1 << 20, 10, true);
        let plain = MemTable::default();
        let mut next = crate::test_random::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut seqs: Vec<u64> = (1..=600).collect();
        for window in seqs.chunks_mut(4) {
            window.rotate_left((next() % 4) as usize);
        }
        for seq in seqs {
            let key = b(&format!("key{}", next() % 50));
            let value = (!next().is_multiple_of(5)).then(|| b(&seq.to_string()));
            indexed.insert_hidden(key.clone(), seq, value.clone(), 0);
            plain.insert_hidden(key, seq, value, 0);
        }
        for bound in (0..=600).step_by(7).chain([600]) {
            for k in 0..55 {
                let key = format!("key{k}");
                assert_eq!(
                    indexed.get_at(key.as_bytes(), bound),
                    plain.get_at(key.as_bytes(), bound),
                    "{key} at {bound}"
                );
            }
        }
    }

    #[test]
    fn no_bits_per_key_no_filter() {
        let mut table = MemTable::sized_for(1 << 20, 0, false);
        assert!(table.shared.filter.is_none());
        table.apply(b("a"), 1, Some(b("1")));
        assert_eq!(table.get(b"a").unwrap().value, Some(b("1")));
    }

    #[test]
    fn snapshot_does_not_see_later_writes() {
        let mut table = MemTable::default();
        let empty = table.clone();
        table.apply(b("a"), 1, Some(b("1")));
        table.apply(b("b"), 2, Some(b("2")));
        let snapshot = table.clone();
        table.apply(b("a"), 3, Some(b("3")));
        table.apply(b("c"), 4, Some(b("4")));
        table.apply(b("b"), 5, None);

        assert_eq!(empty.get(b"a"), None);
        assert_eq!(empty.range(&all(), false).count(), 0);
        assert_eq!(empty.range(&all(), true).count(), 0);

        assert_eq!(snapshot.get(b"a").unwrap().value, Some(b("1")));
        assert_eq!(snapshot.get(b"b").unwrap().value, Some(b("2")));
        assert_eq!(snapshot.get(b"c"), None);
        let expected = vec![(b("a"), 1, Some(b("1"))), (b("b"), 2, Some(b("2")))];
        assert_eq!(listed(&snapshot, &all(), false), expected);
        let reversed: Vec<_> = expected.into_iter().rev().collect();
        assert_eq!(listed(&snapshot, &all(), true), reversed);

        assert_eq!(table.get(b"a").unwrap().value, Some(b("3")));
        assert_eq!(table.get(b"b").unwrap().value, None);
    }

    #[test]
    fn snapshot_sees_its_newest_version_even_a_tombstone() {
        let mut table = MemTable::default();
        table.apply(b("k"), 1, Some(b("1")));
        table.apply(b("k"), 2, None);
        let deleted = table.clone();
        table.apply(b("k"), 3, Some(b("3")));
        let entry = deleted.get(b"k").unwrap();
        assert_eq!((entry.seq, entry.value), (2, None));
        assert_eq!(listed(&deleted, &all(), false), vec![(b("k"), 2, None)]);
        assert_eq!(listed(&deleted, &all(), true), vec![(b("k"), 2, None)]);
        assert_eq!(table.get(b"k").unwrap().value, Some(b("3")));
    }

    #[test]
    fn reverse_walk_returns_newest_visible_version_of_each_key() {
        let mut table = MemTable::default();
        let mut seq = 0;
        for round in 0..3 {
            for key in ["a", "b", "c"] {
                seq += 1;
                table.apply(b(key), seq, Some(b(&format!("{key}{round}"))));
            }
        }
        // a: 1, 4, 7; b: 2, 5, 8; c: 3, 6, 9. See through seq 5.
        let mut snapshot = table.clone();
        snapshot.visible_seq = 5;
        let backward = listed(&snapshot, &all(), true);
        assert_eq!(
            backward,
            vec![
                (b("c"), 3, Some(b("c0"))),
                (b("b"), 5, Some(b("b1"))),
                (b("a"), 4, Some(b("a1"))),
            ]
        );
        let mut forward = listed(&snapshot, &all(), false);
        forward.reverse();
        assert_eq!(forward, backward);
        let latest = listed(&table, &all(), true);
        let seqs: Vec<_> = latest.iter().map(|(_, seq, _)| *seq).collect();
        assert_eq!(seqs, vec![9, 8, 7]);
    }

    /// Keys with many versions (more than a walk steps over before it
    /// seeks), some hidden above the bound, read forward and backward over
    /// every range and bound, against the newest version at or below the
    /// bound of each key.
    #[test]
    fn walks_that_seek_past_many_versions_return_the_newest_visible_ones() {
        let mut table = MemTable::default();
        let versions = [("a", 3), ("b", 40), ("c", 1), ("d", 25), ("e", 9)];
        let mut seq = 0;
        let mut written: Vec<(Bytes, u64)> = Vec::new();
        for round in 0..40 {
            for (key, count) in versions {
                if round < count {
                    seq += 1;
                    table.apply(b(key), seq, Some(b(&format!("{key}{seq}"))));
                    written.push((b(key), seq));
                }
            }
        }
        let keys: Vec<Bytes> = ["", "a", "b", "bb", "c", "d", "e", "f"].map(b).to_vec();
        let bounds = |k: &Bytes| [Bound::Included(k.clone()), Bound::Excluded(k.clone())];
        for bound_seq in [1, 2, 5, 17, 50, 77, seq - 3, seq] {
            let mut snapshot = table.clone();
            snapshot.visible_seq = bound_seq;
            for start in keys.iter().flat_map(bounds).chain([Bound::Unbounded]) {
                for end in keys.iter().flat_map(bounds).chain([Bound::Unbounded]) {
                    let range = (start.clone(), end.clone());
                    if invalid_range(&range) {
                        continue;
                    }
                    let mut expected: Vec<(Bytes, u64, Option<Bytes>)> = Vec::new();
                    for (key, _) in versions {
                        let newest = written
                            .iter()
                            .filter(|(k, s)| *k == key && *s <= bound_seq)
                            .map(|(_, s)| *s)
                            .max();
                        let key = b(key);
                        if let Some(s) = newest
                            && std::ops::RangeBounds::contains(&range, &key)
                        {
                            expected.push((
                                key.clone(),
                                s,
                                Some(b(&format!("{}{s}", to_str(&key)))),
                            ));
                        }
                    }
                    let forward = listed(&snapshot, &range, false);
                    assert_eq!(forward, expected, "forward {range:?} at {bound_seq}");
                    expected.reverse();
                    let backward = listed(&snapshot, &range, true);
                    assert_eq!(backward, expected, "backward {range:?} at {bound_seq}");
                }
            }
        }
    }

    /// An indexed table puts its versions in order only when a walk needs
    /// it (`order_pending`): walks interleaved with hidden inserts in
    /// shuffled order, at every bound, list what a table ordered at each
    /// insert lists.
    #[test]
    fn an_indexed_table_orders_its_versions_for_every_walk() {
        let indexed = MemTable::sized_for(1 << 20, 10, true);
        let plain = MemTable::default();
        let mut next = crate::test_random::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut seqs: Vec<u64> = (1..=900).collect();
        for window in seqs.chunks_mut(6) {
            window.rotate_left((next() % 6) as usize);
        }
        for (i, seq) in seqs.into_iter().enumerate() {
            let key = b(&format!("key{}", next() % 70));
            let value = (!next().is_multiple_of(5)).then(|| b(&seq.to_string()));
            indexed.insert_hidden(key.clone(), seq, value.clone(), 0);
            plain.insert_hidden(key, seq, value, 0);
            if i % 97 != 0 {
                continue;
            }
            // Bounds at, below and above the numbers inserted so far; a
            // bound above an unfilled number is never published, but the
            // walk must still list exactly the plain table's versions.
            for bound in [i as u64 / 2, i as u64, i as u64 + 3, 900] {
                let range = (Bound::Included(b("key1")), Bound::Excluded(b("key5")));
                for (range, reverse) in [(all(), false), (all(), true), (range, false)] {
                    assert_eq!(
                        listed(&indexed.at(bound), &range, reverse),
                        listed(&plain.at(bound), &range, reverse),
                        "after {i} inserts, bound {bound}, reverse {reverse}"
                    );
                }
            }
        }
        for bound in [0, 1, 450, 899, 900] {
            for k in 0..72 {
                let key = format!("key{k}");
                assert_eq!(
                    indexed.get_at(key.as_bytes(), bound),
                    plain.get_at(key.as_bytes(), bound)
                );
            }
        }
    }

    /// A flush's sorted arena lists what a walk of the ordered skip list
    /// lists, at every bound.
    #[test]
    fn newest_in_order_is_the_forward_walk() {
        let indexed = MemTable::sized_for(1 << 20, 10, true);
        let mut next = crate::test_random::xorshift(0x1234_5678_9abc_def1u64);
        let mut seqs: Vec<u64> = (1..=700).collect();
        for window in seqs.chunks_mut(5) {
            window.rotate_left((next() % 5) as usize);
        }
        for seq in seqs {
            // Keys sharing a 16-byte head, and shorter ones.
            let key = match next() % 3 {
                0 => format!("0123456789abcdef{}", next() % 20),
                _ => format!("k{}", next() % 40),
            };
            let value = (!next().is_multiple_of(4)).then(|| b(&seq.to_string()));
            indexed.insert_hidden(b(&key), seq, value, next() % 3);
        }
        assert!(MemTable::default().newest_in_order().is_none());
        for bound in [0, 1, 99, 350, 699, 700] {
            let snapshot = indexed.at(bound);
            let walked: Vec<Entry> = snapshot.range(&all(), false).collect();
            let sorted = snapshot.newest_in_order().map(Iterator::collect::<Vec<_>>);
            assert_eq!(sorted, Some(walked), "at {bound}");
        }
    }

    /// Of two versions with one key and number (a repair's duplicates), a
    /// flush keeps the first pushed, as the skip list and the index do;
    /// keys longer than the inline head are told apart by their bytes.
    #[test]
    fn newest_in_order_keeps_the_first_of_duplicates_and_long_keys_apart() {
        let table = MemTable::sized_for(1 << 20, 10, true);
        let long = "0123456789abcdef-long";
        for (key, seq, value) in [
            ("dup", 5, "first"),
            ("dup", 5, "second"),
            (long, 3, "long"),
            ("0123456789abcdef", 4, "head"),
            ("0123456789abcdef-lone", 2, "longer"),
            (long, 1, "old"),
        ] {
            table.insert_hidden(b(key), seq, Some(b(value)), 0);
        }
        let sorted: Vec<(Bytes, Option<Bytes>)> = table
            .at(5)
            .newest_in_order()
            .into_iter()
            .flatten()
            .map(|e| (e.key, e.value))
            .collect();
        let expected: Vec<(Bytes, Option<Bytes>)> = [
            ("0123456789abcdef", "head"),
            ("0123456789abcdef-lone", "longer"),
            (long, "long"),
            ("dup", "first"),
        ]
        .into_iter()
        .map(|(k, v)| (b(k), Some(b(v))))
        .collect();
        assert_eq!(sorted, expected);
        let walked: Vec<Entry> = table.at(5).range(&all(), false).collect();
        let walked: Vec<(Bytes, Option<Bytes>)> =
            walked.into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(walked, expected);
    }

    /// Writers insert hidden and publish in sequence order, as direct
    /// writers do; readers walk at the published bound while the versions
    /// are still being ordered by other walks. Every walk must list, for
    /// each key, its newest version at or below the bound.
    #[test]
    fn walks_during_concurrent_writes_see_every_published_version() {
        use std::sync::atomic::AtomicU64;
        const KEYS: u64 = 97;
        const LAST: u64 = 20_000;
        let table = MemTable::sized_for(64 << 20, 10, true);
        let (taken, published) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    loop {
                        let seq = taken.fetch_add(1, Relaxed) + 1;
                        if seq > LAST {
                            return;
                        }
                        let key = b(&format!("k{:02}", seq % KEYS));
                        table.insert_hidden(key, seq, Some(b(&seq.to_string())), 0);
                        while published.load(Acquire) != seq - 1 {
                            std::hint::spin_loop();
                        }
                        published.store(seq, Release);
                    }
                });
            }
            for reverse in [false, true] {
                let (table, published) = (&table, &published);
                scope.spawn(move || {
                    loop {
                        let bound = published.load(Acquire);
                        let listed = listed(&table.at(bound), &all(), reverse);
                        let mut expected: Vec<(Bytes, u64, Option<Bytes>)> = (0..KEYS)
                            .filter_map(|k| {
                                let first = if k == 0 { KEYS } else { k };
                                let newest = (first..=bound).rev().find(|s| s % KEYS == k)?;
                                let key = b(&format!("k{k:02}"));
                                Some((key, newest, Some(b(&newest.to_string()))))
                            })
                            .collect();
                        if reverse {
                            expected.reverse();
                        }
                        assert_eq!(listed, expected, "at bound {bound}");
                        if bound == LAST {
                            return;
                        }
                    }
                });
            }
        });
    }

    fn to_str(key: &Bytes) -> &str {
        std::str::from_utf8(key).unwrap_or_default()
    }

    #[test]
    fn batch_putting_a_key_twice_keeps_the_later_mutation() {
        // The actor gives mutation i of a batch the sequence first_seq + i.
        let mut table = MemTable::default();
        let batch = [("k", Some("old")), ("j", None), ("k", Some("new"))];
        for (offset, (key, value)) in batch.iter().enumerate() {
            table.apply(b(key), 10 + offset as u64, value.map(b));
        }
        assert_eq!(table.get(b"k").unwrap().value, Some(b("new")));
        let expected = vec![(b("j"), 11, None), (b("k"), 12, Some(b("new")))];
        assert_eq!(listed(&table, &all(), false), expected);
        let reversed: Vec<_> = expected.into_iter().rev().collect();
        assert_eq!(listed(&table, &all(), true), reversed);
    }

    #[test]
    fn range_honours_bounds_and_direction() {
        let mut table = MemTable::default();
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            table.apply(b(key), i as u64 + 1, Some(b(key)));
            table.apply(b(key), i as u64 + 10, Some(b(key)));
        }
        let keys = |range: KeyRange, reverse: bool| -> Vec<Bytes> {
            table.range(&range, reverse).map(|e| e.key).collect()
        };
        let (inc, exc) = (|s| Bound::Included(b(s)), |s| Bound::Excluded(b(s)));
        assert_eq!(keys((inc("b"), exc("d")), false), vec![b("b"), b("c")]);
        assert_eq!(keys((inc("b"), exc("d")), true), vec![b("c"), b("b")]);
        assert_eq!(keys((exc("b"), inc("d")), false), vec![b("c"), b("d")]);
        assert_eq!(keys((exc("b"), inc("d")), true), vec![b("d"), b("c")]);
        assert_eq!(keys((inc("c"), inc("c")), true), vec![b("c")]);
        assert_eq!(keys((Bound::Unbounded, exc("b")), true), vec![b("a")]);
        assert_eq!(keys((exc("c"), Bound::Unbounded), false), vec![b("d")]);
    }

    #[test]
    fn inverted_range_is_empty_not_a_panic() {
        let mut table = MemTable::default();
        table.apply(b("a"), 1, Some(b("1")));
        table.apply(b("z"), 2, Some(b("1")));
        for reverse in [false, true] {
            let range = (Bound::Included(b("z")), Bound::Excluded(b("a")));
            assert_eq!(table.range(&range, reverse).count(), 0);
            let range = (Bound::Included(b("z")), Bound::Included(b("a")));
            assert_eq!(table.range(&range, reverse).count(), 0);
            let range = (Bound::Excluded(b("a")), Bound::Excluded(b("a")));
            assert_eq!(table.range(&range, reverse).count(), 0);
            let range = (Bound::Included(b("a")), Bound::Excluded(b("a")));
            assert_eq!(table.range(&range, reverse).count(), 0);
            let range = (Bound::Excluded(b("a")), Bound::Included(b("a")));
            assert_eq!(table.range(&range, reverse).count(), 0);
        }
    }
}
