//! Conditional writes: deciding, when a group is formed, which of its
//! writes still hold their conditions (`WriteBatch::require_unchanged`).
//!
//! A condition says "key is as a read that saw version `seq`, with writes
//! applied up to `read_at`, left it". The actor decides it from what it
//! holds, without reading a segment:
//!
//! - A key written by an earlier write of the same group has changed.
//! - A key found in the active or a frozen memtable has its newest version
//!   there: unchanged exactly when that version's sequence number is `seq`.
//! - A key in no memtable has its newest version in a segment, written by a
//!   flushed memtable. Every flushed memtable's writes are at or below
//!   `dropped_through`; if that is at most `read_at`, the read saw all of
//!   them and so the key's newest version: unchanged. Otherwise a memtable
//!   was flushed and dropped since the read, and a write in it may have
//!   changed the key: the actor cannot tell without a disk read, so it
//!   refuses (a conflict the caller retries; flushes are rare next to
//!   writes, so this costs a retry now and then).
//!
//! - A range delete not yet flushed counts as a write of every key in its
//!   range: a key in a memtable has, as its newest change, the newest range
//!   delete over its value there, if newer (readers report that sequence
//!   number, see `Db::get_versioned`); a key in no memtable has changed if a
//!   range delete over it is newer than the read. A range delete earlier in
//!   the same group changes every key in its range.
//!
//! Groups are formed only when no group is in flight, so every write given
//! a sequence number before is already applied to the memtable the check
//! looks at.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::table::{FrozenMemtable, MemTable};
use crate::engine::batch::Requirement;
use crate::engine::range_delete::RangeTombstone;

/// What the conditions of one group are checked against.
pub(super) struct GroupConditions<'a> {
    pub active: &'a MemTable,
    pub frozen: &'a [Arc<FrozenMemtable>],
    /// The highest sequence number of any memtable flushed and dropped.
    pub dropped_through: u64,
    /// Range deletes of the active memtable (the frozen ones carry theirs).
    pub active_tombstones: &'a [RangeTombstone],
    /// Keys written by the group's writes admitted so far.
    pub written: HashSet<Bytes>,
    /// Ranges deleted by the group's writes admitted so far.
    pub deleted: Vec<(Bytes, Bytes)>,
}

