//! Data blocks: encoding one entry, decoding a whole block, looking a key up
//! in a cached block, and the bounds-checked cursor every decoder in this
//! module reads with.
//!
//! A cached version-3 block looked up [`HITS_BEFORE_POINTS`] times gets a
//! point index in memory ([`PointSlots`], a hash from key to entry; nothing
//! of it is written to disk), so that later lookups read one slot and one
//! entry instead of searching the restart points.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU8, Ordering as MemoryOrder};

use bytes::Bytes;
use once_cell::race::OnceBox;

use super::bloom::key_hash;
use super::{Malformed, compare_keys};
use crate::format::Entry;
use crate::format::coding::{get_u32, get_varint, put_u32, put_varint};

const KIND_TOMBSTONE: u8 = 0;
const KIND_PUT: u8 = 1;
const KIND_PUT_EXPIRING: u8 = 2;

/// Entries from one restart point to the next in a version-3 block: a lookup
/// binary-searches the restart points, then reads at most this many keys.
pub(super) const RESTART_INTERVAL: usize = 8;

/// How a data block's bytes (after decompression) are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockLayout {
    /// Tables of version 1 and 2: the entries alone.
    Entries,
    /// Version 3: the entries, then the restart array and its length.
    Restarts,
}

/// Appends `entry` in the data block encoding (see the module doc).
pub(super) fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    put_varint(out, entry.key.len() as u64);
    match &entry.value {
        None => {
            out.push(KIND_TOMBSTONE);
            put_varint(out, entry.seq);
        }
        Some(value) if entry.expire_at_ms != 0 => {
            out.push(KIND_PUT_EXPIRING);
            put_varint(out, entry.seq);
            put_varint(out, entry.expire_at_ms);
            put_varint(out, value.len() as u64);
        }
        Some(value) => {
            out.push(KIND_PUT);
            put_varint(out, entry.seq);
            put_varint(out, value.len() as u64);
        }
    }
    out.extend_from_slice(&entry.key);
    if let Some(value) = &entry.value {
        out.extend_from_slice(value);
    }
}

/// Bytes `encode_entry` would append for `entry`.
pub(super) fn encoded_len(entry: &Entry) -> usize {
    let value_len = entry.value.as_ref().map_or(0, |v| 10 + v.len());
    let expiry_len = if entry.expire_at_ms != 0 { 10 } else { 0 };
    10 + 1 + 10 + expiry_len + entry.key.len() + value_len
}

/// Appends a version-3 block's restart array: each restart point's offset
/// in the block, then how many there are.
pub(super) fn encode_restarts(restarts: &[u32], out: &mut Vec<u8>) {
    for &restart in restarts {
        put_u32(out, restart);
    }
    put_u32(out, u32::try_from(restarts.len()).unwrap_or(u32::MAX));
}

/// Decodes every entry of a block whose crc was checked. Keys must be
/// strictly increasing, greater than `after` (the previous block's last key)
/// and end with `last_key` (the index's word for this block); a version-3
/// block's restart points must each be where an entry starts.
pub(super) fn decode_block(
    data: &Bytes,
    layout: BlockLayout,
    after: Option<&[u8]>,
    last_key: &[u8],
) -> Result<Vec<Entry>, Malformed> {
    let mut entries = Vec::new();
    match layout {
        BlockLayout::Entries => walk_block(data, after, last_key, |_, entry| entries.push(entry))?,
        BlockLayout::Restarts => {
            let restarts = RestartArray::decode(data)?;
            let mut next_restart = 0;
            let region = data.slice(..restarts.entries_end);
            walk_block(&region, after, last_key, |at, entry| {
                if restarts.offset(data, next_restart) == Some(at) {
                    next_restart += 1;
                }
                entries.push(entry);
            })?;
            if next_restart != restarts.count {
                return Err(Malformed::new(
                    restarts.entries_end,
                    "a restart point is not where an entry starts",
                ));
            }
        }
    }
    Ok(entries)
}

/// Checks a whole run of entries as `decode_block` does, handing each entry
/// and its offset in the block to `visit`.
fn walk_block(
    data: &Bytes,
    after: Option<&[u8]>,
    last_key: &[u8],
    mut visit: impl FnMut(usize, Entry),
) -> Result<(), Malformed> {
    let mut cursor = Cursor::new(data);
    let mut previous: Option<Bytes> = None;
    while !cursor.at_end() {
        let at = cursor.pos();
        let entry = decode_entry(data, &mut cursor)?;
        let before = previous.as_deref().or(after);
        if before.is_some_and(|p| entry.key.as_ref() <= p) {
            return Err(Malformed::new(at, "keys out of order"));
        }
        previous = Some(entry.key.clone());
        visit(at, entry);
    }
    match previous {
        None => Err(Malformed::new(0, "empty data block")),
        Some(last) if last.as_ref() != last_key => {
            Err(Malformed::new(0, "block's last key differs from the index"))
        }
        Some(_) => Ok(()),
    }
}

/// The restart array at the end of a version-3 block, checked: at least one
/// restart point, the first at 0, strictly increasing, all inside the
/// entries. The offsets stay in the block's bytes.
#[derive(Debug, Clone, Copy)]
struct RestartArray {
    /// Where the entries end and the array starts.
    entries_end: usize,
    count: usize,
}

