//! A lazy cursor over a table's entries in a key range, forward or reverse,
//! reading one data block at a time.

use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::Arc;

use super::reader::SstableReader;
use crate::format::{Entry, EntryIter, KeyRange, range_contains};
use crate::{Error, Result};

/// A cursor over a table's entries in a range. After an error it returns
/// the same error on every call.
pub struct SstableIter {
    table: Arc<SstableReader>,
    range: KeyRange,
    reverse: bool,
    /// The block to read when `buffered` runs out; `None` once the blocks
    /// that can hold keys in the range are used up.
    next_block: Option<usize>,
    /// The current block's entries inside the range, in iteration order.
    buffered: std::vec::IntoIter<Entry>,
    failed: Option<Error>,
}

impl SstableIter {
    pub(super) fn new(table: Arc<SstableReader>, range: KeyRange, reverse: bool) -> Self {
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
            buffered: Vec::new().into_iter(),
            failed: None,
        }
    }

    /// Reads the next block into `buffered` and decides which block follows.
    fn load(&mut self, block: usize) -> Result<()> {
        let entries = self.table.read_block(block)?;
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
        self.buffered = wanted.into_iter();
        Ok(())
    }
}

impl EntryIter for SstableIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(error) = &self.failed {
                return Err(error.clone());
            }
            if let Some(entry) = self.buffered.next() {
                return Ok(Some(entry));
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
