//! Gets of a batch (a pipelined pass's GETs) read together: their memory
//! loads prefetched before they run, or the whole of each read done from
//! memory in one pass.
//!
//! A get of a key held in a segment follows a chain of loads, each waiting
//! for the one before: the bloom filters' bytes, the block cache's set (tag
//! and slot), the cached block, its point index, the index's slot, the
//! entry. With more data than the CPU's caches hold most of them miss: at
//! 632k keys the same gets cost 2,100-2,400 ns each with cold lines and
//! about 310 ns with their lines cached (docs/BENCHMARKS.md, session 19).
//! One get cannot overlap its own misses, but a batch can overlap its
//! keys': [`walk`] follows every key's chain one link at a time,
//! prefetching each key's next link before reading any key's, so the
//! batch's misses of one link are in flight together (group prefetching,
//! as RocksDB's `MultiGet` does for its filters and blocks). Each stage
//! reads only lines the stage before prefetched.
//!
//! [`prefetch_gets`] stops there: it reads no file, builds nothing, counts
//! nothing and answers nothing; the gets that follow run as usual and find
//! their lines in the cache. [`read_many`] goes on to finish each key's
//! read where its chain ended (the block the filters pointed to, or
//! nothing when every filter ruled the key out), so the read does not
//! repeat the walk's filter probes and block searches. A key whose chain
//! left the common path (a block not cached, a filter's false positive, a
//! memtable's filter that let it through but no version there) is read as
//! a single get reads it.
//! The memtables are prefetched the same way (key filter, point index slot,
//! version); a key a memtable's filter may hold is not looked for in the
//! segments by the walk.

use std::sync::Arc;

use super::memtable::MemTable;
use super::memtable::filter_hash;
use super::version::SegmentSet;
use crate::error::Result;
use crate::format::Entry;
use crate::format::sstable::{BlockCache, CachedBlock, Lookup, SstableReader};

/// How far one key's walk got.
struct Chain<'a> {
    key: &'a [u8],
    hash: u64,
    /// The first memtable whose filter may hold the key.
    memtable: Option<&'a MemTable>,
    /// The first segment whose filter lets the key through, and the block
    /// that would hold it (`None` if no block number fits).
    segment: Option<(&'a SstableReader, Option<u32>)>,
    cached: Option<Arc<CachedBlock>>,
    /// Segments whose filters ruled the key out before `segment` (all of
    /// them when `segment` is `None`): level-0 segments whose span does not
    /// hold the key included, as their filters are probed first. (A chain is 64
    /// bytes: a batch of 16 stays within the allocator's per-thread cache,
    /// where a larger block takes its slow path.)
    ruled_out: u32,
}

/// Prefetches what gets of `keys` will read in `memtables` (newest first)
/// and `segments`; see the module doc.
pub fn prefetch_gets(
    memtables: &[&MemTable],
    segments: &SegmentSet,
    cache: &BlockCache,
    keys: &[&[u8]],
) {
    walk(memtables, segments, cache, keys);
}

/// What [`read_many`] found of one key, as a single get's lookup reports it.
pub struct MemoryRead {
    /// The newest version at the read's bound (maybe a tombstone).
    pub entry: Option<Entry>,
    /// Segments whose bloom filters ruled the key out.
    pub ruled_out: u64,
    /// Segments whose filters let the key through but did not hold it.
    pub false_positives: u64,
}

/// The newest version of each of `keys` in `memtables` (newest first; the
/// first, the active one, read at `read_at`) and `segments`, read together
/// (see the module doc), in the order of `keys`: `None` for a key whose
/// read needs a block from the disk.
pub fn read_many<'a>(
    memtables: &'a [&'a MemTable],
    read_at: u64,
    segments: &'a SegmentSet,
    cache: &'a BlockCache,
    keys: &[&'a [u8]],
) -> impl Iterator<Item = Option<Result<MemoryRead>>> + 'a {
    walk(memtables, segments, cache, keys)
        .into_iter()
        .map(move |chain| chain.finish(memtables, read_at, segments, cache))
}

