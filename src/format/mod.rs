//! The engine's on-disk formats. Each module documents its byte layout at its
//! top: [`wal`] (the redo log), [`sstable`] (sorted segment files) and
//! [`manifest`] (the live segment set). [`coding`] holds the shared varint and
//! fixed-width helpers.

pub mod coding;
pub mod manifest;
pub mod sstable;
pub mod wal;

use bytes::Bytes;

/// One version of one key, as the memtable, segments and merges carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The user's key.
    pub key: Bytes,
    /// The sequence number of the write that made this version.
    pub seq: u64,
    /// The value, or `None` for a delete (a tombstone).
    pub value: Option<Bytes>,
    /// When the value expires, in Unix milliseconds; 0: never. At or past
    /// it the entry reads as absent. Always 0 on a tombstone.
    pub expire_at_ms: u64,
}

impl Entry {
    /// True if the entry carries an expiry that `now_ms` has reached.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expire_at_ms != 0 && now_ms >= self.expire_at_ms
    }

    /// The value a reader sees at `now_ms`: `None` for a tombstone or an
    /// expired put.
    pub fn live_value(self, now_ms: u64) -> Option<Bytes> {
        match self.is_expired_at(now_ms) {
            true => None,
            false => self.value,
        }
    }
}

/// A sorted stream of entries, ascending or descending by key, at most one
/// entry per key. Segment iterators, memtable iterators and merges implement it.
pub trait EntryIter: Send {
    /// The next entry, `Ok(None)` at the end.
    fn next_entry(&mut self) -> crate::Result<Option<Entry>>;
}

impl EntryIter for Box<dyn EntryIter> {
    fn next_entry(&mut self) -> crate::Result<Option<Entry>> {
        (**self).next_entry()
    }
}

/// Iterates a vector of entries already in the wanted order.
#[derive(Debug)]
pub struct VecEntryIter(std::vec::IntoIter<Entry>);

impl VecEntryIter {
    /// Entries must already be sorted in the order the reader wants.
    pub fn new(entries: Vec<Entry>) -> Self {
        VecEntryIter(entries.into_iter())
    }
}

impl EntryIter for VecEntryIter {
    fn next_entry(&mut self) -> crate::Result<Option<Entry>> {
        Ok(self.0.next())
    }
}

/// A range of keys: where it starts and where it ends.
pub type KeyRange = (std::ops::Bound<Bytes>, std::ops::Bound<Bytes>);

/// True if `key` lies inside `range`.
pub fn range_contains(range: &KeyRange, key: &[u8]) -> bool {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let after_start = match &range.0 {
        Included(start) => key >= start.as_ref(),
        Excluded(start) => key > start.as_ref(),
        Unbounded => true,
    };
    let before_end = match &range.1 {
        Included(end) => key <= end.as_ref(),
        Excluded(end) => key < end.as_ref(),
        Unbounded => true,
    };
    after_start && before_end
}

/// The kinds of file in a database directory, named by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `NNNNNN.wal`: a write-ahead log.
    Wal(u64),
    /// `NNNNNN.sst`: a segment.
    Segment(u64),
    /// `NNNNNN.sst.tmp`, `MANIFEST.tmp`: left by an interrupted write; removed on open.
    Temporary,
    /// `MANIFEST`: the live segment set.
    Manifest,
    /// `LOCK`: held by the process that has the database open.
    Lock,
}

/// Asks the CPU to start loading the cache line holding `value` and not to
/// wait for it: a read of it soon after then finds it in the cache. A hint
/// only (it reads nothing the program sees); elsewhere than on x86_64 it
/// does nothing. See `engine/prefetch.rs`.
#[inline]
pub fn prefetch<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let at = std::ptr::from_ref(value).cast::<i8>();
        // SAFETY: SSE is part of every x86_64 CPU, and a prefetch never
        // faults, whatever the address (`value` is a valid reference anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// [`prefetch`] of the line at `address`, for a caller that keeps where a
/// value lies but would have to load it to name it.
#[inline]
pub fn prefetch_address(address: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: as in `prefetch`: a prefetch never faults, whatever the
        // address, and reads nothing the program sees.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// The file name of WAL number `number`.
pub fn wal_file_name(number: u64) -> String {
    format!("{number:06}.wal")
}

/// The file name of segment number `number`.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// The name a segment is written under before it is complete.
pub fn temporary_segment_file_name(number: u64) -> String {
    format!("{number:06}.sst.tmp")
}

/// What a directory entry is, `None` for a name the engine did not write.
pub fn parse_file_name(name: &str) -> Option<FileKind> {
    match name {
        manifest::MANIFEST_FILE => return Some(FileKind::Manifest),
        "LOCK" => return Some(FileKind::Lock),
        _ => {}
    }
    if name.ends_with(".tmp") {
        return Some(FileKind::Temporary);
    }
    let (number, extension) = name.split_once('.')?;
    let number: u64 = number.parse().ok()?;
    match extension {
        "wal" => Some(FileKind::Wal(number)),
        "sst" => Some(FileKind::Segment(number)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_back() {
        assert_eq!(parse_file_name(&wal_file_name(7)), Some(FileKind::Wal(7)));
        assert_eq!(
            parse_file_name(&segment_file_name(12)),
            Some(FileKind::Segment(12))
        );
        assert_eq!(
            parse_file_name(&temporary_segment_file_name(3)),
            Some(FileKind::Temporary)
        );
        assert_eq!(parse_file_name("MANIFEST"), Some(FileKind::Manifest));
        assert_eq!(parse_file_name("notes.txt"), None);
    }

    #[test]
    fn range_bounds_are_respected() {
        use std::ops::Bound::*;
        let range: KeyRange = (Included(Bytes::from("b")), Excluded(Bytes::from("d")));
        assert!(!range_contains(&range, b"a"));
        assert!(range_contains(&range, b"b"));
        assert!(range_contains(&range, b"c"));
        assert!(!range_contains(&range, b"d"));
    }
}
