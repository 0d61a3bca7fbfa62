//! Range deletes: `Db::delete_range(start, end)` removes every key in
//! `[start, end)` with one write, whatever the number of keys.
//!
//! A range delete is a write like any other: it goes through the memtable
//! actor's queue, gets a sequence number `S` (after the point mutations of
//! its batch), is logged in the WAL (`WalMutation.range_delete`, field 6,
//! with the end in field 5; written and read in `engine::batch`) and is
//! atomic with its batch. It deletes every
//! version of a key in the range whose sequence number is below `S`; later
//! writes are untouched.
//!
//! Where a range tombstone `(start, end, S)` lives over its life:
//!
//! 1. **Unflushed**: in the memtable actor's list for the active memtable,
//!    then in its [`FrozenMemtable`](super::memtable::FrozenMemtable) once
//!    frozen. Readers see the union of these lists in the published
//!    `ReadView` (`range_tombstones`). The actor freezes the memtable soon
//!    after a range delete, so the next step does not wait for new writes.
//! 2. **Installed**: the flush that covers `S` writes the memtable without
//!    the versions the tombstone deletes (a key whose newest version it
//!    deletes is written as a point tombstone at `S`, so that its version
//!    still says when it changed: [`DeletedAsTombstones`]), and puts the tombstone in the
//!    segment set (`SegmentSet::range_tombstones`), which the manifest
//!    persists (`Manifest.range_tombstones`, field 6). Each installed
//!    tombstone names its *dirty* segments: the live segments whose key span
//!    meets the range at install time, which may hold versions below `S`.
//!    Before the flush installs it, the WAL holds it and replay rebuilds it.
//! 3. **Retired**: compaction drops the versions an installed tombstone
//!    deletes. A segment written by a compaction that knew the tombstone is
//!    clean; one written by a compaction that started before it was
//!    installed is dirty if any of its inputs was. When the tombstone's last
//!    dirty segment is gone, nothing it deletes can exist any more (every
//!    memtable older than `S` was flushed first, its own memtable was
//!    filtered at flush) and it leaves the set and the next manifest.
//!
//! To get the space back without waiting for new writes, the compactor,
//! when its policy has nothing to do, merges the dirty segments of the
//! installed tombstones ([`reclaim_task`]).
//!
//! The cost when there is no range tombstone: readers check two empty lists.

use std::sync::Arc;

use bytes::Bytes;

use super::compaction::CompactionTask;
use super::memtable::ReadView;
use super::version::SegmentSet;
use crate::Result;
use crate::format::{Entry, EntryIter};
use crate::proto::storage::{self, SegmentMeta};

/// A range delete of `[start, end)` at sequence number `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeTombstone {
    /// First key deleted.
    pub start: Bytes,
    /// First key after the range; empty: the end of the key space.
    pub end: Bytes,
    /// The range delete's sequence number: versions below it are deleted.
    pub seq: u64,
}

impl RangeTombstone {
    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_ref() && (self.end.is_empty() || key < self.end.as_ref())
    }

    /// Whether the version of `key` numbered `seq` is deleted by this one.
    pub fn covers(&self, key: &[u8], seq: u64) -> bool {
        seq < self.seq && self.contains(key)
    }

    /// Whether the key span `[lo, hi]` meets the range.
    pub fn meets(&self, lo: &[u8], hi: &[u8]) -> bool {
        hi >= self.start.as_ref() && (self.end.is_empty() || lo < self.end.as_ref())
    }
}

/// A range delete still to be written: `[start, end)`, `end` empty for the
/// end of the key space.
pub type RangeDelete = (Bytes, Bytes);

/// An immutable list of range tombstones, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RangeTombstones(Option<Arc<Vec<RangeTombstone>>>);

impl RangeTombstones {
    /// A list of `tombstones` (no allocation when empty).
    pub fn new(tombstones: Vec<RangeTombstone>) -> Self {
        match tombstones.is_empty() {
            true => RangeTombstones(None),
            false => RangeTombstones(Some(Arc::new(tombstones))),
        }
    }

