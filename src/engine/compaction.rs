//! The compaction policy: pure functions from the live segment metadata to a
//! task, testable with no I/O. The compactor actor only executes the task.
//!
//! The policy is leveled, as in LevelDB. Level 0 takes flushed memtables;
//! once it holds `l0_compaction_trigger` segments, all of them and the
//! level-1 segments they overlap are merged into level 1. Level `n >= 1` has a
//! byte budget (`level1_bytes * level_size_multiplier^(n-1)`); past it, one
//! of its segments and the overlapping segments of level `n+1` are merged
//! into level `n+1`. The segment chosen is the one whose overlap with level
//! `n+1` is smallest relative to its own size (RocksDB's "min overlapping
//! ratio" priority; ties go to the oldest): it moves the most bytes down per
//! byte rewritten, which keeps write amplification low. Leveled compaction keeps reads to one segment per level and
//! space overhead near 1.1x, at the price of rewriting data more often than
//! size-tiered compaction would: the right trade for a read-heavy store with
//! bounded disk.
//!
//! A tombstone is dropped when the output level is the deepest level whose
//! key span could hold an older version of the key.

use bytes::Bytes;

use super::version::MAX_LEVELS;
use crate::Options;
use crate::proto::storage::SegmentMeta;

/// One merge to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionTask {
    /// File numbers of the segments merged.
    pub inputs: Vec<u64>,
    /// The level the output segments go to.
    pub output_level: u32,
    /// Whether tombstones can be dropped: no deeper segment may hold the key.
    pub drop_tombstones: bool,
}

/// The byte budget of level `level` (>= 1).
pub fn level_budget(options: &Options, level: usize) -> u64 {
    let exponent = u32::try_from(level.saturating_sub(1)).unwrap_or(u32::MAX);
    options
        .level1_bytes
        .saturating_mul(options.level_size_multiplier.saturating_pow(exponent))
}

/// The next compaction to run, if any level is over its trigger.
pub fn pick(levels: &[Vec<SegmentMeta>], options: &Options) -> Option<CompactionTask> {
    let level0 = levels.first().map_or(&[][..], Vec::as_slice);
    if level0.len() >= options.l0_compaction_trigger.max(1) {
        return Some(merge_into_next(levels, level0.to_vec(), 0));
    }
    for level in 1..MAX_LEVELS - 1 {
        let segments = levels.get(level).map_or(&[][..], Vec::as_slice);
        let bytes: u64 = segments.iter().map(|s| s.file_size).sum();
        if bytes > level_budget(options, level) {
            let next = levels.get(level + 1).map_or(&[][..], Vec::as_slice);
            let cheapest = segments
                .iter()
                .min_by_key(|s| (overlap_ratio(s, next), s.file_number))?;
            return Some(merge_into_next(levels, vec![cheapest.clone()], level));
        }
    }
    None
}

/// Level 0 merged into level 1 before its trigger because gets have paid
/// for it: `checks` segment checks beyond the first since the set last
/// changed, at least `options.read_compaction_checks` and at least the
/// bytes of the segments the merge rewrites. Only when level 0 stands in a
/// get's way: two or more segments, or one above a level 1.
pub fn read_triggered(
    levels: &[Vec<SegmentMeta>],
    options: &Options,
    checks: u64,
) -> Option<CompactionTask> {
    let level0 = levels.first().map_or(&[][..], Vec::as_slice);
    let level1 = levels.get(1).map_or(&[][..], Vec::as_slice);
    if options.read_compaction_checks == 0 || level0.is_empty() {
        return None;
    }
    if level0.len() < 2 && level1.is_empty() {
        return None;
    }
    let task = merge_into_next(levels, level0.to_vec(), 0);
    let rewritten: u64 = levels
        .iter()
        .take(2)
        .flatten()
        .filter(|s| task.inputs.contains(&s.file_number))
        .map(|s| s.file_size)
        .sum();
    (checks >= options.read_compaction_checks.max(rewritten)).then_some(task)
}