impl RestartArray {
    fn decode(data: &[u8]) -> Result<RestartArray, Malformed> {
        let count_at = data
            .len()
            .checked_sub(4)
            .ok_or(Malformed::new(0, "block too short for its restart count"))?;
        let count = get_u32(data, count_at).unwrap_or(0) as usize;
        let entries_end = count
            .checked_mul(4)
            .and_then(|len| count_at.checked_sub(len))
            .ok_or(Malformed::new(count_at, "more restart points than fit"))?;
        let array = RestartArray { entries_end, count };
        let mut previous = None;
        for i in 0..count {
            let restart = array.offset(data, i).unwrap_or(usize::MAX);
            let in_order = previous.map_or(restart == 0, |p| restart > p);
            if !in_order || restart >= entries_end {
                return Err(Malformed::new(
                    entries_end + 4 * i,
                    "restart point out of order or past the entries",
                ));
            }
            previous = Some(restart);
        }
        if count == 0 {
            return Err(Malformed::new(count_at, "block with no restart point"));
        }
        Ok(array)
    }

    /// Where restart point `i` starts.
    fn offset(&self, data: &[u8], i: usize) -> Option<usize> {
        get_u32(data, self.entries_end.checked_add(i.checked_mul(4)?)?).map(|at| at as usize)
    }

    /// Where the run of entries from restart point `i` ends.
    fn run_end(&self, data: &[u8], i: usize) -> Option<usize> {
        if i + 1 < self.count {
            self.offset(data, i + 1)
        } else {
            Some(self.entries_end)
        }
    }
}

/// A checked data block kept whole with what a point lookup needs to
/// binary-search it without decoding every entry. What the block cache
/// holds.
#[derive(Debug)]
pub struct Block {
    data: Bytes,
    search: Search,
    /// Lookups so far, counted up to [`HITS_BEFORE_POINTS`].
    hits: AtomicU8,
    /// A version-3 block's point index, built by the lookup that makes
    /// the block's hits reach [`HITS_BEFORE_POINTS`] (`None` inside: the
    /// block cannot have one). Set once, without a lock: two lookups may
    /// both build it, and one of them is kept.
    points: OnceBox<Option<PointSlots>>,
}

/// Lookups of a cached block before one builds its point index. Building
/// decodes every entry (about what three or four searches of the restart
/// points read), so a block the cache holds only briefly (a 2M-key read
/// load churns the cache) never pays it; built for every block as it was
/// cached, it cost random reads at 2M keys a tenth or more of their speed
/// (docs/BENCHMARKS.md, session 14).
const HITS_BEFORE_POINTS: u8 = 4;

/// How a lookup finds its way in a block.
#[derive(Debug)]
enum Search {
    /// Version 1 and 2 blocks: where each entry starts, ascending (so by key
    /// too), found by decoding and checking the whole block.
    Offsets(Vec<u32>),
    /// Version 3 blocks: the block's own restart array. Only the array and
    /// the first key are checked up front; a lookup checks the entries it
    /// reads (or [`PointSlots::build`] checks them all).
    Restarts(RestartArray),
}

/// A cached version-3 block's index from key hash to entry, built in memory
/// (nothing of it is on disk) once the block has been looked up
/// [`HITS_BEFORE_POINTS`] times: open addressing over the entries'
/// [`key_hash`]es, each slot `tag << 16 | (offset + 1)` (0: empty), at most
/// half full. A point lookup then reads one slot and, when its tag matches,
/// one entry, where a binary search over the restart points and a scan of
/// a run read about ten cache lines of a 4 KiB block. Built only for blocks
/// under 64 KiB (offsets fit 16 bits).
#[derive(Debug)]
struct PointSlots {
    slots: Box<[u32]>,
}

impl PointSlots {
    /// The index of a block whose entries all decode, in strictly
    /// increasing key order, each restart point at an entry's start; `None`
    /// otherwise (lookups then search the restart points, and report what
    /// is wrong when they read it) or when the block is too large.
    fn build(data: &[u8], restarts: &RestartArray) -> Option<PointSlots> {
        if max_indexed_entries(restarts) == 0 {
            return None;
        }
        let mut cursor = Cursor::at(data, 0);
        let mut entries: Vec<(usize, u64)> = Vec::with_capacity(max_indexed_entries(restarts));
        let (mut previous, mut next_restart): (Option<&[u8]>, usize) = (None, 0);
        while cursor.pos() < restarts.entries_end {
            let at = cursor.pos();
            if restarts.offset(data, next_restart) == Some(at) {
                next_restart += 1;
            }
            let entry = decode_entry_ref(&mut cursor).ok()?;
            if previous.is_some_and(|p| compare_keys(entry.key, p).is_le()) {
                return None;
            }
            previous = Some(entry.key);
            entries.push((at, key_hash(entry.key)));
            if entries.len() > max_indexed_entries(restarts) {
                return None; // more than its charge (`Block::memory_bytes`)
            }
        }
        if cursor.pos() != restarts.entries_end || next_restart != restarts.count {
            return None;
        }
        let mut slots = vec![0u32; slot_count(entries.len())];
        let mask = slots.len() - 1;
        for (at, hash) in entries {
            let mut i = hash as usize & mask;
            while slots.get(i).is_some_and(|&slot| slot != 0) {
                i = (i + 1) & mask;
            }
            if let Some(slot) = slots.get_mut(i) {
                *slot = slot_tag(hash) << 16 | (at as u32 + 1);
            }
        }
        Some(PointSlots {
            slots: slots.into_boxed_slice(),
        })
    }

    /// Where the entry whose key may be `key` (hashed `hash`) starts, for
    /// each slot whose tag matches, until an empty slot.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let mask = self.slots.len() - 1;
        let tag = slot_tag(hash);
        (0..self.slots.len())
            .map(move |probe| (hash as usize).wrapping_add(probe) & mask)
            .map(|i| self.slots.get(i).copied().unwrap_or(0))
            .take_while(|&slot| slot != 0)
            .filter(move |&slot| slot >> 16 == tag)
            .map(|slot| (slot & 0xFFFF) as usize - 1)
    }
}

