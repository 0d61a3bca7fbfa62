//! Replaying the WALs at open, and the evidence they give about what the
//! manifest says.
//!
//! The WALs present in the directory must agree with the manifest:
//!
//! - A WAL numbered below the manifest's `oldest_live_wal` was flushed
//!   before the manifest was written; its writes must all be at or below
//!   the manifest's `flushed_seq`. One that holds a later write is not
//!   obsolete, and the manifest is not the one that goes with it.
//! - The live WALs (the rest), read in file-number order, must continue the
//!   sequence exactly where `flushed_seq` ends: every write past it belongs
//!   to a record whose first sequence number is the one after the last
//!   write before it. A jump means a WAL (or records of one) is missing.
//! - An empty record is a *resume marker*, written first in the WAL the
//!   engine starts after the disk was full under the old one (see
//!   `engine/memtable/wal_full.rs`): its `first_seq` is the first number no
//!   acknowledged write has. Every write before it must be present; the
//!   numbers from it up to the next record's were burned by the failed
//!   group, so that one jump is allowed.
//! - Since a database always keeps a WAL open, a manifest with an
//!   `oldest_live_wal` and no WAL at or above that number means the live
//!   WAL was deleted. A manifest that says `oldest_live_wal_exists` names
//!   that WAL exactly, and it must be present: deleted, it may hold the
//!   only copy of writes past `flushed_seq`, and when every WAL after it is
//!   empty (a crash just after a WAL rotation) the sequence shows no hole.
//!
//! - A WAL's identity record (`engine/wal_identity.rs`), if it has one,
//!   must name this database and the WAL's own number. If it says which
//!   write the WAL was started after (`follows_seq`), the segments and the
//!   WALs before a live one must reach that write: an older WAL cut at a
//!   record boundary, emptied or deleted beside a newer WAL that holds no
//!   write yet leaves no hole in the sequence, only this.
//!
//! Any disagreement is refused with [`Error::Corruption`] naming the file,
//! so that open never serves a database with a hole in it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message as _;

use super::batch::{LoggedWrite, logged_writes};
use super::inventory::MAX_SEQUENCE;
use super::memtable::MemTable;
use super::range_delete::RangeTombstone;
use super::wal_identity::{WalIdentity, check_identity, is_identity};
use crate::format::wal::read_wal;
use crate::format::wal_file_name;
use crate::fs::FileSystem;
use crate::proto::storage::{Manifest, WalBatch};
use crate::{Error, Result};

/// How often a long replay says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// What replaying the WALs gave.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every write past the manifest's `flushed_seq`.
    pub memtable: MemTable,
    /// The highest sequence number in any live WAL (0 if none).
    pub last_seq: u64,
    /// WALs that hold only flushed writes and that the manifest calls obsolete.
    pub obsolete: Vec<u64>,
    /// The live WALs, whose writes are now in `memtable`.
    pub live: Vec<u64>,
    /// The range deletes past the manifest's `flushed_seq`.
    pub range_tombstones: Vec<RangeTombstone>,
}

/// The sequence-number checks, over one record at a time, with no I/O.
#[derive(Debug)]
pub struct SeqChain {
    flushed_seq: u64,
    /// The sequence number the next write past `flushed_seq` must have.
    expected: u64,
    /// A resume marker was just read: the next record may start later.
    may_jump: bool,
}

/// What to do with one WAL record.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordFate {
    /// Every write in it is already in a segment.
    Flushed,
    /// Apply its writes numbered past `flushed_seq`.
    Apply,
}

impl SeqChain {
    /// A chain that continues after `flushed_seq`.
    pub fn after(flushed_seq: u64) -> Self {
        SeqChain {
            flushed_seq,
            expected: flushed_seq.saturating_add(1),
            may_jump: false,
        }
    }

    /// Checks a record of `count` writes starting at `first_seq` from a
    /// live WAL; `Err` says what is wrong.
    pub fn live_record(&mut self, first_seq: u64, count: u64) -> Result<RecordFate, String> {
        let Some(last_seq) = record_last_seq(first_seq, count)? else {
            return self.marker(first_seq);
        };
        let may_jump = std::mem::take(&mut self.may_jump);
        if last_seq <= self.flushed_seq {
            return Ok(RecordFate::Flushed);
        }
        if first_seq > self.expected && !may_jump {
            return Err(format!(
                "writes {}..={} are missing: this record starts at {first_seq} \
                 (a WAL between the MANIFEST and this one was deleted or renamed)",
                self.expected,
                first_seq - 1
            ));
        }
        if first_seq < self.expected && first_seq > self.flushed_seq {
            return Err(format!(
                "record starts at sequence {first_seq}, but the writes before it \
                 already reached {} (WALs out of order or duplicated)",
                self.expected - 1
            ));
        }
        self.expected = last_seq + 1;
        Ok(RecordFate::Apply)
    }

