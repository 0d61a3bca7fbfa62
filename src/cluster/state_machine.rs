//! The NaiveKV engine as openraft's state machine.
//!
//! # On-disk layout (`DIR/raft/`)
//!
//! - `engine`: one WAL-framed record naming the live engine directory
//!   (`engine-initial` when absent), replaced atomically (see
//!   [`super::log_store::write_small_file`]).
//! - `engine-*/`: engine directories; the one named by `engine` is live,
//!   any other is a leftover of an interrupted snapshot install and is
//!   removed at open.
//! - `snapshots/*.snap`: snapshot archives ([`super::snapshot`]); the one
//!   with the greatest last log id is the current snapshot, older ones are
//!   removed when a newer one is complete. `snapshots/checkpoint-*/`,
//!   `*.tmp` and `incoming-*` are work in progress, removed at open.
//!
//! # Applying entries
//!
//! Each entry becomes one engine [`WriteBatch`]: its mutations (puts with
//! the absolute expiries the accepting node computed, deletes, range
//! deletes; a conditional request's only if its conditions hold, decided
//! as [`super::request`] says, else none and the response says
//! `conflict`), the entry's
//! log id under `RAFT_PREFIX + "applied"` and, for a membership entry, the
//! membership under `RAFT_PREFIX + "membership"`. The engine makes a batch
//! atomic, so after a crash the applied id says exactly which entries the
//! data holds: none is applied twice or skipped. The batches of one `apply`
//! call are submitted together, in order, and awaited together (one group
//! commit). An engine error while applying is fatal for the node (openraft
//! stops it): the leader checks sizes before proposing, so a refusal here
//! means the engine is broken or the nodes' limits differ.
//!
//! # Snapshots
//!
//! `get_snapshot_builder` takes an engine checkpoint ([`Db::checkpoint`],
//! segments hard-linked) while no entry is being applied (openraft calls it
//! between applies), so the checkpoint holds exactly the applied state it
//! is labelled with; the builder then packs it into an archive off the
//! apply path. Installing unpacks a received archive into a new
//! `engine-*` directory (every file and the directory synced), opens it,
//! and switches by replacing the `engine` pointer file: a crash before the
//! rename keeps the old engine, after it the new one. The live [`Db`] is
//! published through an `ArcSwap` that the server loads per request; the
//! old engine is then closed and its directory removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::ArbiterHandle;
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt;
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError,
    StoredMembership,
};
use tokio::sync::oneshot;

use super::log_store::{read_small_file, write_small_file};
use super::snapshot::{self, Meta};
use super::{ClusterRequest, ClusterResponse, NodeId, StorageError, TypeConfig, codec_error};
use crate::keyspace::RAFT_PREFIX;
use crate::{Db, Error, Options, Result, WriteBatch};

/// The name of the live engine directory before any snapshot install.
const INITIAL_ENGINE: &str = "engine-initial";

fn raft_key(name: &str) -> Bytes {
    [RAFT_PREFIX, name.as_bytes()].concat().into()
}

/// Opens engines on an actix arbiter (the engine's actors must start on
/// one) from whatever thread openraft runs the state machine on.
#[derive(Clone)]
pub struct EngineHost {
    arbiter: ArbiterHandle,
    /// The options every engine of this node opens with (the directory is
    /// replaced).
    options: Options,
}

impl EngineHost {
    /// Engines will run on `arbiter` with `options`.
    pub fn new(arbiter: ArbiterHandle, options: Options) -> Self {
        EngineHost { arbiter, options }
    }

    async fn open(&self, directory: PathBuf) -> Result<Db> {
        let mut options = self.options.clone();
        options.directory = directory;
        let (reply, rx) = oneshot::channel();
        let spawned = self.arbiter.spawn(async move {
            let _ = reply.send(Db::open(options).await);
        });
        if !spawned {
            return Err(Error::Closed);
        }
        rx.await.unwrap_or(Err(Error::Closed))
    }
}

/// openraft's state machine: the live engine and what it has applied.
pub struct StateMachine {
    /// `DIR/raft`.
    dir: PathBuf,
    host: EngineHost,
    /// The live engine, shared with the server's request path.
    db: Arc<ArcSwap<Db>>,
    /// The directory name of the live engine.
    engine_name: String,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
}

/// Builds one snapshot from a checkpoint taken by `get_snapshot_builder`.
pub struct SnapshotBuilder {
    snapshots: PathBuf,
    /// The checkpoint directory and its meta, or why it could not be taken.
    prepared: std::result::Result<(PathBuf, Meta), String>,
}