/// The most entries a block's point index takes: as many as its restart
/// points allow (the writer puts [`RESTART_INTERVAL`] entries in a run), and
/// none in a block of 64 KiB or more (offsets fit 16 bits).
fn max_indexed_entries(restarts: &RestartArray) -> usize {
    if restarts.entries_end >= usize::from(u16::MAX) {
        return 0;
    }
    restarts.count * RESTART_INTERVAL
}

/// Slots for `entries` entries: a power of two, at most half full.
fn slot_count(entries: usize) -> usize {
    (entries * 2).next_power_of_two().max(4)
}

/// The 16 bits of a key's hash a slot keeps (the high ones: the low ones
/// pick the slot).
fn slot_tag(hash: u64) -> u32 {
    (hash >> 48) as u32
}

impl Block {
    /// Checks `data` as `decode_block` does (for a version-3 block, only its
    /// restart array and first key) and indexes its entries.
    pub(super) fn decode(
        data: Bytes,
        layout: BlockLayout,
        after: Option<&[u8]>,
        last_key: &[u8],
    ) -> Result<Block, Malformed> {
        if u32::try_from(data.len()).is_err() {
            return Err(Malformed::new(0, "block larger than 4 GiB"));
        }
        let search = match layout {
            BlockLayout::Entries => {
                let mut offsets = Vec::new();
                walk_block(&data, after, last_key, |at, _| offsets.push(at as u32))?;
                Search::Offsets(offsets)
            }
            BlockLayout::Restarts => Search::Restarts(check_restarts(&data, after)?),
        };
        Ok(Block {
            data,
            search,
            hits: AtomicU8::new(0),
            points: OnceBox::new(),
        })
    }

    /// Prefetches this block's point index, if it has one: its header
    /// first (`level` 0), then (`level` 1, once the header is in the CPU's
    /// cache) the slot for `key`, then (`level` 2) the entry that slot
    /// names. A hint only: nothing is built or counted.
    pub fn prefetch_point(&self, key: &[u8], level: u8) {
        let Some(points) = self.points.get() else {
            return;
        };
        if level == 0 {
            return crate::format::prefetch(points);
        }
        let Some(points) = points.as_ref() else {
            return;
        };
        let hash = key_hash(key);
        let mask = points.slots.len().wrapping_sub(1);
        let Some(slot) = points.slots.get(hash as usize & mask) else {
            return;
        };
        if level == 1 {
            return crate::format::prefetch(slot);
        }
        let at = (*slot & 0xFFFF) as usize;
        if *slot >> 16 == slot_tag(hash)
            && let Some(byte) = at.checked_sub(1).and_then(|at| self.data.get(at))
        {
            crate::format::prefetch(byte);
        }
    }

    /// The entry for `key`, if the block holds one; `Malformed` if an entry
    /// the lookup read is bad (only possible in a version-3 block).
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Entry>, Malformed> {
        match &self.search {
            Search::Offsets(offsets) => Ok(self.get_by_offsets(offsets, key)),
            Search::Restarts(restarts) => match self.points(restarts) {
                Some(points) => self.get_by_points(points, key),
                None => self.get_by_restarts(restarts, key),
            },
        }
    }

    /// Every entry of the block, checked as [`decode_block`] checks them
    /// (a cached version-3 block had only its restart array checked).
    pub(super) fn entries(
        &self,
        layout: BlockLayout,
        after: Option<&[u8]>,
        last_key: &[u8],
    ) -> Result<Vec<Entry>, Malformed> {
        decode_block(&self.data, layout, after, last_key)
    }

    /// The block's bytes (after decompression).
    pub(super) fn data(&self) -> &Bytes {
        &self.data
    }

    /// Memory the block holds: its bytes and its offsets, or the most its
    /// point index can take (charged before it is built).
    pub fn memory_bytes(&self) -> usize {
        let search = match &self.search {
            Search::Offsets(offsets) => offsets.len(),
            Search::Restarts(restarts) => match max_indexed_entries(restarts) {
                0 => 0,
                most => slot_count(most),
            },
        };
        self.data.len() + search * std::mem::size_of::<u32>()
    }

    /// The block's point index, built by the lookup that brings its hits to
    /// [`HITS_BEFORE_POINTS`]; `None` before, or if it cannot have one.
    fn points(&self, restarts: &RestartArray) -> Option<&PointSlots> {
        if let Some(points) = self.points.get() {
            return points.as_ref();
        }
        let hits = self.hits.load(MemoryOrder::Relaxed);
        if hits < HITS_BEFORE_POINTS - 1 {
            self.hits.store(hits + 1, MemoryOrder::Relaxed);
            return None;
        }
        let built = Box::new(PointSlots::build(&self.data, restarts));
        self.points.get_or_init(|| built).as_ref()
    }

    fn get_by_offsets(&self, offsets: &[u32], key: &[u8]) -> Option<Entry> {
        // `decode` parsed every offset, so `key_at` cannot fail here; were it
        // to, the search would just miss.
        let found = offsets.binary_search_by(|&at| {
            self.key_at(at as usize)
                .map_or(Ordering::Less, |k| k.cmp(key))
        });
        let at = *offsets.get(found.ok()?)?;
        let mut cursor = Cursor::new(&self.data);
        cursor.pos = at as usize;
        decode_entry(&self.data, &mut cursor)
            .ok()
            .filter(|entry| entry.key.as_ref() == key)
    }

