//! The Raft log and vote of one node, on disk with the care of the WAL.
//!
//! # On-disk layout (`DIR/raft/`)
//!
//! - `vote`: one record in the WAL framing of [`crate::format::wal`]
//!   (length, header CRC, payload CRC, payload) whose payload is the
//!   postcard encoding of openraft's `Vote`. It is replaced whole: written to
//!   `vote.tmp`, fdatasynced, renamed over `vote`, and the directory synced,
//!   so a crash leaves the old vote or the new one, never a mix.
//! - `log`: a sequence of records in the same framing, each the postcard
//!   encoding of a `LogRecord`: an entry, "entries from index `i` on are
//!   removed" (a truncation by a new leader) or "entries up to log id `l`
//!   are purged" (after a snapshot). Replaying the records in order gives
//!   the log; a later entry at an index replaces an earlier one.
//! - `log.tmp`: a compacted `log` being written; a leftover one is removed
//!   at open.
//!
//! # Durability and recovery
//!
//! Every append, truncation and purge is written and fdatasynced before it
//! is acknowledged to openraft (whatever `--sync` says: a vote or an entry
//! that counted towards a majority must survive a crash).
//!
//! Appends are group-committed. openraft hands an append a callback
//! ([`LogFlushed`]) and goes on without waiting for it, so `append` only
//! writes the records (the page cache) and passes the callback to the
//! log's syncer thread (`LogSyncer`). The syncer takes every callback
//! waiting when it wakes, makes one `fdatasync`, and then calls them all:
//! every record written before the sync began is durable when its callback
//! runs, and while one sync runs the next appends gather behind it (the
//! WAL's group commit, for the Raft log). Truncations, purges and votes are
//! rare and still sync where they happen. Reading follows
//! the WAL's rules: a torn last record is dropped (it was never
//! acknowledged), a damaged record followed by more data is
//! [`crate::Error::Corruption`] and the node refuses to start.
//!
//! At open the surviving records are rewritten as a compacted `log` (the
//! purge mark and the live entries; `log.tmp`, fsync, rename, directory
//! fsync), which also removes a torn tail before anything is appended after
//! it. The same rewrite runs when purged and truncated records outnumber the
//! live ones, so the file does not grow without bound.
//!
//! # Who reads the log
//!
//! The live entries are kept in memory in a lock-free ordered map
//! (`crossbeam_skiplist::SkipMap`) shared with the [`LogReader`]s that
//! openraft's replication tasks use; only the store (owned by openraft's
//! core task) writes to it. File I/O runs on the core task's thread, which
//! is why the node runs on an arbiter of its own (see [`super::node`]).

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageIOError, Vote,
};
use serde::{Deserialize, Serialize};

use super::{NodeId, StorageError, TypeConfig, codec_error};
use crate::error::IoContext;
use crate::format::wal::{MAX_RECORD_BYTES, WalWriter, read_wal};
use crate::fs::{FileSystem, StdFs};
use crate::{Error, Result};

/// One record of `DIR/raft/log` (see the module doc).
#[derive(Debug, Serialize, Deserialize)]
enum LogRecord {
    /// An entry appended to the log.
    Entry(Entry<TypeConfig>),
    /// Entries with this index and above were removed.
    TruncatedFrom(u64),
    /// Entries up to and including this log id were purged.
    PurgedUpTo(LogId<NodeId>),
}

/// Records of the current file that no longer describe a live entry, beyond
/// which (and beyond the live entries' count) the file is rewritten.
const REWRITE_AFTER_DEAD_RECORDS: usize = 1024;

/// Told whether the records written before it was queued are durable
/// (openraft's [`LogFlushed`], boxed so that tests can count).
type WhenDurable = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// What the syncer thread is asked to do, in the order the store wrote.
enum SyncRequest {
    /// Sync, then report: the entries were written before this was sent.
    Flushed(WhenDurable),
    /// The log was rewritten (and synced) as a new file: sync that one from
    /// now on.
    NewFile(std::fs::File),
}

