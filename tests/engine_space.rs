//! Space reclamation: after overwrites and deletes, `compact` leaves about
//! as many bytes on disk as there is live data, in few segments, and removes
//! the obsolete files.

mod common;

use std::path::Path;

use bytes::Bytes;
use naive_kv::{Db, Options, ScanRequest};

const KEYS: usize = 600;
const TARGET_SEGMENT_BYTES: u64 = 32 << 10;

fn options(dir: &Path) -> Options {
    let mut options = common::tiny_options(dir);
    options.memtable_bytes = 32 << 10;
    options.target_segment_bytes = TARGET_SEGMENT_BYTES;
    options.block_bytes = 1024;
    // The bounds below compare files with raw live bytes: store blocks raw
    // (compression has its own tests, in engine_compression).
    options.compression = naive_kv::options::Compression::None;
    options
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key{i:05}"))
}

fn value(i: usize, round: usize) -> Bytes {
    Bytes::from(format!(
        "{round}:{i}:{}",
        "x".repeat(100 + (i * 37 + round) % 200)
    ))
}

/// Writes every key `rounds` times, deletes the odd ones; returns the live
/// data's size (keys plus values).
async fn churn(db: &Db, rounds: usize) -> u64 {
    for round in 0..rounds {
        for i in 0..KEYS {
            db.put(key(i), value(i, round)).await.unwrap();
        }
    }
    for i in (1..KEYS).step_by(2) {
        db.delete(key(i)).await.unwrap();
    }
    (0..KEYS)
        .step_by(2)
        .map(|i| (key(i).len() + value(i, rounds - 1).len()) as u64)
        .sum()
}

async fn check_contents(db: &Db, rounds: usize) {
    let request = ScanRequest {
        limit: 0,
        ..ScanRequest::all()
    };
    let page = db.scan(request).await.unwrap();
    let expected: Vec<(Bytes, Bytes)> = (0..KEYS)
        .step_by(2)
        .map(|i| (key(i), value(i, rounds - 1)))
        .collect();
    assert!(page.entries == expected, "contents differ after compaction");
}

fn sst_count(dir: &Path) -> u64 {
    common::files_ending(dir, ".sst").len() as u64
}

#[actix_rt::test]
async fn compaction_reclaims_overwritten_and_deleted_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(options(dir.path())).await.unwrap();
    let rounds = 5;
    let live = churn(&db, rounds).await;
    let before = db.stats().await.unwrap();
    assert!(before.get("flushes") >= 10, "{before:?}");
    db.compact().await.unwrap();
    let stats = db.stats().await.unwrap();
    check_contents(&db, rounds).await;

    let on_disk = common::dir_bytes(dir.path());
    let reported = stats.get("bytes_on_disk");
    eprintln!("live {live} B, directory {on_disk} B, bytes_on_disk {reported} B, {stats:?}");
    assert!(
        on_disk * 2 <= live * 3,
        "directory holds {on_disk} B for {live} B of live data"
    );
    assert!(
        reported * 2 <= live * 3,
        "bytes_on_disk {reported} for {live} B of live data"
    );
    assert!(
        reported >= live / 2,
        "bytes_on_disk {reported} is too small for {live} B of live data"
    );

    // One sorted run split at the target size, and no file left behind.
    let segments = stats.get("live_segments");
    assert!(segments >= 1);
    assert!(
        segments <= live / TARGET_SEGMENT_BYTES + 2,
        "{segments} segments for {live} B at {TARGET_SEGMENT_BYTES} B each"
    );
    assert_eq!(
        sst_count(dir.path()),
        segments,
        "obsolete segment files remain"
    );
    assert!(common::files_ending(dir.path(), ".tmp").is_empty());

    // Reopening keeps both the data and the space.
    db.close().await.unwrap();
    let db = common::reopen(options(dir.path())).await;
    check_contents(&db, rounds).await;
    let on_disk = common::dir_bytes(dir.path());
    assert!(
        on_disk * 2 <= live * 3,
        "after reopen: {on_disk} B for {live} B of live data"
    );
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn compacting_a_fully_deleted_database_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(options(dir.path())).await.unwrap();
    for round in 0..3 {
        for i in 0..KEYS {
            db.put(key(i), value(i, round)).await.unwrap();
        }
    }
    for i in 0..KEYS {
        db.delete(key(i)).await.unwrap();
    }
    db.compact().await.unwrap();
    let stats = db.stats().await.unwrap();
    assert_eq!(stats.get("live_segments"), 0, "{stats:?}");
    // The live WAL's identity record (`engine/wal_identity.rs`), no more.
    assert!(stats.get("bytes_on_disk") < 100, "{stats:?}");
    assert_eq!(sst_count(dir.path()), 0);
    let page = db.scan(ScanRequest::all()).await.unwrap();
    assert!(page.entries.is_empty());
    let on_disk = common::dir_bytes(dir.path());
    assert!(on_disk < 4096, "{on_disk} B on disk for an empty database");
    db.close().await.unwrap();
}
