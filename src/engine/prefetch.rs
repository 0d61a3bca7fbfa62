//! Prefetching the gets of a batch (a pipelined pass's GETs) before they
//! run.
//!
//! A get of a key held in a segment follows a chain of loads, each waiting
//! for the one before: the bloom filters' bytes, the block cache's set (tag
//! and slot), the cached block, its point index, the index's slot, the
//! entry. With more data than the CPU's caches hold most of them miss: at
//! 632k keys the same gets cost 2,100-2,400 ns each with cold lines and
//! about 310 ns with their lines cached (docs/BENCHMARKS.md, session 19).
//! One get cannot overlap its own misses, but a batch can overlap its
//! keys': [`prefetch_gets`] walks every key's chain one link at a time,
//! prefetching each key's next link before reading any key's, so the
//! batch's misses of one link are in flight together (group prefetching,
//! as RocksDB's `MultiGet` does for its filters and blocks). Each stage
//! reads only lines the stage before prefetched.
//!
//! It reads no file, builds nothing, counts nothing and answers nothing:
//! the gets that follow run as usual and find their lines in the cache. A
//! key whose chain leaves the common path (a block not cached, one without
//! a point index, a filter's false positive) is only prefetched less.
//! The memtables are prefetched the same way (key filter, point index slot,
//! version); a key a memtable's filter may hold is not looked for in the
//! segments.

use std::sync::Arc;

use super::memtable::MemTable;
use super::memtable::filter_hash;
use super::version::SegmentSet;
use crate::format::sstable::{BlockCache, CachedBlock, SstableReader};

/// How far one key's prefetching got.
struct Chain<'a> {
    key: &'a [u8],
    hash: u64,
    /// The first memtable whose filter may hold the key.
    memtable: Option<&'a MemTable>,
    /// The first segment whose filter lets the key through, and the block.
    segment: Option<(&'a SstableReader, u32)>,
    cached: Option<Arc<CachedBlock>>,
}

/// Prefetches what gets of `keys` will read in `memtables` (newest first)
/// and `segments`; see the module doc.
pub fn prefetch_gets(
    memtables: &[&MemTable],
    segments: &SegmentSet,
    cache: &BlockCache,
    keys: &[&[u8]],
) {
    let mut chains: Vec<Chain<'_>> = keys
        .iter()
        .map(|key| Chain {
            key,
            hash: filter_hash(key),
            memtable: None,
            segment: None,
            cached: None,
        })
        .collect();
    for chain in &chains {
        for table in memtables {
            table.prefetch(chain.hash, 0);
        }
        for segment in segments.spanning(chain.key) {
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
        chain.segment = segments.spanning(chain.key).find_map(|segment| {
            let block = segment
                .reader
                .prefetch_block_set(chain.key, chain.hash, cache)?;
            Some((&*segment.reader, block))
        });
    }
    for chain in &chains {
        if let Some(table) = chain.memtable {
            table.prefetch(chain.hash, 2);
        }
        if let Some((reader, block)) = chain.segment {
            reader.prefetch_cached_block(block, cache);
        }
    }
    for chain in &mut chains {
        if let Some((reader, block)) = chain.segment {
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
}
