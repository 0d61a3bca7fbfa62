//! Basic behaviour of the embedded engine: put/get/delete/batch/scan, flush,
//! compaction and reopen.

use bytes::Bytes;
use naive_kv::{Db, Options, ScanRequest, WriteBatch};

fn small_options(dir: &std::path::Path) -> Options {
    let mut options = Options::new(dir);
    options.memtable_bytes = 16 << 10;
    options.l0_compaction_trigger = 2;
    options.level1_bytes = 64 << 10;
    options.target_segment_bytes = 16 << 10;
    options
}

#[actix_rt::test]
async fn put_get_delete_batch_scan_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(small_options(dir.path())).await.unwrap();
    for i in 0..2000u32 {
        db.put(format!("key{i:05}"), format!("value{i}"))
            .await
            .unwrap();
    }
    db.delete("key00007").await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put("key00008", "changed").delete("key00009");
    db.write(batch).await.unwrap();
    assert_eq!(
        db.get("key00001").await.unwrap(),
        Some(Bytes::from("value1"))
    );
    assert_eq!(db.get("key00007").await.unwrap(), None);
    assert_eq!(
        db.get("key00008").await.unwrap(),
        Some(Bytes::from("changed"))
    );
    let stats = db.stats().await.unwrap();
    assert!(stats.get("flushes") > 0, "{stats:?}");

    let page = db
        .scan(ScanRequest::range("key00005", "key00012"))
        .await
        .unwrap();
    let keys: Vec<_> = page
        .entries
        .iter()
        .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
        .collect();
    assert_eq!(
        keys,
        ["key00005", "key00006", "key00008", "key00010", "key00011"]
    );

    db.compact().await.unwrap();
    assert_eq!(
        db.get("key01999").await.unwrap(),
        Some(Bytes::from("value1999"))
    );
    db.close().await.unwrap();

    let db = Db::open(small_options(dir.path())).await.unwrap();
    assert_eq!(
        db.get("key00008").await.unwrap(),
        Some(Bytes::from("changed"))
    );
    assert_eq!(db.get("key00009").await.unwrap(), None);
    let mut request = ScanRequest::all();
    request.reverse = true;
    request.limit = 3;
    let page = db.scan(request).await.unwrap();
    assert!(page.more);
    assert_eq!(page.entries[0].0, Bytes::from("key01999"));
    db.close().await.unwrap();
}

/// `close` returns only once the directory is unlocked: opening it again
/// right away never meets `Locked`, however busy the background was (the
/// segment manager and compactor stop on their own thread, and blocking
/// jobs hold the lock until they end).
#[actix_rt::test]
async fn close_releases_the_directory_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..30u32 {
        let db = Db::open(small_options(dir.path()))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for i in 0..300u32 {
            db.put(format!("key{i:05}"), format!("value{round}-{i}"))
                .await
                .unwrap();
        }
        // Asked now, not awaited: the flush (and the compaction it may
        // start) is still running when `close` is called.
        drop(db.flush());
        db.close().await.unwrap();
    }
    let db = Db::open(small_options(dir.path())).await.unwrap();
    assert_eq!(
        db.get("key00299").await.unwrap(),
        Some(Bytes::from("value29-299"))
    );
    db.close().await.unwrap();
}

/// A get's future is what every caller boxes or holds per request: it
/// stays small, with the read that may wait for the disk boxed apart. (It
/// was 1,304 bytes, past the size where glibc's allocator sorts its
/// fastbins on every allocation: 2 % of a server's CPU under pipelined
/// GETs, docs/BENCHMARKS.md, session 23.)
#[actix_rt::test]
async fn a_get_future_is_small() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(small_options(dir.path())).await.unwrap();
    let get = db.get("key");
    let versioned = db.get_versioned("key");
    assert!(
        std::mem::size_of_val(&get) <= 256,
        "{}",
        std::mem::size_of_val(&get)
    );
    assert!(std::mem::size_of_val(&versioned) <= 256);
    assert_eq!(get.await.unwrap(), None);
    db.put("key", "value").await.unwrap();
    db.flush().await.unwrap();
    assert_eq!(db.get("key").await.unwrap(), Some(Bytes::from("value")));
}