/// The inputs of `task` relabelled to its output level, if the task can be
/// done without rewriting them: all of them on the level just above it, no
/// two overlapping each other and none overlapping a segment of the output
/// level. What a sequential load makes (RocksDB's "trivial move"). Their
/// tombstones stay, which is always correct; the compactor does not move for
/// `full`, which promises to drop them.
pub fn trivial_move(
    levels: &[Vec<SegmentMeta>],
    task: &CompactionTask,
) -> Option<Vec<SegmentMeta>> {
    let output = usize::try_from(task.output_level).ok()?;
    let upper = levels.get(output.checked_sub(1)?)?;
    let mut moved = task
        .inputs
        .iter()
        .map(|number| upper.iter().find(|s| s.file_number == *number).cloned())
        .collect::<Option<Vec<SegmentMeta>>>()?;
    moved.sort_by(|a, b| a.smallest_key.cmp(&b.smallest_key));
    let apart = moved
        .windows(2)
        .all(|pair| matches!(pair, [a, b] if a.largest_key < b.smallest_key));
    let below = levels.get(output).map_or(&[][..], Vec::as_slice);
    let clear = below.iter().all(|s| {
        !moved
            .iter()
            .any(|m| overlaps(s, &m.smallest_key, &m.largest_key))
    });
    if moved.is_empty() || !apart || !clear {
        return None;
    }
    for segment in &mut moved {
        segment.level = task.output_level;
    }
    Some(moved)
}

/// Compaction debt: bytes the policy still has to move down before no level
/// is over its trigger — all of level 0 once it holds
/// `l0_compaction_trigger` segments, plus each deeper level's bytes past
/// its budget. 0 when compaction has caught up.
pub fn debt_bytes(levels: &[Vec<SegmentMeta>], options: &Options) -> u64 {
    let bytes = |segments: &[SegmentMeta]| segments.iter().map(|s| s.file_size).sum::<u64>();
    let level0 = levels.first().map_or(&[][..], Vec::as_slice);
    let mut debt = if level0.len() >= options.l0_compaction_trigger.max(1) {
        bytes(level0)
    } else {
        0
    };
    for (level, segments) in levels.iter().enumerate().skip(1) {
        debt += bytes(segments).saturating_sub(level_budget(options, level));
    }
    debt
}

/// A rewrite that takes expired values off the disk without anyone reading
/// them: the first segment (shallowest level first) holding a value whose
/// expiry is at or before `now_ms`. Level 0 merges into level 1 as when it
/// is full; a deeper segment is rewritten in place, alone, so the output
/// stays inside its span. The merge turns expired values into tombstones
/// (dropped where nothing deeper can hold the key), so the output is not
/// due again. `None` if no segment is due.
pub fn expired(levels: &[Vec<SegmentMeta>], now_ms: u64) -> Option<CompactionTask> {
    let due = |s: &&SegmentMeta| s.earliest_expire_at_ms != 0 && s.earliest_expire_at_ms <= now_ms;
    let (level, segment) = levels
        .iter()
        .enumerate()
        .find_map(|(level, segments)| segments.iter().find(due).map(|s| (level, s)))?;
    if level == 0 {
        return Some(merge_into_next(levels, levels.first()?.clone(), 0));
    }
    let deeper_overlap = levels
        .iter()
        .skip(level + 1)
        .flatten()
        .any(|s| overlaps(s, &segment.smallest_key, &segment.largest_key));
    Some(CompactionTask {
        inputs: vec![segment.file_number],
        output_level: u32::try_from(level).unwrap_or(u32::MAX),
        drop_tombstones: !deeper_overlap,
    })
}

/// Everything into one sorted run on the deepest level in use (at least 1),
/// dropping tombstones: what `Db::compact` asks for. `None` if there is
/// nothing to merge.
pub fn full(levels: &[Vec<SegmentMeta>]) -> Option<CompactionTask> {
    let inputs: Vec<u64> = levels.iter().flatten().map(|s| s.file_number).collect();
    let deepest = levels.iter().rposition(|level| !level.is_empty())?;
    Some(CompactionTask {
        inputs,
        output_level: u32::try_from(deepest.max(1)).unwrap_or(1),
        drop_tombstones: true,
    })
}

