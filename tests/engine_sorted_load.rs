//! A load in key order (what a bulk import or the benchmark's prefill does)
//! leaves segments that overlap nothing below them: compaction moves them
//! down the levels without rewriting a byte, and the moved files survive a
//! reopen with every key readable.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::Db;

const KEYS: usize = 3000;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key{i:06}"))
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("{i}:{}", "v".repeat(60)))
}

/// Waits until nothing is left for compaction to do.
async fn settle(db: &Db) -> naive_kv::Stats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = db.stats().await.unwrap();
        let settled = stats.get("compaction_debt_bytes") == 0 && stats.get("level_0_segments") < 2;
        if settled || Instant::now() > deadline {
            return stats;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_sorted_load_moves_down_without_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let options = common::tiny_options(dir.path());
    let db = Db::open(options.clone()).await.unwrap();
    for i in 0..KEYS {
        db.put(key(i), value(i)).await.unwrap();
    }
    db.flush().await.unwrap();
    let stats = settle(&db).await;
    assert_eq!(stats.get("compaction_debt_bytes"), 0, "{stats:?}");
    assert!(stats.get("compactions") > 0, "{stats:?}");
    assert_eq!(stats.get("compaction_bytes"), 0, "{stats:?}");
    let deeper: u64 = (1..7)
        .map(|l| stats.get(&format!("level_{l}_segments")))
        .sum();
    assert!(deeper > 0, "{stats:?}");
    db.close().await.unwrap();

    let db = Db::open(options).await.unwrap();
    for i in 0..KEYS {
        assert_eq!(db.get(key(i)).await.unwrap(), Some(value(i)), "key {i}");
    }
    db.close().await.unwrap();
}