    /// The tombstones.
    pub fn as_slice(&self) -> &[RangeTombstone] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// A tombstone in the segment set (and so in the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledTombstone {
    pub tombstone: RangeTombstone,
    /// File numbers of live segments that may hold versions it deletes.
    pub dirty: Vec<u64>,
}

/// The sequence number of the range delete in `view` that deleted `entry`
/// (the newest version of its key), if one did: the oldest that covers it
/// (later ones deleted nothing more).
pub fn deleted_at(view: &ReadView, entry: &Entry) -> Option<u64> {
    let unflushed = view.range_tombstones.as_slice().iter();
    let installed = view.segments.range_tombstones.iter().map(|t| &t.tombstone);
    unflushed
        .chain(installed)
        .filter(|t| t.covers(&entry.key, entry.seq))
        .map(|t| t.seq)
        .min()
}

/// Passes on the entries of a sorted stream that no tombstone deletes. The
/// stream holds the newest version of each key, so a deleted one means the
/// key is absent (every older version is deleted too).
pub struct Uncovered<I> {
    inner: I,
    tombstones: Vec<RangeTombstone>,
}

impl<I: EntryIter> Uncovered<I> {
    /// `inner` without what `tombstones` delete.
    pub fn new(inner: I, tombstones: Vec<RangeTombstone>) -> Self {
        Uncovered { inner, tombstones }
    }
}

impl<I: EntryIter> EntryIter for Uncovered<I> {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        while let Some(entry) = self.inner.next_entry()? {
            if !self
                .tombstones
                .iter()
                .any(|t| t.covers(&entry.key, entry.seq))
            {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }
}

/// What a flush writes of a frozen memtable under its own range deletes: a
/// key whose newest version a range delete removes is written as a point
/// tombstone at the range delete's sequence number, so that a reader still
/// learns when the key last changed (WATCH, conditional writes); without
/// it, a key whose versions were all in that memtable would read as never
/// written. Older versions a range delete covers are dropped; versions no
/// range delete covers pass. Expects each key's versions newest first.
pub struct DeletedAsTombstones<I> {
    inner: I,
    tombstones: Vec<RangeTombstone>,
    /// The key of the last entry read.
    last_key: Option<Bytes>,
}

impl<I: EntryIter> DeletedAsTombstones<I> {
    /// `inner` under `tombstones`.
    pub fn new(inner: I, tombstones: Vec<RangeTombstone>) -> Self {
        DeletedAsTombstones {
            inner,
            tombstones,
            last_key: None,
        }
    }
}

impl<I: EntryIter> EntryIter for DeletedAsTombstones<I> {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        if self.tombstones.is_empty() {
            // Most flushes: nothing to apply, no key to remember (comparing
            // every key with the last was 4 % of a server's CPU under SETs).
            return self.inner.next_entry();
        }
        while let Some(entry) = self.inner.next_entry()? {
            let newest = self.last_key.as_ref() != Some(&entry.key);
            if newest {
                self.last_key = Some(entry.key.clone());
            }
            let deleted_at = self
                .tombstones
                .iter()
                .filter(|t| t.covers(&entry.key, entry.seq))
                .map(|t| t.seq)
                .max();
            match (deleted_at, newest) {
                (None, _) => return Ok(Some(entry)),
                (Some(seq), true) => {
                    return Ok(Some(Entry {
                        key: entry.key,
                        seq,
                        value: None,
                        expire_at_ms: 0,
                    }));
                }
                (Some(_), false) => {}
            }
        }
        Ok(None)
    }
}

/// Every tombstone a reader of `set` and `unflushed` must apply.
pub fn all_tombstones(set: &SegmentSet, unflushed: &RangeTombstones) -> Vec<RangeTombstone> {
    let installed = set.range_tombstones.iter().map(|t| t.tombstone.clone());
    installed
        .chain(unflushed.as_slice().iter().cloned())
        .collect()
}

