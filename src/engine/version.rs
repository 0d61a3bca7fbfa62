//! The segment set: which segments are live, by level. Published as an
//! immutable `Arc<SegmentSet>`; a change makes a new set.
//!
//! Level 0 holds flushed memtables, newest first, and its segments may
//! overlap. Each deeper level is one sorted run: its segments are ordered by
//! key and do not overlap, so a key is in at most one of them.

use std::sync::Arc;

use super::merge::ChainIter;
use super::range_delete::InstalledTombstone;
use super::segment::Segment;
use crate::Result;
use crate::format::sstable::{BlockCache, BlockReads, Lookup, compare_keys, key_hash};
use crate::format::{Entry, EntryIter, KeyRange};
use crate::proto::storage::SegmentMeta;

/// A level with no segments, for a set with no levels.
static EMPTY_LEVEL: Vec<Arc<Segment>> = Vec::new();

/// Levels past this one are never created.
pub const MAX_LEVELS: usize = 7;

/// The outcome of a point lookup in candidate segments.
#[derive(Debug, Default)]
pub struct SegmentLookup {
    /// The newest version found, if any (maybe a tombstone).
    pub entry: Option<Entry>,
    /// Segments whose bloom filter let the key through but did not hold it.
    pub false_positives: u64,
}

/// `lookup` done only from the block cache and the page cache: `Ok(None)`
/// as soon as a block would have to come from the disk. Safe on an actor's
/// thread.
pub fn lookup_if_cached(
    candidates: &[Arc<Segment>],
    key: &[u8],
    cache: &BlockCache,
) -> Result<Option<SegmentLookup>> {
    let hash = key_hash(key);
    let mut lookup = SegmentLookup::default();
    for segment in candidates {
        match segment.reader.get_if_cached(key, hash, cache)? {
            None => return Ok(None),
            Some(Lookup::Found(entry)) => {
                lookup.entry = Some(entry);
                return Ok(Some(lookup));
            }
            Some(Lookup::Absent | Lookup::FilteredOut) => lookup.false_positives += 1,
        }
    }
    Ok(Some(lookup))
}

/// Reads `key` from `candidates` (newest first, as [`SegmentSet::candidates`]
/// gives them) until one holds it. Reads data blocks: run it off actor threads.
pub fn lookup(
    candidates: &[Arc<Segment>],
    key: &[u8],
    cache: &BlockCache,
) -> Result<SegmentLookup> {
    let hash = key_hash(key);
    let mut lookup = SegmentLookup::default();
    for segment in candidates {
        match segment.reader.get_cached(key, hash, cache)? {
            Lookup::Found(entry) => {
                lookup.entry = Some(entry);
                return Ok(lookup);
            }
            Lookup::Absent | Lookup::FilteredOut => lookup.false_positives += 1,
        }
    }
    Ok(lookup)
}

/// The live segments by level.
#[derive(Debug, Default, Clone)]
pub struct SegmentSet {
    /// `levels[0]` newest first; deeper levels sorted by smallest key.
    pub levels: Vec<Vec<Arc<Segment>>>,
    /// Grows by one with each edit, so that a holder can tell newer from older.
    pub version: u64,
    /// Installed range deletes (see `range_delete.rs`); in the manifest.
    pub range_tombstones: Arc<Vec<InstalledTombstone>>,
}

impl SegmentSet {
    /// Builds a set from segments in any order.
    pub fn from_segments(segments: impl IntoIterator<Item = Arc<Segment>>) -> SegmentSet {
        let mut levels: Vec<Vec<Arc<Segment>>> = vec![Vec::new(); MAX_LEVELS];
        for segment in segments {
            let level = (segment.meta.level as usize).min(MAX_LEVELS - 1);
            if let Some(slot) = levels.get_mut(level) {
                slot.push(segment);
            }
        }
        for (number, level) in levels.iter_mut().enumerate() {
            if number == 0 {
                level.sort_by_key(|s| std::cmp::Reverse(s.meta.file_number));
            } else {
                level.sort_by(|a, b| a.meta.smallest_key.cmp(&b.meta.smallest_key));
            }
        }
        SegmentSet {
            levels,
            version: 0,
            range_tombstones: Arc::default(),
        }
    }

