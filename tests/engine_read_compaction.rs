//! Level 0 merged early because gets paid for it (`read_compaction_checks`):
//! a read-heavy phase after a load gets level 0's segments out of every
//! get's way without waiting for `l0_compaction_trigger`, and nothing read
//! changes; with the option off, level 0 stays as the trigger leaves it.

use std::time::{Duration, Instant};

use naive_kv::{Db, Options, Stats};

const KEYS_PER_SEGMENT: u32 = 20;
const SEGMENTS: u32 = 3;

fn key(i: u32) -> String {
    format!("key{i:04}")
}

fn value(i: u32) -> String {
    format!("value-{i}")
}

/// A database with three overlapping level-0 segments, far below the
/// trigger.
async fn three_level0_segments(dir: &std::path::Path, read_compaction_checks: u64) -> Db {
    let mut options = Options::new(dir);
    options.sync = naive_kv::SyncPolicy::None;
    options.read_compaction_checks = read_compaction_checks;
    let db = Db::open(options).await.unwrap();
    for segment in 0..SEGMENTS {
        // Interleaved keys: every segment spans the others' keys.
        for i in (0..KEYS_PER_SEGMENT * SEGMENTS).filter(|i| i % SEGMENTS == segment) {
            db.put(key(i), value(i)).await.unwrap();
        }
        db.flush().await.unwrap();
    }
    assert_eq!(stats(&db).await.get("level_0_segments"), 3);
    db
}

async fn stats(db: &Db) -> Stats {
    db.stats().await.unwrap()
}

/// Gets every key `rounds` times: a key in the oldest segment is checked
/// in all three.
async fn read_all(db: &Db, rounds: u32) {
    for _ in 0..rounds {
        for i in 0..KEYS_PER_SEGMENT * SEGMENTS {
            let got = db.get(key(i)).await.unwrap();
            assert_eq!(got.as_deref(), Some(value(i).as_bytes()), "{i}");
        }
    }
}

/// Level 0's segment count once it is 0 or `wait` has passed.
async fn level0_after(db: &Db, wait: Duration) -> Stats {
    let deadline = Instant::now() + wait;
    loop {
        let now = stats(db).await;
        if now.get("level_0_segments") == 0 || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn gets_that_paid_for_level_0_merge_it() {
    let dir = tempfile::tempdir().unwrap();
    // Three tiny segments (well under 5,000 bytes together): the option's
    // count decides.
    let db = three_level0_segments(dir.path(), 5_000).await;
    // 60 keys: a third checked once, a third twice, a third three times,
    // so 60 checks beyond the first per round.
    read_all(&db, 40).await;
    let after = level0_after(&db, Duration::from_secs(2)).await;
    assert_eq!(
        after.get("level_0_segments"),
        3,
        "merged before the count: {after:?}"
    );
    read_all(&db, 60).await;
    let after = level0_after(&db, Duration::from_secs(10)).await;
    assert_eq!(after.get("level_0_segments"), 0, "{after:?}");
    assert_eq!(after.get("level_1_segments"), 1, "{after:?}");
    read_all(&db, 1).await;
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn with_the_option_off_level_0_waits_for_its_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let db = three_level0_segments(dir.path(), 0).await;
    read_all(&db, 200).await;
    let after = level0_after(&db, Duration::from_millis(2500)).await;
    assert_eq!(after.get("level_0_segments"), 3, "{after:?}");
    db.close().await.unwrap();
}