    fn get_by_points(&self, points: &PointSlots, key: &[u8]) -> Result<Option<Entry>, Malformed> {
        for at in points.candidates(key_hash(key)) {
            let entry = decode_entry_ref(&mut Cursor::at(&self.data, at))?;
            if entry.key == key {
                return Ok(Some(entry.to_found_entry(&self.data)));
            }
        }
        Ok(None)
    }

    fn get_by_restarts(
        &self,
        restarts: &RestartArray,
        key: &[u8],
    ) -> Result<Option<Entry>, Malformed> {
        Ok(search_restarts(&self.data, restarts, key)?
            .map(|entry| entry.to_found_entry(&self.data)))
    }

    /// The key of the entry at `at`, borrowed from the block.
    fn key_at(&self, at: usize) -> Option<&[u8]> {
        decode_entry_ref(&mut Cursor::at(&self.data, at))
            .ok()
            .map(|entry| entry.key)
    }
}

/// Looks `key` up in a version-3 block read into a buffer of the caller's
/// (not kept): checks the block as [`Block::decode`] does, then searches it
/// as [`Block::get`] does, and copies out the entry found.
pub(super) fn get_in_place(
    data: &[u8],
    after: Option<&[u8]>,
    key: &[u8],
) -> Result<Option<Entry>, Malformed> {
    let restarts = check_restarts(data, after)?;
    Ok(search_restarts(data, &restarts, key)?.map(|entry| Entry {
        key: Bytes::copy_from_slice(entry.key),
        seq: entry.seq,
        value: entry.value.map(Bytes::copy_from_slice),
        expire_at_ms: entry.expire_at_ms,
    }))
}

/// What a lookup checks of a version-3 block up front: its restart array,
/// and its first key against `after` (the previous block's last key).
fn check_restarts(data: &[u8], after: Option<&[u8]>) -> Result<RestartArray, Malformed> {
    let restarts = RestartArray::decode(data)?;
    let first = decode_entry_ref(&mut Cursor::new(data))?;
    if after.is_some_and(|a| first.key <= a) {
        return Err(Malformed::new(0, "keys out of order"));
    }
    Ok(restarts)
}

/// Binary search over the restart points for the last one at or below
/// `key`, then a scan of its run, checking the order of what it reads.
fn search_restarts<'a>(
    data: &'a [u8],
    restarts: &RestartArray,
    key: &[u8],
) -> Result<Option<EntryRef<'a>>, Malformed> {
    let bad_array = || Malformed::new(restarts.entries_end, "bad restart array");
    let Some(run) = last_run_at_or_below(data, restarts, key)? else {
        return Ok(None);
    };
    let start = restarts.offset(data, run).ok_or_else(bad_array)?;
    let end = restarts.run_end(data, run).ok_or_else(bad_array)?;
    let mut cursor = Cursor::at(data, start);
    let mut previous: Option<&[u8]> = None;
    while cursor.pos() < end {
        let at = cursor.pos();
        let entry = decode_entry_ref(&mut cursor)?;
        if previous.is_some_and(|p| compare_keys(entry.key, p).is_le()) {
            return Err(Malformed::new(at, "keys out of order"));
        }
        match compare_keys(entry.key, key) {
            Ordering::Equal => return Ok(Some(entry)),
            Ordering::Greater => return Ok(None),
            Ordering::Less => previous = Some(entry.key),
        }
    }
    if cursor.pos() != end {
        return Err(Malformed::new(end, "an entry runs over a restart point"));
    }
    Ok(None)
}

/// A forward cursor over a version-3 block's entries that decodes one entry
/// at a time, starting at the restart run that can hold a bound, so that a
/// short scan neither decodes nor copies the entries it does not return.
/// It checks what it reads: the restart array and the first key up front
/// (as [`Block::get`] does), the order of the entries it reads, and, once it
/// reaches the end, that the block's last key is the index's.
pub(super) struct ForwardEntries {
    data: Bytes,
    /// Where the next entry starts.
    pos: usize,
    entries_end: usize,
    /// Where the key of the entry read last lies in `data`.
    previous: Option<(usize, usize)>,
}

impl ForwardEntries {
    /// A cursor at the first restart run whose first key is at or below
    /// `start`, or at the first entry if `start` is `None` or below them all.
    pub(super) fn seek(
        data: Bytes,
        after: Option<&[u8]>,
        start: Option<&[u8]>,
    ) -> Result<ForwardEntries, Malformed> {
        let restarts = check_restarts(&data, after)?;
        let run = match start {
            Some(start) => last_run_at_or_below(&data, &restarts, start)?.unwrap_or(0),
            None => 0,
        };
        let bad_array = || Malformed::new(restarts.entries_end, "bad restart array");
        let pos = restarts.offset(&data, run).ok_or_else(bad_array)?;
        Ok(ForwardEntries {
            data,
            pos,
            entries_end: restarts.entries_end,
            previous: None,
        })
    }