    /// Two segments of one deeper level whose key spans overlap, as
    /// (level, file number, file number): a broken invariant that would make
    /// reads of that level return keys out of order.
    pub fn overlap_in_a_level(&self) -> Option<(usize, u64, u64)> {
        self.levels
            .iter()
            .enumerate()
            .skip(1)
            .find_map(|(number, level)| {
                level.windows(2).find_map(|pair| match pair {
                    [a, b] if b.meta.smallest_key <= a.meta.largest_key => {
                        Some((number, a.meta.file_number, b.meta.file_number))
                    }
                    _ => None,
                })
            })
    }

    /// Every live segment, level by level.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.levels.iter().flatten()
    }

    /// The manifest records of every live segment.
    pub fn metas(&self) -> Vec<SegmentMeta> {
        self.all().map(|segment| segment.meta.clone()).collect()
    }

    /// Segments in level `level` (empty for a level past the last).
    pub fn level(&self, level: usize) -> &[Arc<Segment>] {
        self.levels.get(level).map_or(&[], Vec::as_slice)
    }

    /// The manifest records, level by level, for the compaction policy.
    pub fn meta_levels(&self) -> Vec<Vec<SegmentMeta>> {
        let metas = |level: &Vec<Arc<Segment>>| level.iter().map(|s| s.meta.clone()).collect();
        self.levels.iter().map(metas).collect()
    }

    /// Bytes of all live segments.
    pub fn total_bytes(&self) -> u64 {
        self.all().map(|s| s.meta.file_size).sum()
    }

    /// A new set: `removed` file numbers gone, `added` segments in. The
    /// range tombstones are carried over as they are: the caller updates them.
    pub fn edited(&self, removed: &[u64], added: Vec<Arc<Segment>>) -> SegmentSet {
        let kept = self
            .all()
            .filter(|segment| !removed.contains(&segment.meta.file_number))
            .cloned();
        let mut set = SegmentSet::from_segments(kept.chain(added));
        set.version = self.version + 1;
        set.range_tombstones = self.range_tombstones.clone();
        set
    }

    /// The segments that may hold `key`, newest first: key span and bloom
    /// filter checked, both in memory. Also how many filters ruled it out.
    pub fn candidates(&self, key: &[u8]) -> (Vec<Arc<Segment>>, u64) {
        let hash = key_hash(key);
        let mut candidates = Vec::new();
        let mut filtered_out = 0;
        for segment in self.spanning(key) {
            if segment.reader.may_contain(hash) {
                candidates.push(segment.clone());
            } else {
                filtered_out += 1;
            }
        }
        (candidates, filtered_out)
    }

    /// The segments whose key span holds `key`, newest first. Level 0's
    /// segments may overlap; a deeper level has at most one segment whose
    /// span holds the key. (No Vec per level: this runs on every get that
    /// misses the memtables.)
    pub(super) fn spanning<'a>(
        &'a self,
        key: &'a [u8],
    ) -> impl Iterator<Item = &'a Arc<Segment>> + 'a {
        let (level0, deeper) = self.levels.split_first().unwrap_or((&EMPTY_LEVEL, &[]));
        level0
            .iter()
            .filter(move |s| s.overlaps(key, key))
            .chain(deeper.iter().filter_map(move |run| find_in_run(run, key)))
    }

    /// [`SegmentSet::spanning`] before the level-0 spans are checked: every
    /// level-0 segment, paired with `true` (its span is still to be
    /// checked), then the one segment of each deeper level whose span
    /// holds `key`, paired with `false`. For a walk that probes filters
    /// first: a span check is two key comparisons, where a prefetched
    /// filter probe is one cached line and rules out all but about 1 %.
    pub(super) fn spanning_unchecked<'a>(
        &'a self,
        key: &'a [u8],
    ) -> impl Iterator<Item = (&'a Arc<Segment>, bool)> + 'a {
        let (level0, deeper) = self.levels.split_first().unwrap_or((&EMPTY_LEVEL, &[]));
        let deeper = deeper.iter().filter_map(move |run| find_in_run(run, key));
        level0
            .iter()
            .map(|segment| (segment, true))
            .chain(deeper.map(|segment| (segment, false)))
    }

    /// `key`'s newest version in these segments (as [`lookup_if_cached`]
    /// over [`SegmentSet::candidates`]) without a handle on any segment:
    /// `Ok(None)` as soon as a block would have to come from the disk.
    /// Also how many bloom filters ruled the key out. `hash` is `key`'s
    /// [`key_hash`], computed once for every filter.
    pub fn lookup_if_cached(
        &self,
        key: &[u8],
        hash: u64,
        cache: &BlockCache,
    ) -> Result<Option<(SegmentLookup, u64)>> {
        let mut lookup = SegmentLookup::default();
        let mut filtered_out = 0;
        for segment in self.spanning(key) {
            match segment.reader.get_if_cached(key, hash, cache)? {
                None => return Ok(None),
                Some(Lookup::Found(entry)) => {
                    lookup.entry = Some(entry);
                    return Ok(Some((lookup, filtered_out)));
                }
                Some(Lookup::FilteredOut) => filtered_out += 1,
                Some(Lookup::Absent) => lookup.false_positives += 1,
            }
        }
        Ok(Some((lookup, filtered_out)))
    }

    /// One iterator per level-0 segment and one per deeper level, newest
    /// first, over `range`, reading blocks as `reads` says.
    pub fn iters(
        &self,
        range: &KeyRange,
        reverse: bool,
        reads: &BlockReads,
    ) -> Vec<Box<dyn EntryIter>> {
        let mut iters: Vec<Box<dyn EntryIter>> = Vec::new();
        for (number, level) in self.levels.iter().enumerate() {
            let overlapping = level.iter().filter(|s| overlaps_range(s, range));
            if number == 0 {
                for segment in overlapping {
                    let iter = segment
                        .reader
                        .iter_with(range.clone(), reverse, reads.clone());
                    iters.push(Box::new(iter));
                }
                continue;
            }
            let mut run: Vec<Arc<Segment>> = overlapping.cloned().collect();
            if run.is_empty() {
                continue;
            }
            if reverse {
                run.reverse();
            }
            let chain = chain_segments(run, range.clone(), reverse, reads.clone());
            iters.push(Box::new(chain));
        }
        iters
    }
}

