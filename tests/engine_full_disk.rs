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