    /// The next entry that `place` puts inside the range (`Equal`),
    /// skipping those below it (`Less`); [`Step::RangeEnd`] at the first one
    /// above it (`Greater`), [`Step::BlockEnd`] at the end of the block, once
    /// its last key was checked against `last_key` (the index's). Only the
    /// entry returned shares the block's buffer; those skipped are read in
    /// place.
    pub(super) fn next_in(
        &mut self,
        last_key: &[u8],
        place: impl Fn(&[u8]) -> Ordering,
    ) -> Result<Step, Malformed> {
        let entries = self.data.get(..self.entries_end).unwrap_or_default();
        loop {
            let previous = self
                .previous
                .and_then(|(at, len)| entries.get(at..at + len));
            if self.pos >= entries.len() {
                return match previous {
                    Some(last) if last != last_key => {
                        Err(Malformed::new(0, "block's last key differs from the index"))
                    }
                    _ => Ok(Step::BlockEnd),
                };
            }
            let at = self.pos;
            let mut cursor = Cursor::at(entries, at);
            let entry = decode_entry_ref(&mut cursor)?;
            if previous.is_some_and(|p| compare_keys(entry.key, p).is_le()) {
                return Err(Malformed::new(at, "keys out of order"));
            }
            self.pos = cursor.pos();
            self.previous = Some((entry.key_at, entry.key.len()));
            match place(entry.key) {
                Ordering::Less => continue,
                Ordering::Equal => return Ok(Step::Entry(entry.to_entry(&self.data))),
                Ordering::Greater => return Ok(Step::RangeEnd),
            }
        }
    }
}

/// What [`ForwardEntries::next_in`] found.
pub(super) enum Step {
    /// The next entry in the range.
    Entry(Entry),
    /// The block holds no more entries.
    BlockEnd,
    /// The next entry is past the range's end.
    RangeEnd,
}

/// Binary search over the restart points for the last one whose first key
/// is at or below `key`; `None` if every one is above it.
fn last_run_at_or_below(
    data: &[u8],
    restarts: &RestartArray,
    key: &[u8],
) -> Result<Option<usize>, Malformed> {
    let bad_array = || Malformed::new(restarts.entries_end, "bad restart array");
    let (mut lo, mut hi) = (0, restarts.count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = restarts.offset(data, mid).ok_or_else(bad_array)?;
        let mut cursor = Cursor::at(data, at);
        if compare_keys(decode_entry_ref(&mut cursor)?.key, key).is_le() {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo.checked_sub(1))
}

/// An entry read in place: its key and value borrowed from the block.
struct EntryRef<'a> {
    key: &'a [u8],
    seq: u64,
    value: Option<&'a [u8]>,
    /// When a put expires (Unix milliseconds); 0: never.
    expire_at_ms: u64,
    /// Where the key starts in the block; the value follows it.
    key_at: usize,
}

impl EntryRef<'_> {
    /// The entry, sharing the block's buffer.
    fn to_entry(&self, data: &Bytes) -> Entry {
        let value_at = self.key_at + self.key.len();
        Entry {
            key: data.slice(self.key_at..value_at),
            seq: self.seq,
            value: self
                .value
                .map(|value| data.slice(value_at..value_at + value.len())),
            expire_at_ms: self.expire_at_ms,
        }
    }

    /// The entry a point get returns: copied out of the block when short
    /// ([`COPIED_ENTRY_BYTES`]), else sharing its buffer.
    fn to_found_entry(&self, data: &Bytes) -> Entry {
        let len = self.key.len() + self.value.map_or(0, <[u8]>::len);
        if len > COPIED_ENTRY_BYTES {
            return self.to_entry(data);
        }
        Entry {
            key: Bytes::copy_from_slice(self.key),
            seq: self.seq,
            value: self.value.map(Bytes::copy_from_slice),
            expire_at_ms: self.expire_at_ms,
        }
    }
}

/// A point get copies an entry whose key and value together are at most
/// this long out of its block rather than sharing the block's buffer. A
/// share bumps the buffer's reference count: a cache line of its own,
/// which the get has not touched (a miss per get, contended when two
/// threads read one block; 3.4 % of a server's time under pipelined GETs),
/// where the copy is a short allocation from the thread's own cache and
/// bytes the get has just read. A copy also does not pin the whole block.
const COPIED_ENTRY_BYTES: usize = 256;

/// Reads one entry (the one decoder of the entry encoding).
fn decode_entry_ref<'a>(cursor: &mut Cursor<'a>) -> Result<EntryRef<'a>, Malformed> {
    let key_len = cursor.varint()?;
    let kind = cursor.byte()?;
    let seq = cursor.varint()?;
    let expire_at_ms = match kind {
        KIND_PUT_EXPIRING => cursor.varint()?,
        _ => 0,
    };
    let value_len = match kind {
        KIND_TOMBSTONE => None,
        KIND_PUT | KIND_PUT_EXPIRING => Some(cursor.varint()?),
        _ => {
            return Err(Malformed::new(
                cursor.pos().saturating_sub(1),
                "unknown entry kind",
            ));
        }
    };
    let key_at = cursor.pos();
    let key = cursor.slice(key_len)?;
    let value = value_len.map(|len| cursor.slice(len)).transpose()?;
    Ok(EntryRef {
        key,
        seq,
        value,
        expire_at_ms,
        key_at,
    })
}

/// Reads one entry of `data`, its key and value sharing `data`'s buffer.
fn decode_entry(data: &Bytes, cursor: &mut Cursor<'_>) -> Result<Entry, Malformed> {
    decode_entry_ref(cursor).map(|entry| entry.to_entry(data))
}