/// The log's syncer thread (see the module doc): one `fdatasync` for every
/// callback waiting when it wakes. It stops when the store is dropped.
struct LogSyncer {
    requests: std::sync::mpsc::Sender<SyncRequest>,
}

impl LogSyncer {
    /// Starts the thread syncing `file` (a handle on the log file).
    fn start(file: std::fs::File) -> std::io::Result<LogSyncer> {
        let (requests, incoming) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || run_syncer(file, &incoming))?;
        Ok(LogSyncer { requests })
    }

    /// Asks for `request`; if the thread is gone, reports the callback's
    /// failure at once.
    fn send(&self, request: SyncRequest) {
        if let Err(std::sync::mpsc::SendError(SyncRequest::Flushed(callback))) =
            self.requests.send(request)
        {
            callback(Err(std::io::Error::other("the log's syncer stopped")));
        }
    }
}

/// The syncer's loop, until the store is dropped; returns how many syncs
/// it made. After a failed sync every later callback fails too: the
/// kernel may have dropped the unsynced pages, so a later successful sync
/// proves nothing about them (the node stops on the first error).
fn run_syncer(mut file: std::fs::File, incoming: &std::sync::mpsc::Receiver<SyncRequest>) -> u64 {
    let mut failed: Option<String> = None;
    let mut syncs = 0;
    while let Ok(first) = incoming.recv() {
        let mut waiting = Vec::new();
        for request in std::iter::once(first).chain(incoming.try_iter()) {
            match request {
                SyncRequest::Flushed(callback) => waiting.push(callback),
                SyncRequest::NewFile(new) => file = new,
            }
        }
        if waiting.is_empty() {
            continue;
        }
        if failed.is_none() {
            syncs += 1;
            if let Err(error) = file.sync_data() {
                failed = Some(format!("syncing the Raft log: {error}"));
            }
        }
        for callback in waiting {
            let result = match &failed {
                None => Ok(()),
                Some(why) => Err(std::io::Error::other(why.clone())),
            };
            callback(result);
        }
    }
    syncs
}

/// The Raft log and vote of one node. Owned by openraft's core task.
pub struct LogStore {
    /// `DIR/raft`.
    dir: PathBuf,
    /// The live entries, shared with the readers.
    entries: Arc<SkipMap<u64, Entry<TypeConfig>>>,
    /// The last purged log id (entries up to it are gone).
    last_purged: Option<LogId<NodeId>>,
    /// The vote as last saved.
    vote: Option<Vote<NodeId>>,
    /// Appends to `DIR/raft/log`.
    writer: LogFile,
    /// Records in the file that no longer describe a live entry.
    dead_records: usize,
    /// Syncs appends in groups.
    syncer: LogSyncer,
}

/// A reader of the live entries, for openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    entries: Arc<SkipMap<u64, Entry<TypeConfig>>>,
}

impl LogStore {
    /// Opens (creating if needed) the log and vote in `dir` (`DIR/raft`).
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] naming the file and offset if a record other
    /// than the last is damaged or does not decode; [`Error::Io`] if the
    /// directory cannot be read or written.
    pub fn open(dir: &Path) -> Result<LogStore> {
        StdFs
            .create_dir_all(dir)
            .context(|| format!("creating {}", dir.display()))?;
        let vote = read_vote(dir)?;
        let entries = Arc::new(SkipMap::new());
        let mut last_purged = None;
        let log = dir.join("log");
        if std::fs::exists(&log).context(|| format!("checking {}", log.display()))? {
            let contents = read_wal(&StdFs, &log)?;
            for (payload, offset) in contents.records.iter().zip(contents.record_offsets) {
                let record: LogRecord = postcard::from_bytes(payload)
                    .map_err(|e| Error::corruption(&log, offset, e.to_string()))?;
                replay(&entries, &mut last_purged, record);
            }
        }
        let writer = rewrite_log(dir, &entries, last_purged)?;
        let syncer = writer
            .file
            .try_clone()
            .and_then(LogSyncer::start)
            .context(|| format!("starting the syncer of {}", log.display()))?;
        Ok(LogStore {
            dir: dir.to_path_buf(),
            entries,
            last_purged,
            vote,
            writer,
            dead_records: 0,
            syncer,
        })
    }

    /// Frames `records` into one buffer, appends it and fdatasyncs.
    fn append_records(&mut self, records: &[LogRecord]) -> std::io::Result<()> {
        let framed = frame(records)?;
        self.writer.append_synced(&framed)
    }
}