impl GroupConditions<'_> {
    /// Whether every requirement holds now.
    pub fn hold(&self, requirements: &[Requirement]) -> bool {
        requirements.iter().all(|r| self.holds(r))
    }

    fn holds(&self, requirement: &Requirement) -> bool {
        let key = &requirement.key;
        let deleted_in_group = self
            .deleted
            .iter()
            .any(|(start, end)| key >= start && (end.is_empty() || key < end));
        if deleted_in_group || self.written.contains(key) {
            return false;
        }
        // The unflushed range deletes over `key`.
        let frozen = self.frozen.iter().flat_map(|f| f.range_tombstones.iter());
        let over_key: Vec<u64> = self
            .active_tombstones
            .iter()
            .chain(frozen)
            .filter(|t| t.contains(key))
            .map(|t| t.seq)
            .collect();
        let in_memory = std::iter::once(self.active).chain(self.frozen.iter().map(|f| &f.table));
        for table in in_memory {
            if let Some(entry) = table.get(key) {
                // As `Db::get_versioned` reports it: the range delete that
                // deleted the value, if one did (the oldest newer than it).
                let deleted_at = over_key.iter().copied().filter(|&d| d > entry.seq).min();
                let newest = deleted_at
                    .filter(|_| entry.value.is_some())
                    .unwrap_or(entry.seq);
                return newest == requirement.version.seq;
            }
        }
        let read_at = requirement.version.read_at;
        self.dropped_through <= read_at && over_key.iter().all(|&d| d <= read_at)
    }

    /// Records that an admitted write writes `keys` and deletes `ranges`.
    pub fn admit<'k>(
        &mut self,
        keys: impl Iterator<Item = &'k Bytes>,
        ranges: impl Iterator<Item = &'k (Bytes, Bytes)>,
    ) {
        self.written.extend(keys.cloned());
        self.deleted.extend(ranges.cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::batch::ReadVersion;

    fn requirement(key: &'static [u8], seq: u64, read_at: u64) -> Requirement {
        Requirement {
            key: Bytes::from_static(key),
            version: ReadVersion { seq, read_at },
        }
    }

    #[test]
    fn a_key_in_a_memtable_is_unchanged_only_at_the_version_read() {
        let mut active = MemTable::default();
        active.apply(Bytes::from_static(b"k"), 7, Some(Bytes::from_static(b"v")));
        let conditions = GroupConditions {
            active: &active,
            frozen: &[],
            dropped_through: 0,
            active_tombstones: &[],
            written: HashSet::new(),
            deleted: Vec::new(),
        };
        assert!(conditions.hold(&[requirement(b"k", 7, 7)]));
        assert!(!conditions.hold(&[requirement(b"k", 3, 5)]));
        assert!(!conditions.hold(&[requirement(b"k", 0, 9)]));
    }

    #[test]
    fn a_frozen_memtable_counts_like_the_active_one() {
        let mut table = MemTable::default();
        table.apply(Bytes::from_static(b"k"), 4, None);
        let frozen = [Arc::new(FrozenMemtable {
            table,
            wal_number: 1,
            max_seq: 4,
            range_tombstones: Vec::new(),
        })];
        let active = MemTable::default();
        let conditions = GroupConditions {
            active: &active,
            frozen: &frozen,
            dropped_through: 0,
            active_tombstones: &[],
            written: HashSet::new(),
            deleted: Vec::new(),
        };
        assert!(conditions.hold(&[requirement(b"k", 4, 4)]));
        assert!(!conditions.hold(&[requirement(b"k", 2, 3)]));
    }

    #[test]
    fn a_key_only_in_segments_is_unchanged_unless_a_flush_passed_the_read() {
        let active = MemTable::default();
        let mut conditions = GroupConditions {
            active: &active,
            frozen: &[],
            dropped_through: 10,
            active_tombstones: &[],
            written: HashSet::new(),
            deleted: Vec::new(),
        };
        assert!(conditions.hold(&[requirement(b"k", 5, 10)]));
        assert!(conditions.hold(&[requirement(b"k", 0, 12)]));
        assert!(!conditions.hold(&[requirement(b"k", 5, 9)]));
        conditions.admit([Bytes::from_static(b"k")].iter(), [].iter());
        assert!(!conditions.hold(&[requirement(b"k", 5, 12)]));
        assert!(conditions.hold(&[requirement(b"other", 0, 12)]));
    }
}

#[cfg(test)]
mod range_delete_tests {
    use super::*;
    use crate::engine::batch::ReadVersion;

    fn requirement(key: &'static [u8], seq: u64, read_at: u64) -> Requirement {
        Requirement {
            key: Bytes::from_static(key),
            version: ReadVersion { seq, read_at },
        }
    }

    #[test]
    fn an_unflushed_range_delete_is_the_newest_change_of_the_keys_it_covers() {
        let mut active = MemTable::default();
        active.apply(Bytes::from_static(b"k"), 3, Some(Bytes::from_static(b"v")));
        let tombstones = [RangeTombstone {
            start: Bytes::from_static(b"a"),
            end: Bytes::from_static(b"m"),
            seq: 5,
        }];
        let mut conditions = GroupConditions {
            active: &active,
            frozen: &[],
            dropped_through: 0,
            active_tombstones: &tombstones,
            written: HashSet::new(),
            deleted: Vec::new(),
        };
        // Read before the range delete: changed. Read after it (reported
        // at the range delete's number): unchanged.
        assert!(!conditions.hold(&[requirement(b"k", 3, 4)]));
        assert!(conditions.hold(&[requirement(b"k", 5, 5)]));
        // A key only in segments: changed unless read after the delete.
        assert!(!conditions.hold(&[requirement(b"b", 1, 4)]));
        assert!(conditions.hold(&[requirement(b"b", 5, 5)]));
        assert!(conditions.hold(&[requirement(b"x", 1, 4)]));
        // A range delete earlier in the group.
        let range = (Bytes::from_static(b"w"), Bytes::new());
        conditions.admit([].iter(), [range].iter());
        assert!(!conditions.hold(&[requirement(b"x", 1, 9)]));
    }
}