/// Reads a block front to back; every read is bounds-checked and fails with
/// [`Malformed`] instead of panicking.
pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    fn at(data: &'a [u8], pos: usize) -> Self {
        Cursor { data, pos }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, Malformed> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let (value, used) = get_varint(rest).ok_or(Malformed::new(self.pos, "bad varint"))?;
        self.pos += used;
        Ok(value)
    }

    pub(super) fn byte(&mut self) -> Result<u8, Malformed> {
        let byte = *self
            .data
            .get(self.pos)
            .ok_or(Malformed::new(self.pos, "truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    /// The next `len` bytes, sharing `owner`'s buffer (`owner` is the
    /// buffer this cursor reads).
    pub(super) fn bytes(&mut self, owner: &Bytes, len: u64) -> Result<Bytes, Malformed> {
        let start = self.pos;
        let end = start + self.slice(len)?.len();
        owner
            .get(start..end)
            .map(|_| owner.slice(start..end))
            .ok_or(Malformed::new(start, "length past the end of the block"))
    }

    /// The next `len` bytes, borrowed.
    fn slice(&mut self, len: u64) -> Result<&'a [u8], Malformed> {
        let data: &'a [u8] = self.data;
        let slice = usize::try_from(len)
            .ok()
            .and_then(|len| data.get(self.pos..self.pos.checked_add(len)?))
            .ok_or(Malformed::new(self.pos, "length past the end of the block"))?;
        self.pos += slice.len();
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, seq: u64, value: Option<&str>) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            seq,
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            expire_at_ms: 0,
        }
    }

    fn expiring(key: &str, seq: u64, value: &str, expire_at_ms: u64) -> Entry {
        Entry {
            expire_at_ms,
            ..entry(key, seq, Some(value))
        }
    }

    fn encode(entries: &[Entry]) -> Bytes {
        let mut buf = Vec::new();
        for e in entries {
            let before = buf.len();
            encode_entry(e, &mut buf);
            assert!(buf.len() - before <= encoded_len(e));
        }
        Bytes::from(buf)
    }

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            entry("a", 1, Some("x")),
            entry("b", 7, None),
            entry("c", 300, Some("")),
        ];
        let data = encode(&entries);
        assert_eq!(
            decode_block(&data, BlockLayout::Entries, None, b"c"),
            Ok(entries)
        );
    }

    #[test]
    fn expiring_entries_round_trip_beside_old_kinds() {
        let entries = vec![
            entry("a", 1, Some("x")),
            expiring("b", 2, "y", 1_700_000_000_123),
            entry("c", 3, None),
            expiring("d", 300, "", 1),
            expiring("e", 301, "z", u64::MAX),
        ];
        let data = encode(&entries);
        assert_eq!(
            decode_block(&data, BlockLayout::Entries, None, b"e"),
            Ok(entries.clone())
        );
        let block = Block::decode(data.clone(), BlockLayout::Entries, None, b"e").unwrap();
        for e in &entries {
            assert_eq!(block.get(&e.key), Ok(Some(e.clone())));
        }
        // kind 2 is the byte after the key length; the expiry follows seq.
        let mut one = Vec::new();
        encode_entry(&expiring("k", 5, "v", 300), &mut one);
        assert_eq!(one, [1, KIND_PUT_EXPIRING, 5, 0xAC, 0x02, 1, b'k', b'v']);
        // An entry without an expiry is still written as kind 1, byte for
        // byte what older versions wrote.
        let mut plain = Vec::new();
        encode_entry(&entry("k", 5, Some("v")), &mut plain);
        assert_eq!(plain, [1, KIND_PUT, 5, 1, b'k', b'v']);
        for len in 0..one.len() {
            let cut = Bytes::copy_from_slice(&one[..len]);
            assert!(
                decode_block(&cut, BlockLayout::Entries, None, b"k").is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn order_and_last_key_are_checked() {
        let data = encode(&[entry("b", 1, None), entry("a", 1, None)]);
        assert!(decode_block(&data, BlockLayout::Entries, None, b"a").is_err());
        let data = encode(&[entry("a", 1, None)]);
        assert!(decode_block(&data, BlockLayout::Entries, Some(b"a"), b"a").is_err());
        assert!(decode_block(&data, BlockLayout::Entries, None, b"b").is_err());
        assert!(decode_block(&Bytes::new(), BlockLayout::Entries, None, b"").is_err());
    }

    #[test]
    fn every_truncation_is_malformed() {
        let data = encode(&[entry("key", 5, Some("value")), entry("last", 6, None)]);
        for len in 0..data.len() {
            assert!(
                decode_block(&data.slice(..len), BlockLayout::Entries, None, b"last").is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn block_lookup_finds_every_key_and_only_those() {
        let entries: Vec<Entry> = (0..50u64)
            .map(|i| {
                let key = format!("k{:03}", i * 2);
                let value = (i % 3 != 0).then(|| format!("v{i}"));
                entry(&key, 100 + i, value.as_deref())
            })
            .collect();
        let data = encode(&entries);
        let block = Block::decode(data.clone(), BlockLayout::Entries, Some(b"a"), b"k098").unwrap();
        for e in &entries {
            assert_eq!(block.get(&e.key).unwrap().as_ref(), Some(e));
        }
        for i in 0..50u64 {
            assert_eq!(block.get(format!("k{:03}", i * 2 + 1).as_bytes()), Ok(None));
        }
        assert_eq!(block.get(b"a"), Ok(None));
        assert_eq!(block.get(b"z"), Ok(None));
        assert!(Block::decode(data, BlockLayout::Entries, Some(b"k000"), b"k098").is_err());
    }

    #[test]
    fn huge_lengths_are_malformed() {
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        buf.push(KIND_TOMBSTONE);
        put_varint(&mut buf, 1);
        assert!(decode_block(&Bytes::from(buf), BlockLayout::Entries, None, b"").is_err());
        assert!(
            decode_block(
                &Bytes::from_static(&[1, 9, 0, b'a']),
                BlockLayout::Entries,
                None,
                b"a"
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod restart_tests {
    use super::*;

    fn entry(i: u64) -> Entry {
        Entry {
            key: Bytes::from(format!("k{:03}", i * 2)),
            seq: 100 + i,
            value: (!i.is_multiple_of(3)).then(|| Bytes::from(format!("v{i}"))),
            // Some puts expire, so runs mix the entry kinds.
            expire_at_ms: if i % 3 == 2 { 1_700_000_000_000 + i } else { 0 },
        }
    }

    /// A version-3 block of `count` entries as the writer lays it out, and
    /// where each entry starts.
    fn restart_block(count: u64) -> (Vec<u8>, Vec<Entry>) {
        let entries: Vec<Entry> = (0..count).map(entry).collect();
        (lay_out(&entries), entries)
    }

    /// `entries` as the writer lays out a version-3 block, in the order
    /// given.
    fn lay_out(entries: &[Entry]) -> Vec<u8> {
        let (mut data, mut restarts) = (Vec::new(), Vec::new());
        for (i, e) in entries.iter().enumerate() {
            if i.is_multiple_of(RESTART_INTERVAL) {
                restarts.push(data.len() as u32);
            }
            encode_entry(e, &mut data);
        }
        encode_restarts(&restarts, &mut data);
        data
    }

    #[test]
    fn restart_lookup_finds_every_key_and_only_those() {
        for count in [1, 7, 8, 9, 16, 17, 50] {
            let (data, entries) = restart_block(count);
            let last = entries.last().unwrap().key.clone();
            let block = Block::decode(
                Bytes::from(data.clone()),
                BlockLayout::Restarts,
                Some(b"a"),
                &last,
            )
            .unwrap();
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(block.get(&e.key), Ok(Some(e.clone())));
                let missing = format!("k{:03}", i * 2 + 1);
                assert_eq!(block.get(missing.as_bytes()), Ok(None));
            }
            assert_eq!(block.get(b"a"), Ok(None));
            assert_eq!(block.get(b"z"), Ok(None));
            let whole = decode_block(&Bytes::from(data), BlockLayout::Restarts, None, &last);
            assert_eq!(whole, Ok(entries));
        }
    }

    #[test]
    fn restart_arrays_are_checked() {
        let (data, _) = restart_block(40);
        let last = b"k078";
        let decode = |bytes: Vec<u8>| {
            let bytes = Bytes::from(bytes);
            let cached = Block::decode(bytes.clone(), BlockLayout::Restarts, None, last);
            let whole = decode_block(&bytes, BlockLayout::Restarts, None, last);
            (cached.is_ok(), whole.is_ok())
        };
        assert_eq!(decode(data.clone()), (true, true));
        let count_at = data.len() - 4;
        let set = |at: usize, value: u32| {
            let mut bad = data.clone();
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            bad
        };
        // More restarts than fit, none, a first one not at 0, two out of order.
        assert_eq!(decode(set(count_at, 1000)), (false, false));
        assert_eq!(decode(set(count_at, 0)), (false, false));
        let array_at = count_at - 40usize.div_ceil(RESTART_INTERVAL) * 4;
        assert_eq!(decode(set(array_at, 1)), (false, false));
        assert_eq!(decode(set(array_at + 8, 2)), (false, false));
        // A restart inside an entry, still in order: the whole-block check
        // sees it.
        let second = u32::from_le_bytes(data[array_at + 4..array_at + 8].try_into().unwrap());
        assert_eq!(decode(set(array_at + 4, second + 1)), (true, false));
        assert!(!decode(Vec::new()).0 && !decode(vec![0, 0]).1);
    }

    fn has_points(block: &Block) -> bool {
        matches!(block.points.get(), Some(Some(_)))
    }

    /// Looks up an absent key until the block has had its point index
    /// built (or found it cannot have one).
    fn warm(block: &Block) {
        assert!(block.points.get().is_none(), "built before its hits");
        for _ in 0..HITS_BEFORE_POINTS {
            let _ = block.get(b"a");
        }
        assert!(block.points.get().is_some(), "not built after its hits");
    }

    #[test]
    fn the_point_index_answers_as_the_restart_search_does() {
        for count in [1, 2, 9, 40, 300] {
            let (data, entries) = restart_block(count);
            let last = entries.last().unwrap().key.clone();
            let block =
                Block::decode(Bytes::from(data), BlockLayout::Restarts, None, &last).unwrap();
            warm(&block);
            let (Search::Restarts(restarts), Some(Some(points))) =
                (&block.search, block.points.get())
            else {
                panic!("{count} entries: no point index");
            };
            // At most half full, and charged before it was built.
            assert!(points.slots.len() >= 2 * entries.len());
            assert!(block.memory_bytes() >= block.data.len() + 4 * points.slots.len());
            for probe in (0..count * 2 + 2).map(|i| format!("k{i:03}")) {
                let by_points = block.get_by_points(points, probe.as_bytes());
                let by_restarts = block.get_by_restarts(restarts, probe.as_bytes());
                assert_eq!(by_points, by_restarts, "{probe} in {count}");
            }
            for e in &entries {
                assert_eq!(block.get(&e.key), Ok(Some(e.clone())));
            }
        }
    }

    #[test]
    fn only_a_sound_small_block_gets_a_point_index() {
        let (data, entries) = restart_block(40);
        let last = entries.last().unwrap().key.clone();
        let decode = |bytes: Vec<u8>| {
            let block =
                Block::decode(Bytes::from(bytes), BlockLayout::Restarts, None, &last).unwrap();
            warm(&block);
            block
        };
        assert!(has_points(&decode(data.clone())));
        // A restart point inside an entry: no index, so lookups search the
        // restart points and report what they read
        // (`a_lookup_reports_the_bad_entries_it_reads`).
        let count_at = data.len() - 4;
        let second = count_at - 40usize.div_ceil(RESTART_INTERVAL) * 4 + 4;
        let mut bad = data.clone();
        let inside = u32::from_le_bytes(bad[second..second + 4].try_into().unwrap()) + 2;
        bad[second..second + 4].copy_from_slice(&inside.to_le_bytes());
        assert!(!has_points(&decode(bad)));
        // Two keys swapped: no index.
        let mut swapped = entries.clone();
        swapped.swap(3, 4);
        assert!(!has_points(&decode(lay_out(&swapped))));
        // A block of 64 KiB or more: no index, lookups still answer.
        let big = Entry {
            key: Bytes::from_static(b"big"),
            seq: 1,
            value: Some(Bytes::from(vec![7u8; 70_000])),
            expire_at_ms: 0,
        };
        let mut data = Vec::new();
        encode_entry(&big, &mut data);
        encode_restarts(&[0], &mut data);
        let block = Block::decode(Bytes::from(data), BlockLayout::Restarts, None, b"big").unwrap();
        warm(&block);
        assert!(!has_points(&block));
        assert_eq!(block.get(b"big"), Ok(Some(big)));
    }

    #[test]
    fn a_lookup_reports_the_bad_entries_it_reads() {
        let (data, entries) = restart_block(40);
        let count_at = data.len() - 4;
        // Point the second restart inside an entry: lookups in the first run
        // cross it, those in the second decode garbage or keys out of order.
        let mut bad = data.clone();
        let second = count_at - 2 * 4;
        let inside = u32::from_le_bytes(bad[second..second + 4].try_into().unwrap()) + 2;
        bad[second..second + 4].copy_from_slice(&inside.to_le_bytes());
        let block = Block::decode(Bytes::from(bad), BlockLayout::Restarts, None, b"k078").unwrap();
        let mut errors = 0;
        for e in &entries {
            match block.get(&e.key) {
                Ok(found) => assert!(found.is_none() || found.as_ref() == Some(e)),
                Err(_) => errors += 1,
            }
        }
        assert!(errors > 0);
    }

    /// Everything `cursor` returns at or above `start` and below `end`, and
    /// whether it stopped at the range's end rather than the block's.
    fn read_forward(
        cursor: &mut ForwardEntries,
        last: &[u8],
        start: &[u8],
        end: &[u8],
    ) -> Result<(Vec<Entry>, bool), Malformed> {
        let place = |key: &[u8]| match (key < start, key >= end) {
            (true, _) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => Ordering::Equal,
        };
        let mut found = Vec::new();
        loop {
            match cursor.next_in(last, place)? {
                Step::Entry(entry) => found.push(entry),
                Step::BlockEnd => return Ok((found, false)),
                Step::RangeEnd => return Ok((found, true)),
            }
        }
    }

    #[test]
    fn a_forward_cursor_returns_exactly_the_range_from_any_start() {
        for count in [1, 7, 8, 9, 16, 17, 50] {
            let (data, entries) = restart_block(count);
            let last = entries.last().unwrap().key.clone();
            let keys = (0..count * 2 + 2).map(|i| format!("k{i:03}"));
            for start in std::iter::once(String::from("a")).chain(keys) {
                for end in ["k010", "k999"] {
                    let seek = Some(start.as_bytes()).filter(|_| start != "a");
                    let data = Bytes::from(data.clone());
                    let mut cursor = ForwardEntries::seek(data, None, seek).unwrap();
                    let (found, at_end) =
                        read_forward(&mut cursor, &last, start.as_bytes(), end.as_bytes()).unwrap();
                    let wanted: Vec<Entry> = entries
                        .iter()
                        .filter(|e| e.key.as_ref() >= start.as_bytes())
                        .filter(|e| e.key.as_ref() < end.as_bytes())
                        .cloned()
                        .collect();
                    assert_eq!(found, wanted, "count {count}, from {start} to {end}");
                    let past = entries.iter().any(|e| {
                        e.key.as_ref() >= start.as_bytes() && e.key.as_ref() >= end.as_bytes()
                    });
                    assert_eq!(at_end, past, "count {count}, from {start} to {end}");
                }
            }
        }
    }

    #[test]
    fn a_forward_cursor_reports_keys_out_of_order_and_a_wrong_last_key() {
        let (data, entries) = restart_block(20);
        let last = entries.last().unwrap().key.clone();
        let read_all = |data: Vec<u8>, last: &[u8]| {
            let mut cursor = ForwardEntries::seek(Bytes::from(data), None, None)?;
            read_forward(&mut cursor, last, b"", b"z").map(|(found, _)| found)
        };
        assert_eq!(read_all(data.clone(), &last), Ok(entries.clone()));
        assert!(read_all(data.clone(), b"k999").is_err(), "wrong last key");
        // Entries 3 and 4 swapped (same lengths), inside the first run.
        let mut swapped = entries.clone();
        swapped.swap(3, 4);
        let mut bad = Vec::new();
        let mut restarts = Vec::new();
        for (i, e) in swapped.iter().enumerate() {
            if i.is_multiple_of(RESTART_INTERVAL) {
                restarts.push(bad.len() as u32);
            }
            encode_entry(e, &mut bad);
        }
        encode_restarts(&restarts, &mut bad);
        let error = read_all(bad, &last).unwrap_err();
        assert!(format!("{error:?}").contains("out of order"), "{error:?}");
    }
}