/// The records WAL-framed into one buffer.
fn frame(records: &[LogRecord]) -> std::io::Result<Vec<u8>> {
    let mut framed = Vec::new();
    for record in records {
        let payload = postcard::to_stdvec(record).map_err(codec_error)?;
        if payload.len() > MAX_RECORD_BYTES {
            return Err(std::io::Error::other(format!(
                "a log record of {} bytes exceeds the limit {MAX_RECORD_BYTES}",
                payload.len()
            )));
        }
        WalWriter::encode_record(&payload, &mut framed);
    }
    Ok(framed)
}

impl LogStore {
    /// Rewrites the file when dead records dominate it.
    fn maybe_rewrite(&mut self) -> Result<()> {
        if self.dead_records > REWRITE_AFTER_DEAD_RECORDS.max(self.entries.len()) {
            self.writer = rewrite_log(&self.dir, &self.entries, self.last_purged)?;
            self.dead_records = 0;
            let handle = self
                .writer
                .file
                .try_clone()
                .context(|| format!("reopening {}", self.dir.join("log").display()))?;
            self.syncer.send(SyncRequest::NewFile(handle));
        }
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        match self.entries.back() {
            Some(entry) => Some(*entry.value().get_log_id()),
            None => self.last_purged,
        }
    }
}

/// Applies one record to the in-memory log.
fn replay(
    entries: &SkipMap<u64, Entry<TypeConfig>>,
    last_purged: &mut Option<LogId<NodeId>>,
    record: LogRecord,
) {
    match record {
        LogRecord::Entry(entry) => {
            entries.insert(entry.log_id.index, entry);
        }
        LogRecord::TruncatedFrom(index) => {
            remove_range(entries, index..);
        }
        LogRecord::PurgedUpTo(log_id) => {
            remove_range(entries, ..=log_id.index);
            *last_purged = Some(log_id);
        }
    }
}

/// Removes the entries whose index is in `range`; returns how many.
fn remove_range(entries: &SkipMap<u64, Entry<TypeConfig>>, range: impl RangeBounds<u64>) -> usize {
    let doomed: Vec<u64> = entries.range(range).map(|e| *e.key()).collect();
    for index in &doomed {
        entries.remove(index);
    }
    doomed.len()
}

/// The open `DIR/raft/log`, appended to in WAL-framed records. A plain
/// `std::fs::File` (not the engine's `WalWriter`): openraft wants the store
/// `Sync`.
struct LogFile {
    file: std::fs::File,
}

impl LogFile {
    /// Appends whole framed records (not synced).
    fn append(&mut self, framed: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.file.write_all(framed)
    }

    /// Appends whole framed records and fdatasyncs.
    fn append_synced(&mut self, framed: &[u8]) -> std::io::Result<()> {
        self.append(framed)?;
        self.file.sync_data()
    }
}

/// Writes the purge mark and the live entries as a new `log` (through
/// `log.tmp`, synced and renamed) and returns a writer appending to it.
fn rewrite_log(
    dir: &Path,
    entries: &SkipMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
) -> Result<LogFile> {
    let tmp = dir.join("log.tmp");
    let file = std::fs::File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
    let mut writer = LogFile { file };
    let mut framed = Vec::new();
    let purge = last_purged.map(LogRecord::PurgedUpTo);
    let live = entries.iter().map(|e| LogRecord::Entry(e.value().clone()));
    for record in purge.into_iter().chain(live) {
        let payload = postcard::to_stdvec(&record)
            .map_err(|e| Error::io("encoding a log record", codec_error(e)))?;
        WalWriter::encode_record(&payload, &mut framed);
    }
    writer
        .append_synced(&framed)
        .context(|| format!("writing {}", tmp.display()))?;
    let log = dir.join("log");
    StdFs
        .rename(&tmp, &log)
        .context(|| format!("renaming {} to {}", tmp.display(), log.display()))?;
    // IMPORTANT: the rename must be durable before anything is appended.
    StdFs
        .sync_dir(dir)
        .context(|| format!("syncing {}", dir.display()))?;
    Ok(writer)
}