    /// A resume marker: every write before `first_seq` must be present,
    /// unless the record before was a marker too. Then the numbers between
    /// the two were burned by a group that failed as soon as writes
    /// resumed (the disk filled again), and they are passed over.
    fn marker(&mut self, first_seq: u64) -> Result<RecordFate, String> {
        if self.may_jump && first_seq > self.expected {
            if first_seq > MAX_SEQUENCE {
                return Err(format!("resume marker at {first_seq}, past {MAX_SEQUENCE}"));
            }
            self.expected = first_seq;
            return Ok(RecordFate::Flushed);
        }
        if first_seq > self.expected {
            return Err(format!(
                "writes {}..={} are missing before a resume marker \
                 (a WAL before this one was deleted or renamed)",
                self.expected,
                first_seq - 1
            ));
        }
        self.may_jump = true;
        Ok(RecordFate::Flushed)
    }

    /// Checks the identity record of a live WAL created after write
    /// `follows_seq` (0: it does not say): the segments and the WALs before
    /// it must hold every write up to there.
    pub fn wal_follows(&self, follows_seq: u64) -> Result<(), String> {
        let last = self.last_seq();
        if follows_seq <= last {
            return Ok(());
        }
        Err(format!(
            "writes {}..={follows_seq} are missing: this WAL was started after write              {follows_seq}, but the segments and the WALs before it end at {last} (an              older WAL was cut short, emptied or deleted)",
            last + 1
        ))
    }

    /// Checks a record from a WAL the manifest calls obsolete.
    pub fn obsolete_record(&self, first_seq: u64, count: u64) -> Result<(), String> {
        match record_last_seq(first_seq, count)? {
            Some(last_seq) if last_seq > self.flushed_seq => Err(format!(
                "this WAL is older than the MANIFEST's oldest live WAL but holds \
                 write {last_seq}, past the MANIFEST's flushed sequence {}: the \
                 MANIFEST does not belong with this WAL",
                self.flushed_seq
            )),
            _ => Ok(()),
        }
    }

    /// The highest sequence number applied so far (`flushed_seq` if none).
    pub fn last_seq(&self) -> u64 {
        self.expected - 1
    }
}

/// The last sequence number of a record, `None` for an empty one.
fn record_last_seq(first_seq: u64, count: u64) -> Result<Option<u64>, String> {
    if count == 0 {
        return Ok(None);
    }
    if first_seq == 0 {
        return Err("record has sequence number 0".into());
    }
    match first_seq.checked_add(count - 1) {
        Some(last_seq) if last_seq <= MAX_SEQUENCE => Ok(Some(last_seq)),
        _ => Err(format!(
            "record's sequence numbers go past {MAX_SEQUENCE}, more writes than a database makes"
        )),
    }
}

/// Replays `wals` (ascending numbers) against `manifest`; see the module doc.
pub fn replay_wals(
    fs: &dyn FileSystem,
    directory: &Path,
    wals: &[u64],
    manifest: &Manifest,
) -> Result<Replayed> {
    // Refused after the identity checks (a renamed WAL is best named as
    // such), and in place of the sequence gap it leaves.
    let oldest_missing =
        manifest.oldest_live_wal_exists && !wals.contains(&manifest.oldest_live_wal);
    let mut replayed = Replayed::default();
    let mut chain = SeqChain::after(manifest.flushed_seq);
    let mut progress = Progress::new(fs, directory, wals);
    for &number in wals {
        let path = directory.join(wal_file_name(number));
        let obsolete = number < manifest.oldest_live_wal;
        let contents = read_wal(fs, &path)?;
        for (index, record) in contents.records.iter().enumerate() {
            let offset = contents.record_offsets.get(index).copied().unwrap_or(0);
            let batch = WalBatch::decode(record.as_slice())
                .map_err(|e| Error::corruption(&path, offset, format!("not a WAL batch: {e}")))?;
            let count = batch.mutations.len() as u64;
            let corrupt = |detail: String| Error::corruption(&path, offset, detail);
            if is_identity(&batch) {
                let ours = WalIdentity {
                    database_id: manifest.database_id,
                    wal_lineage: manifest.wal_lineage,
                };
                check_identity(&batch, number, ours).map_err(corrupt)?;
                if !obsolete {
                    chain.wal_follows(batch.follows_seq).map_err(corrupt)?;
                }
                progress.record_done(record.len());
                continue;
            }
            let broken = |detail: String| match oldest_missing {
                true => missing_live_wal(directory, manifest),
                false => corrupt(detail),
            };
            if obsolete {
                chain
                    .obsolete_record(batch.first_seq, count)
                    .map_err(broken)?;
            } else if chain.live_record(batch.first_seq, count).map_err(broken)?
                == RecordFate::Apply
            {
                apply(&mut replayed, batch, manifest.flushed_seq);
            }
            progress.record_done(record.len());
        }
        if obsolete {
            replayed.obsolete.push(number);
        } else {
            replayed.live.push(number);
        }
    }
    if oldest_missing || (manifest.oldest_live_wal > 0 && replayed.live.is_empty()) {
        return Err(missing_live_wal(directory, manifest));
    }
    progress.finish();
    replayed.last_seq = chain.last_seq();
    Ok(replayed)
}