/// A lazy iterator over a sorted run of segments.
pub fn chain_segments(
    run: Vec<Arc<Segment>>,
    range: KeyRange,
    reverse: bool,
    reads: BlockReads,
) -> ChainIter {
    let makers = run
        .into_iter()
        .map(|segment| {
            let range = range.clone();
            let reads = reads.clone();
            Box::new(move || {
                Box::new(segment.reader.iter_with(range, reverse, reads)) as Box<dyn EntryIter>
            }) as Box<dyn FnOnce() -> Box<dyn EntryIter> + Send>
        })
        .collect();
    ChainIter::new(makers)
}

/// The one segment of a sorted run that may hold `key`.
fn find_in_run<'a>(run: &'a [Arc<Segment>], key: &[u8]) -> Option<&'a Arc<Segment>> {
    let index = run.partition_point(|s| compare_keys(&s.meta.largest_key, key).is_lt());
    run.get(index)
        .filter(|s| compare_keys(&s.meta.smallest_key, key).is_le())
}

/// True if a segment's key span meets `range`.
pub fn overlaps_range(segment: &Segment, range: &KeyRange) -> bool {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let (lo, hi) = segment.key_span();
    let starts_before_end = match &range.1 {
        Included(end) => lo <= end.as_ref(),
        Excluded(end) => lo < end.as_ref(),
        Unbounded => true,
    };
    let ends_after_start = match &range.0 {
        Included(start) => hi >= start.as_ref(),
        Excluded(start) => hi > start.as_ref(),
        Unbounded => true,
    };
    starts_before_end && ends_after_start
}