/// Reads `DIR/raft/vote`, `None` if there is none yet.
fn read_vote(dir: &Path) -> Result<Option<Vote<NodeId>>> {
    let path = dir.join("vote");
    match read_small_file(&path)? {
        None => Ok(None),
        Some(payload) => postcard::from_bytes(&payload)
            .map(Some)
            .map_err(|e| Error::corruption(&path, 0, e.to_string())),
    }
}

/// Replaces `DIR/raft/vote` atomically (see the module doc).
fn write_vote(dir: &Path, vote: &Vote<NodeId>) -> Result<()> {
    let payload =
        postcard::to_stdvec(vote).map_err(|e| Error::io("encoding the vote", codec_error(e)))?;
    write_small_file(dir, "vote", &payload)
}

/// Reads a file of one record written by [`write_small_file`]; `None` if
/// the file does not exist.
///
/// # Errors
///
/// [`Error::Corruption`] if the file holds no intact record (it is only
/// ever renamed into place whole), [`Error::Io`] if it cannot be read.
pub fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>> {
    if !std::fs::exists(path).context(|| format!("checking {}", path.display()))? {
        return Ok(None);
    }
    let mut contents = read_wal(&StdFs, path)?;
    match contents.records.pop() {
        Some(payload) if contents.records.is_empty() => Ok(Some(payload)),
        _ => Err(Error::corruption(path, 0, "expected exactly one record")),
    }
}

/// Replaces `dir/name` by a file holding `payload` as one WAL-framed
/// record: written to `name.tmp`, fdatasynced, renamed, directory synced.
///
/// # Errors
///
/// [`Error::Io`] naming the file if a step fails; the old file is then
/// unchanged.
pub fn write_small_file(dir: &Path, name: &str, payload: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let file = StdFs
        .create(&tmp)
        .context(|| format!("creating {}", tmp.display()))?;
    let writer = WalWriter::new(file, tmp.clone());
    let mut framed = Vec::new();
    WalWriter::encode_record(payload, &mut framed);
    writer.append_encoded(&framed)?;
    writer.sync()?;
    let path = dir.join(name);
    StdFs
        .rename(&tmp, &path)
        .context(|| format!("renaming {}", tmp.display()))?;
    // IMPORTANT: the new contents count only once the new name is durable.
    StdFs
        .sync_dir(dir)
        .context(|| format!("syncing {}", dir.display()))
}