fn unique_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn io_error(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

impl StateMachine {
    /// Opens the live engine under `dir` (`DIR/raft`) and what it applied,
    /// removing leftovers of interrupted installs and builds.
    ///
    /// # Errors
    ///
    /// The engine's open errors; [`Error::Corruption`] if the pointer file
    /// or the applied state does not decode.
    pub async fn open(dir: &Path, host: EngineHost) -> Result<StateMachine> {
        let snapshots = dir.join("snapshots");
        std::fs::create_dir_all(&snapshots)
            .map_err(|e| Error::io(format!("creating {}", snapshots.display()), e))?;
        let pointer = dir.join("engine");
        let engine_name = match read_small_file(&pointer)? {
            Some(name) => String::from_utf8(name)
                .map_err(|e| Error::corruption(&pointer, 0, e.to_string()))?,
            None => INITIAL_ENGINE.to_string(),
        };
        remove_leftovers(dir, &engine_name)?;
        let db = host.open(dir.join(&engine_name)).await?;
        let last_applied = decode_key(&db, "applied").await?;
        let membership = decode_key(&db, "membership").await?.unwrap_or_default();
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            host,
            db: Arc::new(ArcSwap::from_pointee(db)),
            engine_name,
            last_applied,
            membership,
        })
    }

    /// The live engine, for the server's reads (load it per request).
    pub fn engine(&self) -> Arc<ArcSwap<Db>> {
        self.db.clone()
    }

    fn snapshots(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// Switches to the unpacked engine in `name` (see the module doc).
    async fn switch_engine(&mut self, name: String) -> Result<()> {
        let new_db = self.host.open(self.dir.join(&name)).await?;
        write_small_file(&self.dir, "engine", name.as_bytes())?;
        let old = self.db.swap(Arc::new(new_db));
        let old_name = std::mem::replace(&mut self.engine_name, name);
        old.close().await?;
        let old_dir = self.dir.join(old_name);
        std::fs::remove_dir_all(&old_dir)
            .map_err(|e| Error::io(format!("removing {}", old_dir.display()), e))
    }
}

/// An entry's engine write in flight, with what it will answer.
type PendingApply = (
    LogId<NodeId>,
    futures_util::future::BoxFuture<'static, Result<()>>,
    ClusterResponse,
);

/// Awaits `pending` in order, appending their responses to `replies`.
async fn settle(
    pending: Vec<PendingApply>,
    replies: &mut Vec<ClusterResponse>,
) -> std::result::Result<(), StorageError> {
    for (log_id, written, response) in pending {
        written
            .await
            .map_err(|e| StorageIOError::apply(log_id, &e))?;
        replies.push(response);
    }
    Ok(())
}

/// Whether every condition of `request` holds in `db`, judged at the
/// request's time (see [`super::request`]).
async fn conditions_hold(db: &Db, request: &ClusterRequest) -> Result<bool> {
    for condition in &request.conditions {
        let read = db
            .get_versioned_at(condition.key.clone(), Some(request.now_ms))
            .await?;
        let found = read.value.as_deref().map(|v| (v, read.expire_at_ms));
        if !request.holds(condition, found) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Decodes the engine's `RAFT_PREFIX + name` key, `None` if absent.
async fn decode_key<T: serde::de::DeserializeOwned>(db: &Db, name: &str) -> Result<Option<T>> {
    match db.get(raft_key(name)).await? {
        None => Ok(None),
        Some(bytes) => postcard::from_bytes(&bytes).map(Some).map_err(|e| {
            Error::InvalidArgument(format!("the engine's raft/{name} does not decode: {e}"))
        }),
    }
}

/// Removes engine directories other than `live` and unfinished snapshot
/// work (see the module doc).
fn remove_leftovers(dir: &Path, live: &str) -> Result<()> {
    let list = |path: &Path| -> Result<Vec<(String, PathBuf)>> {
        let entries = std::fs::read_dir(path)
            .map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
        Ok(entries
            .filter_map(|entry| entry.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect())
    };
    let remove = |path: &Path| -> Result<()> {
        let result = match path.is_dir() {
            true => std::fs::remove_dir_all(path),
            false => std::fs::remove_file(path),
        };
        result.map_err(|e| Error::io(format!("removing {}", path.display()), e))
    };
    for (name, path) in list(dir)? {
        if name.starts_with("engine-") && name != live {
            remove(&path)?;
        }
    }
    for (name, path) in list(&dir.join("snapshots"))? {
        if !name.ends_with(".snap") {
            remove(&path)?;
        }
    }
    Ok(())
}

/// The current snapshot archive, open: the one with the greatest last log
/// id. A newer snapshot completing meanwhile removes older archives; one
/// that vanishes between listing and opening is skipped and the directory
/// listed again (the newer archive is in place before any older one goes).
/// An archive once open stays readable after it is removed.
fn open_newest_snapshot(snapshots: &Path) -> std::io::Result<Option<(Meta, std::fs::File)>> {
    'listing: loop {
        let mut newest: Option<(Meta, std::fs::File)> = None;
        for entry in std::fs::read_dir(snapshots)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "snap") {
                continue;
            }
            let Some(mut file) = open_unless_removed(&path)? else {
                continue 'listing;
            };
            let meta = snapshot::read_meta(&mut file)?;
            if newest
                .as_ref()
                .is_none_or(|(m, _)| m.last_log_id <= meta.last_log_id)
            {
                newest = Some((meta, file));
            }
        }
        return Ok(newest);
    }
}

