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
//! Groups are formed only when no group is in flight, so every write given
//! a sequence number before is already applied to the memtable the check
//! looks at.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::table::{FrozenMemtable, MemTable};
use crate::engine::batch::Requirement;

/// What the conditions of one group are checked against.
pub(super) struct GroupConditions<'a> {
    pub active: &'a MemTable,
    pub frozen: &'a [Arc<FrozenMemtable>],
    /// The highest sequence number of any memtable flushed and dropped.
    pub dropped_through: u64,
    /// Keys written by the group's writes admitted so far.
    pub written: HashSet<Bytes>,
}

impl GroupConditions<'_> {
    /// Whether every requirement holds now.
    pub fn hold(&self, requirements: &[Requirement]) -> bool {
        requirements.iter().all(|r| self.holds(r))
    }

    fn holds(&self, requirement: &Requirement) -> bool {
        if self.written.contains(&requirement.key) {
            return false;
        }
        let in_memory = std::iter::once(self.active).chain(self.frozen.iter().map(|f| &f.table));
        for table in in_memory {
            if let Some(entry) = table.get(&requirement.key) {
                return entry.seq == requirement.version.seq;
            }
        }
        self.dropped_through <= requirement.version.read_at
    }

    /// Records that an admitted write writes `keys`.
    pub fn admit<'k>(&mut self, keys: impl Iterator<Item = &'k Bytes>) {
        self.written.extend(keys.cloned());
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
            written: HashSet::new(),
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
        })];
        let active = MemTable::default();
        let conditions = GroupConditions {
            active: &active,
            frozen: &frozen,
            dropped_through: 0,
            written: HashSet::new(),
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
            written: HashSet::new(),
        };
        assert!(conditions.hold(&[requirement(b"k", 5, 10)]));
        assert!(conditions.hold(&[requirement(b"k", 0, 12)]));
        assert!(!conditions.hold(&[requirement(b"k", 5, 9)]));
        conditions.admit([Bytes::from_static(b"k")].iter());
        assert!(!conditions.hold(&[requirement(b"k", 5, 12)]));
        assert!(conditions.hold(&[requirement(b"other", 0, 12)]));
    }
}