fn merge_into_next(
    levels: &[Vec<SegmentMeta>],
    upper: Vec<SegmentMeta>,
    level: usize,
) -> CompactionTask {
    let output_level = level + 1;
    let (lo, hi) = span(&upper);
    let mut merged = upper;
    merged.extend(
        levels
            .get(output_level)
            .into_iter()
            .flatten()
            .filter(|s| overlaps(s, &lo, &hi))
            .cloned(),
    );
    let inputs: Vec<u64> = merged.iter().map(|s| s.file_number).collect();
    // Tombstones may go only if no deeper segment overlaps ANY input: the
    // lower inputs can span more keys than the upper ones.
    let (lo, hi) = span(&merged);
    let deeper_overlap = levels
        .iter()
        .skip(output_level + 1)
        .flatten()
        .any(|s| overlaps(s, &lo, &hi));
    CompactionTask {
        inputs,
        output_level: u32::try_from(output_level).unwrap_or(u32::MAX),
        drop_tombstones: !deeper_overlap,
    }
}

/// Bytes of `next` (the level below) that `segment` overlaps, per 1024 bytes
/// of `segment`: what pushing it down rewrites for what it moves.
fn overlap_ratio(segment: &SegmentMeta, next: &[SegmentMeta]) -> u64 {
    let overlapping: u64 = next
        .iter()
        .filter(|s| overlaps(s, &segment.smallest_key, &segment.largest_key))
        .map(|s| s.file_size)
        .sum();
    overlapping.saturating_mul(1024) / segment.file_size.max(1)
}

fn span(segments: &[SegmentMeta]) -> (Bytes, Bytes) {
    let lo = segments
        .iter()
        .map(|s| &s.smallest_key)
        .min()
        .cloned()
        .unwrap_or_default();
    let hi = segments
        .iter()
        .map(|s| &s.largest_key)
        .max()
        .cloned()
        .unwrap_or_default();
    (lo, hi)
}