fn entries_in(
    entries: &SkipMap<u64, Entry<TypeConfig>>,
    range: impl RangeBounds<u64>,
) -> Vec<Entry<TypeConfig>> {
    entries.range(range).map(|e| e.value().clone()).collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError> {
        Ok(entries_in(&self.entries, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError> {
        Ok(entries_in(&self.entries, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> std::result::Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: self.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            entries: self.entries.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> std::result::Result<(), StorageError> {
        write_vote(&self.dir, vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<LogRecord> = entries.into_iter().map(LogRecord::Entry).collect();
        if let Err(error) = frame(&records).and_then(|framed| self.writer.append(&framed)) {
            let storage = StorageIOError::write_logs(&error);
            callback.log_io_completed(Err(error));
            return Err(storage.into());
        }
        for record in records {
            if let LogRecord::Entry(entry) = record {
                let replaced = self.entries.contains_key(&entry.log_id.index);
                self.dead_records += usize::from(replaced);
                self.entries.insert(entry.log_id.index, entry);
            }
        }
        // Durable, and reported, once the syncer's next sync returns.
        let when_durable = move |result| callback.log_io_completed(result);
        self.syncer
            .send(SyncRequest::Flushed(Box::new(when_durable)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> std::result::Result<(), StorageError> {
        self.append_records(&[LogRecord::TruncatedFrom(log_id.index)])
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.dead_records += remove_range(&self.entries, log_id.index..) + 1;
        self.maybe_rewrite()
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> std::result::Result<(), StorageError> {
        self.append_records(&[LogRecord::PurgedUpTo(log_id)])
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.dead_records += remove_range(&self.entries, ..=log_id.index) + 1;
        self.last_purged = Some(log_id);
        self.maybe_rewrite()
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// The store's own write path, minus openraft's callback.
    fn append(store: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
        let records: Vec<LogRecord> = entries.into_iter().map(LogRecord::Entry).collect();
        store.append_records(&records).unwrap();
        for record in records {
            replay(&store.entries, &mut store.last_purged, record);
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.entries.iter().map(|e| *e.key()).collect()
    }

    #[test]
    fn log_survives_reopen_with_truncation_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            append(&mut store, (1..=10).map(|i| entry(1, i)).collect());
            store
                .append_records(&[LogRecord::TruncatedFrom(8)])
                .unwrap();
            remove_range(&store.entries, 8..);
            append(&mut store, vec![entry(2, 8)]);
            store
                .append_records(&[LogRecord::PurgedUpTo(entry(1, 3).log_id)])
                .unwrap();
        }
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![4, 5, 6, 7, 8]);
        assert_eq!(store.last_purged, Some(entry(1, 3).log_id));
        assert_eq!(store.last_log_id(), Some(entry(2, 8).log_id));
    }

    #[test]
    fn torn_tail_is_dropped_and_corrupt_middle_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            append(&mut store, (1..=3).map(|i| entry(1, i)).collect());
        }
        let log = dir.path().join("log");
        let full = std::fs::read(&log).unwrap();
        std::fs::write(&log, &full[..full.len() - 3]).unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![1, 2]);
        // The rewrite at open removed the torn bytes: appending works.
        append(&mut store, vec![entry(1, 3)]);
        drop(store);
        assert_eq!(indexes(&LogStore::open(dir.path()).unwrap()), vec![1, 2, 3]);

        let mut damaged = std::fs::read(&log).unwrap();
        damaged[14] ^= 0x40;
        std::fs::write(&log, &damaged).unwrap();
        let result = LogStore::open(dir.path());
        assert!(
            matches!(result, Err(Error::Corruption { offset: 0, .. })),
            "{:?}",
            result.err()
        );
    }

    #[test]
    fn one_sync_serves_every_append_waiting_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("log")).unwrap();
        let (requests, incoming) = std::sync::mpsc::channel();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..10 {
            let done = done.clone();
            let callback = move |result: std::io::Result<()>| {
                result.unwrap();
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            };
            requests
                .send(SyncRequest::Flushed(Box::new(callback)))
                .unwrap();
        }
        let next = std::fs::File::create(dir.path().join("log.next")).unwrap();
        requests.send(SyncRequest::NewFile(next)).unwrap();
        drop(requests);
        // All ten were waiting when the syncer woke: one sync for them.
        assert_eq!(run_syncer(file, &incoming), 1);
        assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 10);
    }

    #[test]
    fn the_syncer_thread_reports_each_append_durable() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("log")).unwrap();
        let syncer = LogSyncer::start(file).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let callback = move |result: std::io::Result<()>| tx.send(result.is_ok()).unwrap();
        syncer.send(SyncRequest::Flushed(Box::new(callback)));
        assert!(rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap());
    }

    #[test]
    fn vote_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_vote(dir.path(), &Vote::new(3, 2)).unwrap();
        write_vote(dir.path(), &Vote::new(4, 1)).unwrap();
        assert_eq!(read_vote(dir.path()).unwrap(), Some(Vote::new(4, 1)));
        assert!(!dir.path().join("vote.tmp").exists());
        let mut bytes = std::fs::read(dir.path().join("vote")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(dir.path().join("vote"), &bytes).unwrap();
        // A vote file is renamed into place whole: a bad one is corruption.
        assert!(read_vote(dir.path()).is_err());
    }
}