/// The refusal when the manifest's oldest live WAL (exactly, or the
/// oldest at or above that number) is not in the directory.
fn missing_live_wal(directory: &Path, manifest: &Manifest) -> Error {
    let which = if manifest.oldest_live_wal_exists {
        format!("WAL {} is the oldest live one", manifest.oldest_live_wal)
    } else {
        format!("WAL {} or a later one is live", manifest.oldest_live_wal)
    };
    Error::corruption(
        directory.join(wal_file_name(manifest.oldest_live_wal)),
        0,
        format!(
            "missing: the MANIFEST says {which}, and no such WAL exists (writes after \
             sequence {} may be lost)",
            manifest.flushed_seq
        ),
    )
}

/// Puts a batch's writes past `flushed_seq` into the replayed memtable and
/// its range deletes into the replayed list.
fn apply(replayed: &mut Replayed, batch: WalBatch, flushed_seq: u64) {
    for write in logged_writes(batch) {
        match write {
            LoggedWrite::Range(tombstone) if tombstone.seq > flushed_seq => {
                replayed.range_tombstones.push(tombstone);
            }
            LoggedWrite::Key {
                seq,
                key,
                value,
                expire_at_ms,
            } if seq > flushed_seq => {
                replayed
                    .memtable
                    .apply_expiring(key, seq, value, expire_at_ms);
            }
            _ => {}
        }
    }
}

/// Logs how far a replay got, at INFO, every few seconds and at the end.
struct Progress {
    total_bytes: u64,
    done_bytes: u64,
    records: u64,
    started: Instant,
    last_report: Instant,
    directory: PathBuf,
}

impl Progress {
    fn new(fs: &dyn FileSystem, directory: &Path, wals: &[u64]) -> Self {
        let size = |n: &u64| {
            let path = directory.join(wal_file_name(*n));
            fs.open(&path).map_or(0, |file| file.len())
        };
        let total_bytes = wals.iter().map(size).sum();
        if total_bytes > 0 {
            log::info!(
                "replaying {} WAL(s), {} bytes, in {}",
                wals.len(),
                total_bytes,
                directory.display()
            );
        }
        let now = Instant::now();
        Progress {
            total_bytes,
            done_bytes: 0,
            records: 0,
            started: now,
            last_report: now,
            directory: directory.to_path_buf(),
        }
    }

    fn record_done(&mut self, bytes: usize) {
        self.done_bytes += bytes as u64;
        self.records += 1;
        if self.last_report.elapsed() >= PROGRESS_EVERY {
            self.last_report = Instant::now();
            log::info!(
                "replayed {} of {} WAL bytes ({} records) in {}",
                self.done_bytes,
                self.total_bytes,
                self.records,
                self.directory.display()
            );
        }
    }

