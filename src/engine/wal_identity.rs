//! Creating a WAL, and the identity record it starts with.
//!
//! A segment's footer says which database wrote it and under which number
//! (`format/sstable`), so open can tell a stray segment from a leftover of
//! its own. A WAL has no header of its own (`format/wal.rs`), so each one the
//! engine creates starts with an *identity record*: a `WalBatch` with no
//! mutations, sequence number 0, and `database_id` and `wal_number` set. It is
//! written and synced when the WAL is created, before its directory entry is
//! synced, so every WAL the engine starts holds at least this record.
//!
//! At open, [`check_identity`] refuses a WAL whose identity names another
//! database, or another number than its file name's: a WAL copied in from
//! another database, or renamed, would otherwise be replayed as this one's
//! after a crash (after a clean close, the manifest's `closed_at_seq`
//! catches most such swaps, but not all).
//!
//! The identity also carries the manifest's *WAL lineage*: a random number
//! made when a database first opens with one, and made afresh for each
//! checkpoint. A checkpoint keeps its source's database id (its segments
//! are the source's) and goes on numbering files from the same counter, so
//! without it a WAL written by a restored checkpoint, copied into the source
//! under its own name, would pass as the source's.
//!
//! And it says where the WALs before it end: `follows_seq`, the highest
//! sequence number written before the WAL was created, set only when every
//! write up to it was durable by then (a rotation syncs the old WAL first
//! unless the sync policy is `None`; open flushes what it replayed into a
//! segment). Replay (`replay.rs`) refuses a live WAL whose older WALs and
//! segments end before its `follows_seq`. Without it, a crash just after a
//! rotation left the new WAL empty, and an older WAL cut at a record
//! boundary opened without its last writes and with no error. Under `None`
//! it is 0: a power loss may legitimately take the old WAL's unsynced tail.
//!
//! Compatibility: WALs written before identity records have none and are
//! read as before, and so are identity records without `follows_seq`. A
//! build that predates identity records takes one for an empty resume
//! marker (`replay.rs`) and reads on: it replays the WAL's writes
//! correctly, but without the identity check, and it lets the next
//! record's sequence number jump as after a marker. A build that predates
//! `follows_seq` ignores the field.
//!
//! A crash while the identity record is written leaves a torn tail like any
//! other, in a WAL that holds no write.

use std::path::Path;

use prost::Message as _;

use crate::Result;
use crate::error::IoContext;
use crate::format::wal::WalWriter;
use crate::format::wal_file_name;
use crate::fs::FileSystem;
use crate::proto::storage::WalBatch;

/// Creates WAL `number` of database `database_id` in `directory`, writes
/// and syncs its identity record (saying that it follows write
/// `follows_seq`, 0 for unknown), and makes its directory entry durable.
///
/// # Errors
///
/// [`crate::Error::Io`] naming the file or directory whose call failed.
/// A WAL that could not be completed is removed again (best effort): it
/// holds no write.
pub fn create_wal(
    fs: &dyn FileSystem,
    directory: &Path,
    number: u64,
    identity: WalIdentity,
    follows_seq: u64,
) -> Result<WalWriter> {
    let path = directory.join(wal_file_name(number));
    let file = fs
        .create_log(&path)
        .context(|| format!("creating WAL {}", path.display()))?;
    let wal = WalWriter::new(file, path);
    let mut framed = Vec::new();
    WalWriter::encode_record(
        &identity_payload(identity, number, follows_seq),
        &mut framed,
    );
    // IMPORTANT: the new WAL's directory entry must be durable before the
    // manifest names it and before any write in it is acknowledged;
    // fdatasync of the file does not do that.
    let written = wal
        .append_encoded(&framed)
        .and_then(|()| wal.sync())
        .and_then(|()| {
            fs.sync_dir(directory)
                .context(|| format!("syncing directory {}", directory.display()))
        });
    if let Err(error) = written {
        let path = wal.path().to_path_buf();
        drop(wal);
        let _ = fs.remove_file(&path);
        return Err(error);
    }
    Ok(wal)
}

/// Whose a new WAL is: the database and the WAL lineage of its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalIdentity {
    pub database_id: u64,
    pub wal_lineage: u64,
}

/// The payload of WAL `number`'s identity record.
fn identity_payload(identity: WalIdentity, number: u64, follows_seq: u64) -> Vec<u8> {
    WalBatch {
        database_id: identity.database_id,
        wal_number: number,
        wal_lineage: identity.wal_lineage,
        follows_seq,
        ..WalBatch::default()
    }
    .encode_to_vec()
}

/// True for an identity record (see the module doc).
pub fn is_identity(batch: &WalBatch) -> bool {
    batch.database_id != 0 || batch.wal_number != 0
}

/// Checks the identity record `batch` read from WAL `number` against the
/// manifest's database id and WAL lineage (either 0: not recorded); `Err`
/// says what is wrong.
pub fn check_identity(batch: &WalBatch, number: u64, manifest: WalIdentity) -> Result<(), String> {
    if !batch.mutations.is_empty() || batch.first_seq != 0 {
        return Err("a record that both names a WAL and holds writes".into());
    }
    let database_id = manifest.database_id;
    if database_id != 0 && batch.database_id != database_id {
        return Err(format!(
            "this WAL belongs to database {:016x}, this one is {database_id:016x}: it was \
             copied in from another database; move it out of the directory",
            batch.database_id
        ));
    }
    let lineage = manifest.wal_lineage;
    if lineage != 0 && batch.wal_lineage != 0 && batch.wal_lineage != lineage {
        return Err(format!(
            "this WAL was written by another copy of this database (WAL lineage {:016x}, \
             this copy's is {lineage:016x}): a checkpoint and the database it was taken \
             from each write their own WALs; move it out of the directory",
            batch.wal_lineage
        ));
    }
    if batch.wal_number != number {
        return Err(format!(
            "this WAL was written as {}, not under its name: it was renamed or copied; \
             rename it back if that name is free, else move it out of the directory",
            wal_file_name(batch.wal_number)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_round_trips_and_is_checked() {
        let ours = |database_id, wal_lineage| WalIdentity {
            database_id,
            wal_lineage,
        };
        let batch = WalBatch::decode(identity_payload(ours(7, 3), 12, 40).as_slice()).unwrap();
        assert!(is_identity(&batch));
        assert_eq!(batch.follows_seq, 40);
        assert_eq!(check_identity(&batch, 12, ours(7, 3)), Ok(()));
        assert_eq!(check_identity(&batch, 12, ours(0, 0)), Ok(()));
        assert!(
            check_identity(&batch, 12, ours(8, 3))
                .unwrap_err()
                .contains("another database")
        );
        assert!(
            check_identity(&batch, 12, ours(7, 4))
                .unwrap_err()
                .contains("another copy of this database")
        );
        assert!(
            check_identity(&batch, 13, ours(7, 3))
                .unwrap_err()
                .contains("000012.wal")
        );
    }

    #[test]
    fn markers_and_batches_are_not_identities() {
        let marker = WalBatch {
            first_seq: 5,
            ..WalBatch::default()
        };
        assert!(!is_identity(&marker));
        let mixed = WalBatch {
            first_seq: 5,
            database_id: 7,
            wal_number: 12,
            ..WalBatch::default()
        };
        let manifest = WalIdentity {
            database_id: 7,
            wal_lineage: 0,
        };
        assert!(check_identity(&mixed, 12, manifest).is_err());
    }
}