fn overlaps(segment: &SegmentMeta, lo: &Bytes, hi: &Bytes) -> bool {
    segment.smallest_key <= *hi && *lo <= segment.largest_key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_counts_a_full_level_0_and_bytes_over_budgets() {
        let mut options = Options::new("/unused");
        options.l0_compaction_trigger = 2;
        options.level1_bytes = 100;
        options.level_size_multiplier = 10;
        let l0 = vec![meta(9, 0, "a", "z", 30)];
        let l1 = vec![meta(1, 1, "a", "m", 80), meta(2, 1, "n", "z", 70)];
        assert_eq!(debt_bytes(&[l0.clone(), l1.clone()], &options), 50);
        let l0_full = vec![meta(9, 0, "a", "z", 30), meta(10, 0, "a", "z", 5)];
        assert_eq!(debt_bytes(&[l0_full, l1], &options), 85);
        assert_eq!(
            debt_bytes(&[l0, vec![meta(1, 1, "a", "z", 100)]], &options),
            0
        );
    }

    fn meta(number: u64, level: u32, lo: &str, hi: &str, size: u64) -> SegmentMeta {
        SegmentMeta {
            file_number: number,
            level,
            smallest_key: Bytes::copy_from_slice(lo.as_bytes()),
            largest_key: Bytes::copy_from_slice(hi.as_bytes()),
            file_size: size,
            entry_count: 1,
            max_seq: number,
            earliest_expire_at_ms: 0,
        }
    }

    fn options() -> Options {
        let mut options = Options::new("/unused");
        options.l0_compaction_trigger = 2;
        options.level1_bytes = 100;
        options
    }

    #[test]
    fn gets_that_paid_for_level_0_merge_it_early() {
        let mut options = options();
        options.l0_compaction_trigger = 12;
        options.level1_bytes = 1 << 20;
        options.read_compaction_checks = 1000;
        let l0 = vec![meta(9, 0, "c", "k", 300), meta(8, 0, "a", "e", 200)];
        let l1 = vec![meta(1, 1, "a", "d", 900), meta(2, 1, "m", "z", 5000)];
        let levels = [l0.clone(), l1.clone()];
        assert!(pick(&levels, &options).is_none(), "below the trigger");
        // The merge rewrites 300 + 200 + 900 bytes (file 2 does not
        // overlap): the checks must pass that and the option.
        assert!(read_triggered(&levels, &options, 999).is_none());
        assert!(read_triggered(&levels, &options, 1399).is_none());
        let task = read_triggered(&levels, &options, 1400).unwrap();
        assert_eq!(task.inputs, [9, 8, 1]);
        assert_eq!(task.output_level, 1);
        // Off.
        options.read_compaction_checks = 0;
        assert!(read_triggered(&levels, &options, u64::MAX).is_none());
    }

    #[test]
    fn read_triggered_merges_only_what_stands_in_a_gets_way() {
        let options = options();
        let one = vec![meta(9, 0, "a", "z", 10)];
        // One level-0 segment and nothing under it: a get asks one segment.
        assert!(read_triggered(std::slice::from_ref(&one), &options, u64::MAX).is_none());
        assert!(read_triggered(&[Vec::new(), one.clone()], &options, u64::MAX).is_none());
        // One above a level 1: merged, with the level-1 segments it overlaps.
        let levels = [one, vec![meta(1, 1, "a", "z", 10)]];
        let task = read_triggered(&levels, &options, u64::MAX).unwrap();
        assert_eq!(task.inputs, [9, 1]);
    }

    #[test]
    fn nothing_to_do_below_the_triggers() {
        let levels = vec![
            vec![meta(1, 0, "a", "b", 10)],
            vec![meta(2, 1, "a", "z", 50)],
        ];
        assert_eq!(pick(&levels, &options()), None);
    }

    #[test]
    fn full_level0_merges_with_overlapping_level1_only() {
        let levels = vec![
            vec![meta(5, 0, "c", "e", 10), meta(4, 0, "d", "f", 10)],
            vec![
                meta(1, 1, "a", "b", 10),
                meta(2, 1, "e", "g", 10),
                meta(3, 1, "x", "z", 10),
            ],
        ];
        let task = pick(&levels, &options()).unwrap();
        assert_eq!(task.inputs, vec![5, 4, 2]);
        assert_eq!(task.output_level, 1);
        assert!(task.drop_tombstones);
    }

    #[test]
    fn tombstones_kept_when_a_deeper_level_overlaps() {
        let levels = vec![
            vec![meta(5, 0, "c", "e", 10), meta(4, 0, "d", "f", 10)],
            vec![],
            vec![meta(1, 2, "a", "d", 10)],
        ];
        let task = pick(&levels, &options()).unwrap();
        assert!(!task.drop_tombstones);
    }

    #[test]
    fn tombstones_kept_when_a_lower_input_reaches_a_deeper_segment() {
        let levels = vec![
            vec![meta(5, 0, "c", "d", 10), meta(4, 0, "c", "d", 10)],
            vec![meta(2, 1, "a", "m", 10)],
            vec![meta(1, 2, "k", "l", 10)],
        ];
        let task = pick(&levels, &options()).unwrap();
        assert_eq!(task.inputs, vec![5, 4, 2]);
        assert!(
            !task.drop_tombstones,
            "level 2 holds keys inside the level-1 input"
        );
    }

    #[test]
    fn level_over_budget_pushes_down_the_segment_with_the_least_overlap() {
        let levels = vec![
            vec![],
            vec![
                meta(7, 1, "a", "c", 60),
                meta(3, 1, "d", "f", 60),
                meta(8, 1, "g", "z", 60),
            ],
            vec![
                meta(1, 2, "b", "c", 50),
                meta(2, 2, "e", "e", 10),
                meta(4, 2, "h", "j", 40),
                meta(5, 2, "x", "y", 40),
            ],
        ];
        // Overlap per byte moved: 7 -> 50/60, 3 -> 10/60, 8 -> 80/60.
        let task = pick(&levels, &options()).unwrap();
        assert_eq!(task.inputs, vec![3, 2]);
        assert_eq!(task.output_level, 2);
    }

    #[test]
    fn equal_overlap_pushes_the_oldest_segment_down() {
        let levels = vec![
            vec![],
            vec![meta(7, 1, "a", "c", 80), meta(3, 1, "d", "f", 80)],
            vec![meta(1, 2, "b", "b", 10), meta(2, 2, "e", "e", 10)],
        ];
        let task = pick(&levels, &options()).unwrap();
        assert_eq!(task.inputs, vec![3, 2]);
    }

    #[test]
    fn disjoint_inputs_with_nothing_below_move_without_a_rewrite() {
        let levels = vec![
            vec![meta(5, 0, "e", "f", 10), meta(4, 0, "a", "b", 10)],
            vec![meta(1, 1, "x", "z", 10)],
        ];
        let task = pick(&levels, &options()).unwrap();
        assert_eq!(task.inputs, vec![5, 4]);
        let moved = trivial_move(&levels, &task).unwrap();
        let numbers: Vec<(u64, u32)> = moved.iter().map(|s| (s.file_number, s.level)).collect();
        assert_eq!(numbers, vec![(4, 1), (5, 1)]);
    }

    #[test]
    fn overlapping_inputs_are_rewritten() {
        let overlapping_each_other = vec![
            vec![meta(5, 0, "a", "f", 10), meta(4, 0, "b", "c", 10)],
            vec![],
        ];
        let task = pick(&overlapping_each_other, &options()).unwrap();
        assert_eq!(trivial_move(&overlapping_each_other, &task), None);
        let overlapping_below = vec![
            vec![meta(5, 0, "a", "b", 10), meta(4, 0, "c", "d", 10)],
            vec![meta(1, 1, "d", "e", 10)],
        ];
        let task = pick(&overlapping_below, &options()).unwrap();
        assert_eq!(task.inputs, vec![5, 4, 1]);
        assert_eq!(trivial_move(&overlapping_below, &task), None);
        // Even when handed a task that left the overlapping segment out.
        let partial = CompactionTask {
            inputs: vec![5, 4],
            output_level: 1,
            drop_tombstones: true,
        };
        assert_eq!(trivial_move(&overlapping_below, &partial), None);
    }

    #[test]
    fn a_segment_with_a_due_expiry_is_rewritten_in_place_or_merged_down() {
        let expiring = |mut m: SegmentMeta, at| {
            m.earliest_expire_at_ms = at;
            m
        };
        let levels = vec![
            vec![meta(9, 0, "a", "b", 1)],
            vec![
                meta(3, 1, "a", "c", 1),
                expiring(meta(4, 1, "d", "f", 1), 50),
            ],
            vec![meta(1, 2, "x", "z", 1)],
        ];
        assert_eq!(expired(&levels, 49), None, "not due yet");
        let task = expired(&levels, 50).unwrap();
        assert_eq!((task.inputs, task.output_level), (vec![4], 1));
        assert!(task.drop_tombstones, "nothing deeper overlaps d..f");
        let levels = vec![
            vec![
                expiring(meta(9, 0, "a", "b", 1), 10),
                meta(8, 0, "c", "d", 1),
            ],
            vec![meta(3, 1, "a", "a", 1), meta(4, 1, "x", "z", 1)],
        ];
        let task = expired(&levels, 10).unwrap();
        assert_eq!((task.inputs, task.output_level), (vec![9, 8, 3], 1));
    }

    #[test]
    fn full_compaction_targets_the_deepest_level() {
        let levels = vec![
            vec![meta(9, 0, "a", "b", 1)],
            vec![],
            vec![meta(1, 2, "a", "z", 1)],
        ];
        let task = full(&levels).unwrap();
        assert_eq!(task.output_level, 2);
        assert_eq!(task.inputs.len(), 2);
        assert!(task.drop_tombstones);
        assert_eq!(full(&[vec![], vec![]]), None);
    }
}