    fn finish(&self) {
        if self.records > 0 {
            log::info!(
                "replayed {} WAL records ({} bytes) in {:.1?}",
                self.records,
                self.done_bytes,
                self.started.elapsed()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_continue_the_flushed_sequence() {
        let mut chain = SeqChain::after(10);
        assert_eq!(chain.live_record(5, 3), Ok(RecordFate::Flushed));
        assert_eq!(chain.live_record(11, 2), Ok(RecordFate::Apply));
        assert_eq!(chain.live_record(13, 1), Ok(RecordFate::Apply));
        assert_eq!(chain.live_record(14, 0), Ok(RecordFate::Flushed));
        assert_eq!(chain.last_seq(), 13);
    }

    /// A WAL started after write 9 (its identity says so) needs writes
    /// through 9 before it: a rotation's older WAL cut short is refused.
    #[test]
    fn a_wal_must_follow_the_writes_its_identity_names() {
        let mut chain = SeqChain::after(3);
        assert_eq!(chain.wal_follows(0), Ok(()), "0 says nothing");
        assert_eq!(chain.wal_follows(3), Ok(()), "flushed through 3");
        assert_eq!(chain.live_record(4, 6), Ok(RecordFate::Apply));
        assert_eq!(chain.wal_follows(9), Ok(()));
        let error = chain.wal_follows(12).unwrap_err();
        assert!(error.contains("writes 10..=12 are missing"), "{error}");
        // After a resume marker the WALs end just before it.
        assert_eq!(chain.live_record(10, 0), Ok(RecordFate::Flushed));
        assert_eq!(chain.wal_follows(9), Ok(()));
        assert!(chain.wal_follows(10).is_err());
    }

    #[test]
    fn a_gap_after_the_flushed_sequence_is_refused() {
        let mut chain = SeqChain::after(10);
        let error = chain.live_record(15, 1).unwrap_err();
        assert!(error.contains("11..=14 are missing"), "{error}");
    }

    #[test]
    fn a_resume_marker_allows_one_jump_over_burned_numbers() {
        let mut chain = SeqChain::after(0);
        assert_eq!(chain.live_record(1, 4), Ok(RecordFate::Apply));
        // The group 5..=7 failed (maybe half written); the new WAL says so.
        assert_eq!(chain.live_record(5, 0), Ok(RecordFate::Flushed));
        assert_eq!(chain.live_record(8, 2), Ok(RecordFate::Apply));
        assert!(chain.live_record(20, 1).is_err(), "only one jump");
        // A marker past what is present means a WAL is missing.
        let mut chain = SeqChain::after(0);
        assert_eq!(chain.live_record(1, 4), Ok(RecordFate::Apply));
        assert!(chain.live_record(9, 0).is_err());
    }

    /// The disk filled again as soon as writes resumed: a group failed
    /// between two markers (an outside probe found this refused at open).
    #[test]
    fn a_marker_after_a_marker_passes_over_the_numbers_between() {
        let mut chain = SeqChain::after(0);
        assert_eq!(chain.live_record(1, 4), Ok(RecordFate::Apply));
        assert_eq!(chain.live_record(5, 0), Ok(RecordFate::Flushed));
        // 5..=9 burned by a group that failed in the marker's WAL.
        assert_eq!(chain.live_record(10, 0), Ok(RecordFate::Flushed));
        assert_eq!(
            chain.last_seq(),
            9,
            "every number before 10 is accounted for"
        );
        assert_eq!(chain.live_record(14, 1), Ok(RecordFate::Apply));
        assert_eq!(chain.last_seq(), 14);
        // Only right after a marker: a marker past a record's end still
        // means a WAL is missing.
        assert!(chain.live_record(20, 0).is_err());
    }

    #[test]
    fn a_gap_between_records_is_refused() {
        let mut chain = SeqChain::after(0);
        assert_eq!(chain.live_record(1, 4), Ok(RecordFate::Apply));
        assert!(chain.live_record(9, 1).is_err());
    }

    #[test]
    fn records_out_of_order_are_refused() {
        let mut chain = SeqChain::after(0);
        assert_eq!(chain.live_record(1, 4), Ok(RecordFate::Apply));
        assert!(chain.live_record(3, 1).is_err());
    }

    #[test]
    fn a_record_straddling_the_flushed_sequence_applies() {
        let mut chain = SeqChain::after(10);
        assert_eq!(chain.live_record(9, 4), Ok(RecordFate::Apply));
        assert_eq!(chain.last_seq(), 12);
    }

    #[test]
    fn obsolete_wals_may_hold_only_flushed_writes() {
        let chain = SeqChain::after(10);
        assert!(chain.obsolete_record(1, 10).is_ok());
        assert!(chain.obsolete_record(8, 5).is_err());
        assert!(chain.obsolete_record(0, 0).is_ok());
    }

    #[test]
    fn sequence_zero_and_overflow_are_refused() {
        let mut chain = SeqChain::after(0);
        assert!(chain.live_record(0, 1).is_err());
        assert!(chain.live_record(u64::MAX, 2).is_err());
        assert!(chain.live_record(MAX_SEQUENCE, 2).is_err());
    }

    #[test]
    fn a_jump_after_a_marker_stays_below_the_sequence_bound() {
        let mut chain = SeqChain::after(5);
        assert_eq!(chain.live_record(6, 0), Ok(RecordFate::Flushed));
        assert!(chain.live_record(MAX_SEQUENCE + 1, 1).is_err());
        assert_eq!(chain.live_record(MAX_SEQUENCE, 1), Ok(RecordFate::Apply));
    }
}
