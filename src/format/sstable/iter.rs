//! A lazy cursor over a table's entries in a key range, forward or reverse,
//! reading one data block at a time.

use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::Arc;

use super::block::{ForwardEntries, Step};
use super::cache::BlockCache;
use super::reader::{SstableReader, would_block};
use crate::format::{Entry, EntryIter, KeyRange, range_contains};
use crate::{Error, Result};

/// How a cursor reads its data blocks.
#[derive(Debug, Clone)]
pub struct BlockReads {
    /// Take blocks from this cache, and admit them to it as point lookups
    /// do (a block missed twice); `None`: read the file every time, leaving
    /// the cache alone (compaction, which reads every block once).
    pub cache: Option<Arc<BlockCache>>,
    /// False: read only what the block cache or the page cache holds; a
    /// block that would have to come from the disk fails the cursor with an
    /// error that [`super::is_would_block`] recognises, so that the caller
    /// can make the read again where waiting is fine.
    pub wait_for_disk: bool,
}

impl BlockReads {
    /// Every block read from the file, waiting for the disk if need be.
    pub fn uncached() -> Self {
        BlockReads {
            cache: None,
            wait_for_disk: true,
        }
    }
}

/// A cursor over a table's entries in a range. After an error it returns
/// the same error on every call.
pub struct SstableIter {
    table: Arc<SstableReader>,
    range: KeyRange,
    reverse: bool,
    /// The block to read when `current` runs out; `None` once the blocks
    /// that can hold keys in the range are used up.
    next_block: Option<usize>,
    current: Current,
    failed: Option<Error>,
    reads: BlockReads,
}

/// The block a cursor is reading.
enum Current {
    /// None yet, or the last one is used up.
    Done,
    /// A block decoded whole: its entries inside the range, in iteration
    /// order (reverse scans, and tables without restart points).
    Decoded(std::vec::IntoIter<Entry>),
    /// Block `block` of a table with restart points, read forward one entry
    /// at a time.
    Forward {
        block: usize,
        entries: ForwardEntries,
    },
}

impl SstableIter {
    pub(super) fn new(
        table: Arc<SstableReader>,
        range: KeyRange,
        reverse: bool,
        reads: BlockReads,
    ) -> Self {
        let next_block = if is_empty(&range) {
            None
        } else if reverse {
            last_block(&table, &range)
        } else {
            first_block(&table, &range)
        };
        SstableIter {
            table,
            range,
            reverse,
            next_block,
            current: Current::Done,
            failed: None,
            reads,
        }
    }

    /// Makes block `block` the current one and decides which block follows.
    fn load(&mut self, block: usize) -> Result<()> {
        if !self.reverse && self.table.has_restarts() {
            return self.load_forward(block);
        }
        let entries = self
            .table
            .read_block_for(block, &self.reads)?
            .ok_or_else(would_block)?;
        self.next_block = if self.reverse {
            let below_start = entries
                .first()
                .is_some_and(|e| before_start(&self.range, &e.key));
            block.checked_sub(1).filter(|_| !below_start)
        } else {
            let above_end = entries
                .last()
                .is_some_and(|e| after_end(&self.range, &e.key));
            Some(block + 1).filter(|&next| !above_end && next < self.table.block_count())
        };
        let mut wanted: Vec<Entry> = entries
            .into_iter()
            .filter(|e| range_contains(&self.range, &e.key))
            .collect();
        if self.reverse {
            wanted.reverse();
        }
        self.current = Current::Decoded(wanted.into_iter());
        Ok(())
    }

    /// `load` for a forward cursor over a table with restart points: the
    /// block is read one entry at a time from the run that can hold the
    /// range's start, and the index's last key says whether a next block
    /// can hold keys in the range.
    fn load_forward(&mut self, block: usize) -> Result<()> {
        let start = match &self.range.0 {
            Included(start) | Excluded(start) => Some(start.as_ref()),
            Unbounded => None,
        };
        let entries = self
            .table
            .forward_entries(block, &self.reads, start)?
            .ok_or_else(would_block)?;
        let above_end = self
            .table
            .block_last_key(block)
            .is_some_and(|last| after_end(&self.range, last));
        self.next_block =
            Some(block + 1).filter(|&next| !above_end && next < self.table.block_count());
        self.current = Current::Forward { block, entries };
        Ok(())
    }

    /// The next entry of the current block, `None` once it is used up.
    fn next_in_block(&mut self) -> Result<Option<Entry>> {
        let (block, entries) = match &mut self.current {
            Current::Done => return Ok(None),
            Current::Decoded(entries) => return Ok(entries.next()),
            Current::Forward { block, entries } => (*block, entries),
        };
        let last_key = self.table.block_last_key(block).map_or(&[][..], |k| k);
        let range = &self.range;
        let place = |key: &[u8]| {
            if before_start(range, key) {
                std::cmp::Ordering::Less
            } else if after_end(range, key) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        };
        let step = entries
            .next_in(last_key, place)
            .map_err(|m| self.table.corrupt_block(block, m))?;
        match step {
            Step::Entry(entry) => Ok(Some(entry)),
            Step::BlockEnd => Ok(None),
            Step::RangeEnd => {
                self.next_block = None;
                Ok(None)
            }
        }
    }
}

impl EntryIter for SstableIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(error) = &self.failed {
                return Err(error.clone());
            }
            match self.next_in_block() {
                Ok(Some(entry)) => return Ok(Some(entry)),
                Ok(None) => self.current = Current::Done,
                Err(error) => {
                    self.next_block = None;
                    self.failed = Some(error);
                    continue;
                }
            }
            let Some(block) = self.next_block else {
                return Ok(None);
            };
            if let Err(error) = self.load(block) {
                self.next_block = None;
                self.failed = Some(error);
            }
        }
    }
}

/// The first block a forward scan reads, `None` if every key is below the range.
fn first_block(table: &SstableReader, range: &KeyRange) -> Option<usize> {
    let block = match &range.0 {
        Included(start) => table.block_for(start),
        Excluded(start) => table.block_after(start),
        Unbounded => 0,
    };
    Some(block).filter(|&b| b < table.block_count())
}

/// The first block a reverse scan reads: the one that can hold the range's
/// end, or the last block if every key is below it.
fn last_block(table: &SstableReader, range: &KeyRange) -> Option<usize> {
    let last = table.block_count().checked_sub(1)?;
    match &range.1 {
        Included(end) | Excluded(end) => Some(table.block_for(end).min(last)),
        Unbounded => Some(last),
    }
}

/// True if no key can lie in `range`.
fn is_empty(range: &KeyRange) -> bool {
    match range {
        (Included(start), Included(end)) => start > end,
        (Included(start) | Excluded(start), Excluded(end)) | (Excluded(start), Included(end)) => {
            start >= end
        }
        _ => false,
    }
}

fn before_start(range: &KeyRange, key: &[u8]) -> bool {
    match &range.0 {
        Included(start) => key < start.as_ref(),
        Excluded(start) => key <= start.as_ref(),
        Unbounded => false,
    }
}

fn after_end(range: &KeyRange, key: &[u8]) -> bool {
    match &range.1 {
        Included(end) => key > end.as_ref(),
        Excluded(end) => key >= end.as_ref(),
        Unbounded => false,
    }
}
