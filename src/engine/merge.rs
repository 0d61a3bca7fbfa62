//! Iterators that compose: a merge of sorted sources (memtables, segments,
//! levels) gives scans, reads and compaction from one mechanism.

use std::collections::VecDeque;
use std::ops::Bound;

use bytes::Bytes;

use super::memtable::MemTable;
use crate::Result;
use crate::format::{Entry, EntryIter, KeyRange};

/// Merges sorted sources into one sorted stream with one entry per key: where
/// several sources hold a key, the version with the highest sequence number
/// wins. Tombstones are passed through; the caller decides what they mean.
pub struct MergeIter {
    sources: Vec<Box<dyn EntryIter>>,
    heads: Vec<Option<Entry>>,
    reverse: bool,
    started: bool,
}

impl MergeIter {
    /// Merges `sources`, all sorted in the same direction (`reverse`).
    pub fn new(sources: Vec<Box<dyn EntryIter>>, reverse: bool) -> Self {
        let heads = vec![None; sources.len()];
        MergeIter {
            sources,
            heads,
            reverse,
            started: false,
        }
    }

    fn fill_heads(&mut self) -> Result<()> {
        for (head, source) in self.heads.iter_mut().zip(self.sources.iter_mut()) {
            *head = source.next_entry()?;
        }
        Ok(())
    }

    /// Which head holds the smallest key (the largest when reversed); the
    /// first such head if several do.
    fn next_head(&self) -> Option<usize> {
        let mut chosen: Option<(usize, &Bytes)> = None;
        for (at, head) in self.heads.iter().enumerate() {
            let Some(entry) = head else { continue };
            let better = chosen.is_none_or(|(_, key)| match self.reverse {
                false => entry.key < *key,
                true => entry.key > *key,
            });
            if better {
                chosen = Some((at, &entry.key));
            }
        }
        chosen.map(|(at, _)| at)
    }
}

impl EntryIter for MergeIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.fill_heads()?;
            self.started = true;
        }
        let Some(first) = self.next_head() else {
            return Ok(None);
        };
        let (Some(head), Some(source)) = (self.heads.get_mut(first), self.sources.get_mut(first))
        else {
            return Ok(None);
        };
        // Sources are sorted, so the next head of `first` is past this key;
        // the other heads are compared with `winner`'s key, not a copy.
        let next = source.next_entry()?;
        let Some(mut winner) = std::mem::replace(head, next) else {
            return Ok(None);
        };
        for (head, source) in self.heads.iter_mut().zip(self.sources.iter_mut()) {
            if head.as_ref().is_some_and(|entry| entry.key == winner.key) {
                let next = source.next_entry()?;
                if let Some(entry) = std::mem::replace(head, next)
                    && entry.seq > winner.seq
                {
                    winner = entry;
                }
            }
        }
        Ok(Some(winner))
    }
}

/// Skips tombstones and entries expired at `.1` (Unix milliseconds; 0
/// treats nothing as expired): what a reader sees.
pub struct LiveIter<I>(pub I, pub u64);

impl<I: EntryIter> EntryIter for LiveIter<I> {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        while let Some(entry) = self.0.next_entry()? {
            if entry.value.is_some() && !entry.is_expired_at(self.1) {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }
}

/// Turns each entry expired at `.1` (Unix milliseconds) into a tombstone
/// with the same key and sequence number: what a flush or a compaction
/// writes, so that the value's bytes go but the key still hides older
/// versions below it (a compaction with nothing deeper then drops the
/// tombstone too).
pub struct ExpiredAsTombstones<I>(pub I, pub u64);

impl<I: EntryIter> EntryIter for ExpiredAsTombstones<I> {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let entry = self.0.next_entry()?;
        Ok(entry.map(|entry| match entry.is_expired_at(self.1) {
            true => Entry {
                value: None,
                expire_at_ms: 0,
                ..entry
            },
            false => entry,
        }))
    }
}

/// Runs several sources one after the other, each created only when reached:
/// a level's non-overlapping segments in key order.
pub struct ChainIter {
    pending: std::vec::IntoIter<Box<dyn FnOnce() -> Box<dyn EntryIter> + Send>>,
    current: Option<Box<dyn EntryIter>>,
}

impl ChainIter {
    /// Chains the sources made by `makers`, in order.
    pub fn new(makers: Vec<Box<dyn FnOnce() -> Box<dyn EntryIter> + Send>>) -> Self {
        ChainIter {
            pending: makers.into_iter(),
            current: None,
        }
    }
}

impl EntryIter for ChainIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(current) = self.current.as_mut()
                && let Some(entry) = current.next_entry()?
            {
                return Ok(Some(entry));
            }
            match self.pending.next() {
                Some(make) => self.current = Some(make()),
                None => return Ok(None),
            }
        }
    }
}

/// Entries a [`MemTableIter`] takes at its first seek; each later seek takes
/// twice as many, up to [`MEMTABLE_BATCH_MAX`]. A short scan copies little
/// it does not use; a long one (a flush) seeks rarely.
const MEMTABLE_BATCH_MIN: usize = 16;
const MEMTABLE_BATCH_MAX: usize = 1024;

