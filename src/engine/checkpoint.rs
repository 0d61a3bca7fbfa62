//! Checkpoints: a consistent copy of a live database in another directory,
//! taken while writes go on (RocksDB's `Checkpoint`, Redis's `BGSAVE`).
//!
//! [`Db::checkpoint`] flushes the memtable, so that every write acknowledged
//! before the call is in a segment, then asks the segment manager, which
//! runs it as one of its jobs (no compaction can remove a segment under
//! it), to write the copy:
//!
//! 1. the target directory is created (it must not exist, or be empty);
//! 2. every live segment is hard-linked into it (segments never change once
//!    written; on another file system each is copied and synced);
//! 3. an empty WAL and a manifest naming the linked segments, the flushed
//!    sequence number, that WAL and the same database id are written;
//! 4. the target directory and its parent are synced.
//!
//! The copy opens as a database holding exactly the writes up to the
//! checkpoint's sequence number: everything acknowledged before the call,
//! and possibly writes made during the flush, never part of a batch.

use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::sync::oneshot;

use super::segment::{FileNumbers, new_database_id};
use super::segments::CheckpointSegments;
use super::version::SegmentSet;
use super::wal_identity::{WalIdentity, create_wal};
use super::{Db, answer};
use crate::error::IoContext;
use crate::format::manifest::write_manifest;
use crate::format::segment_file_name;
use crate::fs::FileSystem;
use crate::proto::storage::Manifest;
use crate::{Error, Result};

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpointed {
    /// Every write up to this sequence number, and none after it.
    pub seq: u64,
    /// Segments in the copy.
    pub segments: usize,
    /// Bytes of those segments (shared with the database where linked).
    pub bytes: u64,
}

impl Db {
    /// Writes a consistent copy of the database into `target` (see the
    /// module doc), while writes continue.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `target` exists and is not an empty
    /// directory; [`Error::Io`] if a file cannot be linked, copied or
    /// synced (the partial copy is left for the caller to remove).
    pub fn checkpoint(
        &self,
        target: impl Into<PathBuf>,
    ) -> impl Future<Output = Result<Checkpointed>> + 'static {
        let target = target.into();
        let flushed = self.flush();
        let segments = self.inner.segments.clone();
        async move {
            flushed.await?;
            let (reply, rx) = oneshot::channel();
            segments.do_send(CheckpointSegments { target, reply });
            answer(rx).await
        }
    }
}

/// Steps 1 to 4 of the module doc, on a blocking thread.
pub fn write_checkpoint(
    fs: &dyn FileSystem,
    source: &Path,
    set: &SegmentSet,
    flushed_seq: u64,
    numbers: &FileNumbers,
    target: &Path,
) -> Result<Checkpointed> {
    create_empty_directory(fs, target)?;
    let mut bytes = 0;
    for segment in set.all() {
        let name = segment_file_name(segment.meta.file_number);
        fs.link_or_copy(&source.join(&name), &target.join(&name))
            .context(|| format!("linking {name} into {}", target.display()))?;
        bytes += segment.meta.file_size;
    }
    let wal_number = numbers.allocate();
    // Its directory entry is synced with the links': both must be durable
    // before the manifest that names them.
    // The copy writes WALs of its own from the same numbers: a lineage of
    // its own tells them from the source's (`wal_identity.rs`).
    let identity = WalIdentity {
        database_id: numbers.database_id(),
        wal_lineage: new_database_id(),
    };
    let wal = create_wal(fs, target, wal_number, identity, flushed_seq)?;
    drop(wal);
    let manifest = Manifest {
        next_file_number: numbers.peek(),
        flushed_seq,
        segments: set.metas(),
        oldest_live_wal: wal_number,
        oldest_live_wal_exists: true,
        wal_lineage: identity.wal_lineage,
        database_id: numbers.database_id(),
        range_tombstones: super::range_delete::to_manifest(&set.range_tombstones),
        closed_at_seq: 0,
    };
    write_manifest(fs, target, &manifest)?;
    Ok(Checkpointed {
        seq: flushed_seq,
        segments: set.all().count(),
        bytes,
    })
}

/// Creates `target` (and its parents) unless it exists; an existing one must
/// be an empty directory. Syncs the parent so that the new name is durable.
fn create_empty_directory(fs: &dyn FileSystem, target: &Path) -> Result<()> {
    if let Ok(names) = fs.list_dir(target)
        && !names.is_empty()
    {
        return Err(Error::InvalidArgument(format!(
            "checkpoint directory {} exists and is not empty",
            target.display()
        )));
    }
    fs.create_dir_all(target)
        .context(|| format!("creating {}", target.display()))?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    // IMPORTANT: the checkpoint's own name lives in its parent.
    fs.sync_dir(parent)
        .context(|| format!("syncing {}", parent.display()))
}