/// Follows every key's chain, stage by stage, prefetching each stage's
/// lines for every key before any key reads them.
fn walk<'a>(
    memtables: &[&'a MemTable],
    segments: &'a SegmentSet,
    cache: &BlockCache,
    keys: &[&'a [u8]],
) -> Vec<Chain<'a>> {
    let mut chains: Vec<Chain<'a>> = keys
        .iter()
        .map(|key| Chain {
            key,
            hash: filter_hash(key),
            memtable: None,
            segment: None,
            cached: None,
            ruled_out: 0,
        })
        .collect();
    for chain in &chains {
        for table in memtables {
            table.prefetch(chain.hash, 0);
        }
        for (segment, _) in segments.spanning_unchecked(chain.key) {
            segment.reader.prefetch_filter(chain.hash);
        }
    }
    for chain in &mut chains {
        chain.memtable = memtables
            .iter()
            .copied()
            .find(|t| t.prefetch(chain.hash, 1));
        if chain.memtable.is_some() {
            continue;
        }
        for (segment, span_unchecked) in segments.spanning_unchecked(chain.key) {
            let reader = &*segment.reader;
            if !reader.may_contain(chain.hash) {
                chain.ruled_out += 1;
            } else if !span_unchecked || segment.overlaps(chain.key, chain.key) {
                chain.segment = Some((reader, reader.prefetch_block_set(chain.key, cache)));
                break;
            }
        }
    }
    for chain in &chains {
        if let Some(table) = chain.memtable {
            table.prefetch(chain.hash, 2);
        }
        if let Some((reader, Some(block))) = chain.segment {
            reader.prefetch_cached_block(block, cache);
        }
    }
    for chain in &mut chains {
        if let Some((reader, Some(block))) = chain.segment {
            chain.cached = reader.prefetch_in_block(chain.key, block, cache);
        }
    }
    for level in 1..=2 {
        for chain in &chains {
            if let Some(cached) = &chain.cached {
                cached.block.prefetch_point(chain.key, level);
            }
        }
    }
    chains
}

impl Chain<'_> {
    /// The read of this chain's key, finished where the walk left it.
    fn finish(
        self,
        memtables: &[&MemTable],
        read_at: u64,
        segments: &SegmentSet,
        cache: &BlockCache,
    ) -> Option<Result<MemoryRead>> {
        if self.memtable.is_some() {
            let (active, frozen) = memtables.split_first()?;
            let in_memtables = active
                .get_at(self.key, read_at)
                .or_else(|| frozen.iter().find_map(|table| table.get(self.key)));
            if let Some(entry) = in_memtables {
                return Some(Ok(MemoryRead {
                    entry: Some(entry),
                    ruled_out: 0,
                    false_positives: 0,
                }));
            }
            return self.read_segments(segments, cache);
        }
        let Some((reader, block)) = self.segment else {
            return Some(Ok(MemoryRead {
                entry: None,
                ruled_out: u64::from(self.ruled_out),
                false_positives: 0,
            }));
        };
        let found = match (block, &self.cached) {
            (Some(block), Some(cached)) => reader.get_in_cached(self.key, block, cached),
            _ => return self.read_segments(segments, cache),
        };
        match found {
            Err(error) => Some(Err(error)),
            Ok(Lookup::Found(entry)) => Some(Ok(MemoryRead {
                entry: Some(entry),
                ruled_out: u64::from(self.ruled_out),
                false_positives: 0,
            })),
            // A false positive: the older segments may hold the key.
            Ok(Lookup::Absent | Lookup::FilteredOut) => self.read_segments(segments, cache),
        }
    }

    /// The key's read in the segments, as a single get does it.
    fn read_segments(
        &self,
        segments: &SegmentSet,
        cache: &BlockCache,
    ) -> Option<Result<MemoryRead>> {
        let looked = segments.lookup_if_cached(self.key, self.hash, cache);
        let (lookup, ruled_out) = match looked {
            Err(error) => return Some(Err(error)),
            Ok(found) => found?,
        };
        Some(Ok(MemoryRead {
            entry: lookup.entry,
            ruled_out,
            false_positives: lookup.false_positives,
        }))
    }
}
