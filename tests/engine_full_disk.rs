//! A nearly full disk: compaction does not start when the free space is
//! below what its output could take (it is counted and tried again later),
//! writes and reads go on, and compaction resumes once space is back.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use naive_kv::fs::{DirectoryLock, FileSystem, ReadableFile, StdFs, WritableFile};
use naive_kv::{Db, Error};

/// The real file system, reporting whatever free space the test sets.
#[derive(Debug, Default)]
struct TightFs {
    free: AtomicU64,
}

impl FileSystem for TightFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        StdFs.create(path)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        StdFs.open(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        StdFs.sync_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFs.list_dir(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirectoryLock>> {
        StdFs.lock(path)
    }
    fn available_bytes(&self, _: &Path) -> io::Result<Option<u64>> {
        Ok(Some(self.free.load(Ordering::Relaxed)))
    }
}

#[test]
fn the_real_file_system_reports_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let free = StdFs.available_bytes(dir.path()).unwrap();
    assert!(free.is_some_and(|bytes| bytes > 0), "{free:?}");
}

#[actix_rt::test]
async fn compaction_waits_for_space_and_resumes_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(TightFs::default());
    let mut options = common::tiny_options(dir.path());
    options.fs = fs.clone();
    // Level 0 grows while compaction waits; writers must not be held back
    // for it in this test (they would wait for the space).
    options.l0_stall_trigger = 1000;
    let db = Db::open(options).await.unwrap();
    // Keys out of order, so that flushed segments overlap and compacting
    // them means writing (segments that overlap nothing are moved down
    // without a byte written, which needs no space).
    for i in 0..400 {
        let key = (i * 37) % 400;
        db.put(format!("key{key:05}"), "x".repeat(60))
            .await
            .unwrap();
    }
    db.flush().await.unwrap();

    match db.compact().await {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::StorageFull),
        other => panic!("a compaction with no free space gave {other:?}"),
    }
    let stats = db.stats().await.unwrap();
    assert!(stats.get("compactions_refused_for_space") > 0, "{stats:?}");
    assert_eq!(stats.get("compactions"), 0, "{stats:?}");
    assert!(stats.get("level_0_segments") >= 2, "{stats:?}");
    // Reads and writes go on meanwhile.
    db.put("during", "full").await.unwrap();
    assert_eq!(db.get("key00007").await.unwrap().unwrap().len(), 60);

    fs.free.store(u64::MAX, Ordering::Relaxed);
    db.compact().await.unwrap();
    let stats = db.stats().await.unwrap();
    assert!(stats.get("compactions") > 0, "{stats:?}");
    assert_eq!(stats.get("level_0_segments"), 0, "{stats:?}");
    for i in (0..400).step_by(37) {
        assert!(
            db.get(format!("key{i:05}")).await.unwrap().is_some(),
            "key{i:05}"
        );
    }
    db.close().await.unwrap();
}

/// A writer held back behind a full level 0 whose compaction was refused
/// for space finishes by itself once space is back. An outside probe found
/// it waited for ever: the refused compaction was tried again only on a
/// change of the segment set, which the held-back writers never made.
#[actix_rt::test]
async fn a_writer_stalled_behind_a_refused_compaction_resumes_when_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(TightFs::default());
    let mut options = common::tiny_options(dir.path());
    options.fs = fs.clone();
    options.l0_stall_trigger = 3;
    let db = Db::open(options).await.unwrap();
    // Overlapping keys until a write is held back: level 0 at its stall
    // trigger, its compaction refused (no free space).
    let mut written = 0u64;
    loop {
        let key = (written * 37) % 400;
        let put = db.put(format!("key{key:05}"), "x".repeat(60));
        match tokio::time::timeout(std::time::Duration::from_millis(1500), put).await {
            Ok(done) => done.unwrap(),
            Err(_) => break,
        }
        written += 1;
        assert!(written < 10_000, "no write was held back");
    }
    let stats = db.stats().await.unwrap();
    assert!(stats.get("level_0_segments") >= 3, "{stats:?}");
    assert!(stats.get("compactions_refused_for_space") > 0, "{stats:?}");
    // The stall still going on shows in the counters (the write held back
    // waited 1.5 s above).
    assert!(stats.get("write_stalls") >= 1, "{stats:?}");
    assert!(stats.get("write_stall_micros") >= 1_000_000, "{stats:?}");
    fs.free.store(u64::MAX, Ordering::Relaxed);
    let later = db.put("later", "write");
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), later).await;
    assert!(matches!(done, Ok(Ok(()))), "{done:?}");
    let stats = db.stats().await.unwrap();
    assert!(stats.get("compactions") > 0, "{stats:?}");
    assert_eq!(
        stats.get("compactions_refused_for_space"),
        1,
        "counted once"
    );
    assert_eq!(
        db.get("later").await.unwrap().as_deref(),
        Some(&b"write"[..])
    );
    db.close().await.unwrap();
}