/// The installed list after a flush put `added` segments (already filtered
/// by `flushed`) into `set`: each of `flushed` becomes installed, dirty in
/// every other live segment its range meets.
pub fn install_flushed(
    set: &SegmentSet,
    added: &[u64],
    flushed: &[RangeTombstone],
) -> Arc<Vec<InstalledTombstone>> {
    if flushed.is_empty() {
        return set.range_tombstones.clone();
    }
    let mut list = set.range_tombstones.as_ref().clone();
    for tombstone in flushed {
        let dirty = set
            .all()
            .filter(|s| !added.contains(&s.meta.file_number))
            .filter(|s| tombstone.meets(&s.meta.smallest_key, &s.meta.largest_key))
            .map(|s| s.meta.file_number)
            .collect();
        list.push(InstalledTombstone {
            tombstone: tombstone.clone(),
            dirty,
        });
    }
    Arc::new(retire_clean(list))
}

/// The installed list after a compaction replaced `removed` by `added`.
/// It applied the tombstones numbered `known`; for any other, the outputs
/// are dirty if an input was.
pub fn after_compaction(
    before: &[InstalledTombstone],
    removed: &[u64],
    added: &[u64],
    known: &[u64],
) -> Arc<Vec<InstalledTombstone>> {
    let list = before
        .iter()
        .map(|t| {
            let input_dirty = t.dirty.iter().any(|n| removed.contains(n));
            let mut dirty: Vec<u64> = t
                .dirty
                .iter()
                .copied()
                .filter(|n| !removed.contains(n))
                .collect();
            if input_dirty && !known.contains(&t.tombstone.seq) {
                dirty.extend_from_slice(added);
            }
            InstalledTombstone {
                tombstone: t.tombstone.clone(),
                dirty,
            }
        })
        .collect();
    Arc::new(retire_clean(list))
}

/// Drops the tombstones no live segment can hold anything of.
fn retire_clean(list: Vec<InstalledTombstone>) -> Vec<InstalledTombstone> {
    list.into_iter().filter(|t| !t.dirty.is_empty()).collect()
}

/// A compaction that rewrites dirty segments, for when the policy has
/// nothing to do: if a level-0 segment is dirty, all of level 0 and the
/// level-1 segments it meets go into level 1 (level 0 is ordered by age, so
/// part of it cannot be rewritten in place); otherwise the dirty segments of
/// the shallowest level with any are rewritten into that same level (their
/// outputs span no more than they did, so the level stays one sorted run).
pub fn reclaim_task(levels: &[Vec<SegmentMeta>], set: &SegmentSet) -> Option<CompactionTask> {
    let dirty: Vec<u64> = set
        .range_tombstones
        .iter()
        .flat_map(|t| t.dirty.iter().copied())
        .collect();
    let (level, _) = levels
        .iter()
        .enumerate()
        .find(|(_, segments)| segments.iter().any(|s| dirty.contains(&s.file_number)))?;
    // Below level 0 one segment is rewritten in place at a time: two dirty
    // segments merged together could write a segment spanning a clean one
    // between them, and a level's segments must not overlap.
    let mut inputs: Vec<&SegmentMeta> = match level {
        0 => levels.first().into_iter().flatten().collect(),
        _ => levels
            .get(level)
            .into_iter()
            .flatten()
            .filter(|s| dirty.contains(&s.file_number))
            .take(1)
            .collect(),
    };
    let output_level = level.max(1);
    let (lo, hi) = span(&inputs)?;
    if level == 0 {
        let next = levels.get(1).into_iter().flatten();
        inputs.extend(next.filter(|s| meets(s, &lo, &hi)));
    }
    let (lo, hi) = span(&inputs)?;
    let deeper = levels.iter().skip(output_level + 1).flatten();
    let drop_tombstones = !deeper.clone().any(|s| meets(s, &lo, &hi));
    Some(CompactionTask {
        inputs: inputs.iter().map(|s| s.file_number).collect(),
        output_level: u32::try_from(output_level).unwrap_or(1),
        drop_tombstones,
    })
}