/// Opens `path`, or `None` if it no longer exists.
fn open_unless_removed(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    match std::fs::File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes every archive in `snapshots` older than `keep`.
fn remove_older_snapshots(snapshots: &Path, keep: &Meta) -> std::io::Result<()> {
    for entry in std::fs::read_dir(snapshots)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "snap") {
            continue;
        }
        let Some(mut file) = open_unless_removed(&path)? else {
            continue;
        };
        let meta = snapshot::read_meta(&mut file)?;
        if meta.last_log_id < keep.last_log_id {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io_error(e)))
}

/// The snapshot data openraft sends: `archive` read from its start.
fn snapshot_data(mut archive: std::fs::File) -> std::io::Result<Box<tokio::fs::File>> {
    use std::io::{Seek, SeekFrom};
    archive.seek(SeekFrom::Start(0))?;
    Ok(Box::new(tokio::fs::File::from_std(archive)))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot<TypeConfig>, StorageError> {
        let (checkpoint, meta) = self
            .prepared
            .clone()
            .map_err(|e| StorageIOError::write_snapshot(None, &io_error(e)))?;
        let signature = Some(meta.signature());
        let archive = self.snapshots.join(format!("{}.snap", meta.snapshot_id));
        let (for_pack, snapshots) = (meta.clone(), self.snapshots.clone());
        // Opened before older archives go: a newer snapshot installed
        // meanwhile may remove this one, and the open file stays readable.
        let opened = blocking(move || {
            snapshot::pack(&checkpoint, &for_pack, &archive)?;
            std::fs::remove_dir_all(&checkpoint)?;
            let opened = std::fs::File::open(&archive)?;
            remove_older_snapshots(&snapshots, &for_pack)?;
            Ok(opened)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        let snapshot =
            snapshot_data(opened).map_err(|e| StorageIOError::read_snapshot(signature, &e))?;
        Ok(Snapshot { meta, snapshot })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError,
    > {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> std::result::Result<Vec<ClusterResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let db = self.db.load_full();
        let mut pending = Vec::new();
        let mut replies = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let mut response = ClusterResponse::default();
            let mut batch = WriteBatch::new();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(request) if request.conditions.is_empty() => {
                    batch = request.to_batch();
                }
                EntryPayload::Normal(request) => {
                    // The conditions read the engine: every earlier entry
                    // must be written first.
                    settle(std::mem::take(&mut pending), &mut replies).await?;
                    let held = conditions_hold(&db, &request)
                        .await
                        .map_err(|e| StorageIOError::apply(log_id, &e))?;
                    match held {
                        true => batch = request.to_batch(),
                        false => response.conflict = true,
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(log_id), membership);
                    let encoded = postcard::to_stdvec(&self.membership)
                        .map_err(|e| StorageIOError::apply(log_id, &codec_error(e)))?;
                    batch.put(raft_key("membership"), encoded);
                }
            }
            let encoded = postcard::to_stdvec(&log_id)
                .map_err(|e| StorageIOError::apply(log_id, &codec_error(e)))?;
            batch.put(raft_key("applied"), encoded);
            self.last_applied = Some(log_id);
            pending.push((log_id, db.write(batch).boxed(), response));
        }
        settle(pending, &mut replies).await?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, unique_suffix()),
            None => format!("none-{}", unique_suffix()),
        };
        let meta = Meta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let checkpoint = self
            .snapshots()
            .join(format!("checkpoint-{}", meta.snapshot_id));
        let taken = self.db.load().checkpoint(checkpoint.clone()).await;
        SnapshotBuilder {
            snapshots: self.snapshots(),
            prepared: taken.map(|_| (checkpoint, meta)).map_err(|e| e.to_string()),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<tokio::fs::File>, StorageError> {
        let path = self
            .snapshots()
            .join(format!("incoming-{}", unique_suffix()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> std::result::Result<(), StorageError> {
        let signature = Some(meta.signature());
        let failed = |e: std::io::Error| StorageIOError::write_snapshot(signature.clone(), &e);
        let received = snapshot.into_std().await;
        let engine_name = format!("engine-{}", unique_suffix());
        let (engine_dir, snapshots) = (self.dir.join(&engine_name), self.snapshots());
        let expected = meta.clone();
        blocking(move || install_files(received, &engine_dir, &snapshots, &expected))
            .await
            .map_err(failed)?;
        self.switch_engine(engine_name)
            .await
            .map_err(|e| failed(io_error(e)))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshots = self.snapshots();
        let newest = blocking(move || open_newest_snapshot(&snapshots))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some((meta, archive)) = newest else {
            return Ok(None);
        };
        let snapshot = snapshot_data(archive)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        Ok(Some(Snapshot { meta, snapshot }))
    }
}

/// Unpacks the received archive into `engine_dir`, checks it is the
/// snapshot openraft announced, and keeps a copy as the current snapshot.
fn install_files(
    mut received: std::fs::File,
    engine_dir: &Path,
    snapshots: &Path,
    expected: &Meta,
) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    received.seek(SeekFrom::Start(0))?;
    let unpacked = snapshot::unpack(&mut std::io::BufReader::new(&received), engine_dir)?;
    if &unpacked != expected {
        return Err(io_error(format!(
            "received snapshot {} but openraft announced {}",
            unpacked.snapshot_id, expected.snapshot_id
        )));
    }
    received.seek(SeekFrom::Start(0))?;
    let archive = snapshots.join(format!("{}.snap", expected.snapshot_id));
    let tmp = archive.with_extension("snap.tmp");
    let mut copy = std::fs::File::create(&tmp)?;
    std::io::copy(&mut received, &mut copy)?;
    copy.sync_all()?;
    std::fs::rename(&tmp, &archive)?;
    for entry in std::fs::read_dir(snapshots)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with("incoming-")) {
            std::fs::remove_file(&path)?;
        }
    }
    remove_older_snapshots(snapshots, expected)?;
    // IMPORTANT: the archive's name must be durable.
    std::fs::File::open(snapshots)?.sync_all()
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    use super::*;

    fn archive_at(snapshots: &Path, index: u64) -> Meta {
        let meta = Meta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-{index}-x"),
        };
        let checkpoint = snapshots.join(format!("checkpoint-{index}"));
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("data"), index.to_le_bytes()).unwrap();
        let archive = snapshots.join(format!("{}.snap", meta.snapshot_id));
        snapshot::pack(&checkpoint, &meta, &archive).unwrap();
        std::fs::remove_dir_all(&checkpoint).unwrap();
        meta
    }

    #[test]
    fn the_newest_archive_is_opened_and_stays_readable_once_removed() {
        let dir = tempfile::tempdir().unwrap();
        archive_at(dir.path(), 5);
        let newest = archive_at(dir.path(), 9);
        let (meta, file) = open_newest_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!(meta, newest);
        // A newer snapshot replaces it while openraft still sends it.
        let newer = archive_at(dir.path(), 12);
        remove_older_snapshots(dir.path(), &newer).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "older archives were not removed");
        let mut data = snapshot_data(file).unwrap().try_into_std().unwrap();
        let unpacked = snapshot::unpack(&mut data, &dir.path().join("out")).unwrap();
        assert_eq!(unpacked, newest);
        let restored = std::fs::read(dir.path().join("out").join("data")).unwrap();
        assert_eq!(restored, 9u64.to_le_bytes());
    }

    #[test]
    fn an_archive_removed_while_listing_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            open_unless_removed(&dir.path().join("gone.snap"))
                .unwrap()
                .is_none()
        );
        assert!(open_newest_snapshot(dir.path()).unwrap().is_none());
        let only = archive_at(dir.path(), 3);
        remove_older_snapshots(dir.path(), &only).unwrap();
        let (meta, _) = open_newest_snapshot(dir.path()).unwrap().unwrap();
        assert_eq!(meta, only);
    }
}