/// Walks a memtable snapshot without borrowing it: each seek takes a batch
/// of entries into a buffer and moves the range past the last of them.
/// Cloning a `MemTable` is O(1), so the iterator owns its snapshot; the
/// snapshot never changes, so seeking again sees what one walk would.
pub struct MemTableIter {
    table: MemTable,
    range: KeyRange,
    reverse: bool,
    buffered: VecDeque<Entry>,
    batch: usize,
    /// The last seek found fewer entries than it asked for.
    exhausted: bool,
}

impl MemTableIter {
    /// The entries of `table` in `range`.
    pub fn new(table: MemTable, range: KeyRange, reverse: bool) -> Self {
        MemTableIter {
            table,
            range,
            reverse,
            buffered: VecDeque::new(),
            batch: MEMTABLE_BATCH_MIN,
            exhausted: false,
        }
    }

    fn refill(&mut self) {
        let batch = self.table.range(&self.range, self.reverse).take(self.batch);
        self.buffered.extend(batch);
        self.exhausted = self.buffered.len() < self.batch;
        self.batch = (self.batch * 2).min(MEMTABLE_BATCH_MAX);
        if let Some(last) = self.buffered.back() {
            let past = Bound::Excluded(last.key.clone());
            if self.reverse {
                self.range.1 = past;
            } else {
                self.range.0 = past;
            }
        }
    }
}

impl EntryIter for MemTableIter {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.buffered.is_empty() && !self.exhausted {
            self.refill();
        }
        Ok(self.buffered.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::VecEntryIter;

    fn entry(key: &str, seq: u64, value: Option<&str>) -> Entry {
        Entry {
            expire_at_ms: 0,
            key: Bytes::copy_from_slice(key.as_bytes()),
            seq,
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    fn drain(mut iter: impl EntryIter) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some(entry) = iter.next_entry().unwrap() {
            out.push(entry);
        }
        out
    }

    #[test]
    fn highest_sequence_wins_in_both_directions() {
        let newer = vec![entry("a", 5, Some("new")), entry("c", 6, None)];
        let older = vec![
            entry("a", 1, Some("old")),
            entry("b", 2, Some("b")),
            entry("c", 3, Some("c")),
        ];
        let sources = |rev: bool| -> Vec<Box<dyn EntryIter>> {
            let mut n = newer.clone();
            let mut o = older.clone();
            if rev {
                n.reverse();
                o.reverse();
            }
            vec![
                Box::new(VecEntryIter::new(o)),
                Box::new(VecEntryIter::new(n)),
            ]
        };
        let forward = drain(MergeIter::new(sources(false), false));
        assert_eq!(
            forward,
            vec![
                entry("a", 5, Some("new")),
                entry("b", 2, Some("b")),
                entry("c", 6, None)
            ]
        );
        let live = drain(LiveIter(MergeIter::new(sources(true), true), 0));
        assert_eq!(
            live,
            vec![entry("b", 2, Some("b")), entry("a", 5, Some("new"))]
        );
    }

    #[test]
    fn memtable_iter_walks_past_its_batches_and_ignores_later_writes() {
        let mut table = MemTable::default();
        let key = |i: usize| Bytes::from(format!("k{i:05}"));
        for i in 0..3000 {
            table.apply(key(i), 2 * i as u64 + 1, Some(Bytes::from("old")));
            table.apply(key(i), 2 * i as u64 + 2, (i % 3 != 0).then(|| key(i)));
        }
        let snapshot = table.clone();
        let range: KeyRange = (Bound::Excluded(key(7)), Bound::Included(key(2990)));
        for reverse in [false, true] {
            let mut iter = MemTableIter::new(snapshot.clone(), range.clone(), reverse);
            let first = iter.next_entry().unwrap();
            // Writes after the snapshot, inside and outside what is buffered.
            let seq = 10_000 + 10 * u64::from(reverse);
            table.apply(key(9), seq, None);
            table.apply(key(2500), seq + 1, None);
            table.apply(Bytes::from(format!("k01000{reverse}")), seq + 2, None);
            let mut walked: Vec<Entry> = first.into_iter().collect();
            walked.extend(drain(iter));
            let expected: Vec<Entry> = snapshot.range(&range, reverse).collect();
            assert_eq!(walked.len(), 2990 - 7);
            assert_eq!(walked, expected);
            assert!(
                walked
                    .iter()
                    .all(|e| e.seq <= 6000 && e.value != Some(Bytes::from("old")))
            );
        }
    }

    #[test]
    fn chain_runs_sources_in_order() {
        let makers: Vec<Box<dyn FnOnce() -> Box<dyn EntryIter> + Send>> = vec![
            Box::new(|| {
                Box::new(VecEntryIter::new(vec![entry("a", 1, Some("1"))])) as Box<dyn EntryIter>
            }),
            Box::new(|| Box::new(VecEntryIter::new(vec![])) as Box<dyn EntryIter>),
            Box::new(|| {
                Box::new(VecEntryIter::new(vec![entry("b", 2, Some("2"))])) as Box<dyn EntryIter>
            }),
        ];
        let keys: Vec<_> = drain(ChainIter::new(makers))
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, vec![Bytes::from("a"), Bytes::from("b")]);
    }
}