fn span(segments: &[&SegmentMeta]) -> Option<(Bytes, Bytes)> {
    let lo = segments.iter().map(|s| &s.smallest_key).min()?.clone();
    let hi = segments.iter().map(|s| &s.largest_key).max()?.clone();
    Some((lo, hi))
}

fn meets(segment: &SegmentMeta, lo: &[u8], hi: &[u8]) -> bool {
    segment.smallest_key.as_ref() <= hi && segment.largest_key.as_ref() >= lo
}

/// The manifest records of an installed list.
pub fn to_manifest(installed: &[InstalledTombstone]) -> Vec<storage::RangeTombstone> {
    installed
        .iter()
        .map(|t| storage::RangeTombstone {
            start: t.tombstone.start.clone(),
            end: t.tombstone.end.clone(),
            seq: t.tombstone.seq,
            dirty_segments: t.dirty.clone(),
        })
        .collect()
}

/// The installed list a manifest records; dirty segments the manifest does
/// not name (removed before it was written) are left out.
pub fn from_manifest(manifest: &storage::Manifest) -> Vec<InstalledTombstone> {
    let live: Vec<u64> = manifest.segments.iter().map(|s| s.file_number).collect();
    let list = manifest
        .range_tombstones
        .iter()
        .map(|t| InstalledTombstone {
            tombstone: RangeTombstone {
                start: t.start.clone(),
                end: t.end.clone(),
                seq: t.seq,
            },
            dirty: t
                .dirty_segments
                .iter()
                .copied()
                .filter(|n| live.contains(n))
                .collect(),
        })
        .collect();
    retire_clean(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::VecEntryIter;

    fn tombstone(start: &str, end: &str, seq: u64) -> RangeTombstone {
        RangeTombstone {
            start: Bytes::copy_from_slice(start.as_bytes()),
            end: Bytes::copy_from_slice(end.as_bytes()),
            seq,
        }
    }

    fn meta(number: u64, lo: &str, hi: &str) -> SegmentMeta {
        SegmentMeta {
            file_number: number,
            smallest_key: Bytes::copy_from_slice(lo.as_bytes()),
            largest_key: Bytes::copy_from_slice(hi.as_bytes()),
            ..Default::default()
        }
    }

    #[test]
    fn a_tombstone_covers_older_versions_inside_its_range_only() {
        let t = tombstone("b", "d", 10);
        assert!(t.covers(b"b", 9));
        assert!(t.covers(b"c\xff", 1));
        assert!(
            !t.covers(b"c", 10),
            "its own sequence number and later stay"
        );
        assert!(!t.covers(b"d", 1), "the end is exclusive");
        assert!(!t.covers(b"a", 1));
        let to_end = tombstone("b", "", 10);
        assert!(to_end.covers(b"\xff\xff\xff", 1));
        assert!(to_end.meets(b"x", b"z"));
        assert!(!t.meets(b"d", b"z"));
        assert!(t.meets(b"a", b"b"));
    }

    #[test]
    fn uncovered_drops_what_a_tombstone_deletes() {
        let entry = |key: &str, seq| Entry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            seq,
            value: Some(Bytes::from_static(b"v")),
            expire_at_ms: 0,
        };
        let source = VecEntryIter::new(vec![entry("a", 1), entry("b", 2), entry("c", 20)]);
        let mut kept = Uncovered::new(source, vec![tombstone("a", "z", 10)]);
        assert_eq!(kept.next_entry().unwrap(), Some(entry("c", 20)));
        assert_eq!(kept.next_entry().unwrap(), None);
    }

    #[test]
    fn compaction_outputs_stay_dirty_only_for_tombstones_it_did_not_apply() {
        let before = vec![
            InstalledTombstone {
                tombstone: tombstone("a", "m", 5),
                dirty: vec![1, 2],
            },
            InstalledTombstone {
                tombstone: tombstone("m", "z", 6),
                dirty: vec![2, 3],
            },
        ];
        let applied_first = after_compaction(&before, &[1, 2], &[7], &[5]);
        assert_eq!(applied_first.len(), 1, "the first is retired");
        assert_eq!(applied_first[0].dirty, vec![3, 7]);
        let unrelated = after_compaction(&before, &[9], &[10], &[]);
        assert_eq!(*unrelated, before);
    }

    #[test]
    fn the_reclaim_task_rewrites_level_zero_into_one_and_deeper_levels_in_place() {
        let mut set = SegmentSet {
            range_tombstones: Arc::new(vec![InstalledTombstone {
                tombstone: tombstone("a", "z", 5),
                dirty: vec![4],
            }]),
            ..SegmentSet::default()
        };
        let levels = vec![vec![], vec![meta(3, "a", "c"), meta(4, "d", "f")], vec![]];
        let task = reclaim_task(&levels, &set).unwrap();
        assert_eq!((task.inputs, task.output_level), (vec![4], 1));
        assert!(task.drop_tombstones);
        set.range_tombstones = Arc::new(vec![InstalledTombstone {
            tombstone: tombstone("a", "z", 5),
            dirty: vec![8],
        }]);
        let levels = vec![
            vec![meta(9, "x", "y"), meta(8, "a", "b")],
            vec![meta(3, "a", "c"), meta(4, "d", "f")],
            vec![meta(5, "a", "z")],
        ];
        let task = reclaim_task(&levels, &set).unwrap();
        assert_eq!((task.inputs, task.output_level), (vec![9, 8, 3, 4], 1));
        assert!(!task.drop_tombstones, "level 2 meets the inputs");
        set.range_tombstones = Arc::new(Vec::new());
        assert_eq!(reclaim_task(&levels, &set), None);
    }

    #[test]
    fn the_reclaim_task_never_merges_across_a_clean_segment() {
        let set = SegmentSet {
            range_tombstones: Arc::new(vec![InstalledTombstone {
                tombstone: tombstone("a", "z", 5),
                dirty: vec![3, 5],
            }]),
            ..SegmentSet::default()
        };
        let levels = vec![
            vec![],
            vec![meta(3, "a", "c"), meta(4, "d", "f"), meta(5, "g", "i")],
        ];
        let task = reclaim_task(&levels, &set).unwrap();
        assert_eq!((task.inputs, task.output_level), (vec![3], 1));
    }

    #[test]
    fn manifest_records_round_trip_and_forget_removed_segments() {
        let installed = vec![InstalledTombstone {
            tombstone: tombstone("a", "", 5),
            dirty: vec![1, 2],
        }];
        let manifest = storage::Manifest {
            segments: vec![meta(2, "a", "b")],
            range_tombstones: to_manifest(&installed),
            ..Default::default()
        };
        let back = from_manifest(&manifest);
        assert_eq!(back[0].tombstone, installed[0].tombstone);
        assert_eq!(back[0].dirty, vec![2]);
    }

    #[test]
    fn wal_range_deletes_follow_the_batch_mutations() {
        use prost::Message;
        let mut out = Vec::new();
        let puts = vec![super::super::batch::Mutation::new(
            Bytes::from("k"),
            Some(Bytes::from("v")),
        )];
        super::super::batch::encode_wal_batch(7, &puts, &mut out);
        super::super::batch::encode_wal_range_deletes(
            &[(Bytes::from("a"), Bytes::from("b"))],
            &mut out,
        );
        let batch = storage::WalBatch::decode(out.as_slice()).unwrap();
        assert_eq!(batch.first_seq, 7);
        assert_eq!(batch.mutations.len(), 2);
        assert!(!batch.mutations[0].range_delete);
        assert!(batch.mutations[1].range_delete);
        assert_eq!(batch.mutations[1].range_end, Bytes::from("b"));
    }
}
