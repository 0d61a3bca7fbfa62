//! Expiring keys in the engine, on an injected clock: reads, scans, the
//! TTL API, compaction giving the space back, reopening after a crash, and
//! atomic expiry changes against concurrent writes.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use naive_kv::{Db, ManualClock, Options, ScanRequest, Ttl, WriteBatch};

const NOW: u64 = 1_700_000_000_000;

fn options(dir: &Path, clock: &Arc<ManualClock>) -> Options {
    let mut options = common::tiny_options(dir);
    options.clock = clock.clone();
    options
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key{i:05}"))
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("{i}:{}", "v".repeat(200)))
}

async fn scanned_keys(db: &Db) -> Vec<Bytes> {
    let request = ScanRequest {
        limit: 0,
        ..ScanRequest::all()
    };
    let page = db.scan(request).await.unwrap();
    page.entries.into_iter().map(|(k, _)| k).collect()
}

#[actix_rt::test]
async fn reads_and_scans_stop_seeing_a_key_at_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let db = Db::open(options(dir.path(), &clock)).await.unwrap();
    db.put("forever", "f").await.unwrap();
    db.put_with_expiry("soon", "s", NOW + 1_000).await.unwrap();
    db.put_with_expiry("later", "l", NOW + 5_000).await.unwrap();
    db.put("shadowed", "old").await.unwrap();
    db.put_with_expiry("shadowed", "new", NOW + 1_000)
        .await
        .unwrap();

    assert_eq!(db.get("soon").await.unwrap(), Some(Bytes::from("s")));
    assert_eq!(db.ttl("forever").await.unwrap(), Ttl::Never);
    assert_eq!(db.ttl("missing").await.unwrap(), Ttl::Absent);
    let at = NOW + 1_000;
    let expected = Ttl::At {
        at_ms: at,
        remaining_ms: 1_000,
    };
    assert_eq!(db.ttl("soon").await.unwrap(), expected);

    clock.set(NOW + 999);
    assert_eq!(db.get("soon").await.unwrap(), Some(Bytes::from("s")));
    clock.set(NOW + 1_000);
    assert_eq!(
        db.get("soon").await.unwrap(),
        None,
        "at its expiry a key is gone"
    );
    // An expired newer version hides the older one instead of uncovering it.
    assert_eq!(db.get("shadowed").await.unwrap(), None);
    assert_eq!(db.ttl("soon").await.unwrap(), Ttl::Absent);
    assert_eq!(
        db.get_with_expiry("later").await.unwrap(),
        Some(("l".into(), NOW + 5_000))
    );
    assert_eq!(
        scanned_keys(&db).await,
        vec![Bytes::from("forever"), "later".into()]
    );

    // The same after a flush (the expired entries are written as tombstones).
    db.flush().await.unwrap();
    assert_eq!(db.get("shadowed").await.unwrap(), None);
    assert_eq!(
        scanned_keys(&db).await,
        vec![Bytes::from("forever"), "later".into()]
    );
    clock.set(NOW + 5_000);
    assert_eq!(scanned_keys(&db).await, vec![Bytes::from("forever")]);
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn expire_and_persist_change_a_keys_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let db = Db::open(options(dir.path(), &clock)).await.unwrap();
    assert!(!db.expire("missing", NOW + 10).await.unwrap());
    assert!(!db.persist("missing").await.unwrap());
    db.put("k", "v").await.unwrap();
    assert!(!db.persist("k").await.unwrap(), "nothing to persist");
    assert!(db.expire("k", NOW + 10).await.unwrap());
    assert_eq!(
        db.get_with_expiry("k").await.unwrap(),
        Some(("v".into(), NOW + 10))
    );
    assert!(db.persist("k").await.unwrap());
    assert_eq!(db.ttl("k").await.unwrap(), Ttl::Never);
    // A time already past deletes the key.
    assert!(db.expire("k", NOW - 1).await.unwrap());
    assert_eq!(db.get("k").await.unwrap(), None);
    clock.set(NOW + 100);
    assert!(db.expire("gone", NOW).await.is_ok());

    // A batch carries expiries too, and a plain put clears one.
    let mut batch = WriteBatch::new();
    batch.put_with_expiry("a", "1", NOW + 200).put("b", "2");
    db.write(batch).await.unwrap();
    assert_eq!(
        db.get_with_expiry("a").await.unwrap(),
        Some(("1".into(), NOW + 200))
    );
    db.put("a", "3").await.unwrap();
    assert_eq!(db.ttl("a").await.unwrap(), Ttl::Never);
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn expiry_changes_are_atomic_against_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let db = Db::open(options(dir.path(), &clock)).await.unwrap();
    db.put("k", "0").await.unwrap();
    // A conditional write whose key was written after the read is dropped.
    let read = db.get_versioned("k").await.unwrap();
    db.put("k", "1").await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put_with_expiry("k", "0", NOW + 50);
    batch.require_unchanged("k", read.version);
    assert!(matches!(
        db.write(batch).await,
        Err(naive_kv::Error::Conflict)
    ));
    assert_eq!(
        db.get_with_expiry("k").await.unwrap(),
        Some(("1".into(), 0))
    );
    // Unchanged: applied.
    let read = db.get_versioned("k").await.unwrap();
    assert_eq!(read.expire_at_ms, 0);
    let mut batch = WriteBatch::new();
    batch.put_with_expiry("k", "1", NOW + 50);
    batch.require_unchanged("k", read.version);
    db.write(batch).await.unwrap();

    // Expiry changes racing with puts from other tasks: every put's value
    // survives (none is overwritten by an expire's stale read), and the
    // final expiry is the last expire's or none (a put clears it).
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            actix_rt::spawn(async move {
                for i in 0..50 {
                    db.put("k", format!("{t}-{i}")).await.unwrap();
                }
            })
        })
        .collect();
    let expirer = {
        let db = db.clone();
        actix_rt::spawn(async move {
            for i in 0..100 {
                db.expire("k", NOW + 1_000 + i).await.unwrap();
            }
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    expirer.await.unwrap();
    let (value, _) = db.get_with_expiry("k").await.unwrap().unwrap();
    assert!(value.ends_with(b"-49"), "{value:?}");
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn compaction_drops_expired_data_and_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let db = Db::open(options(dir.path(), &clock)).await.unwrap();
    const KEYS: usize = 400;
    for i in 0..KEYS {
        // Older versions below, so a non-bottom expired entry must still
        // shadow them.
        db.put(key(i), value(i)).await.unwrap();
    }
    db.compact().await.unwrap();
    for i in 0..KEYS {
        match i % 4 {
            0 => db.put(key(i), value(i)).await.unwrap(),
            _ => db
                .put_with_expiry(key(i), value(i), NOW + 1_000)
                .await
                .unwrap(),
        }
    }
    db.flush().await.unwrap();
    let before = db.stats().await.unwrap().get("segment_bytes");
    clock.set(NOW + 1_000);
    // A flush and a level-0 merge may run before everything reaches the
    // bottom: the expired keys must stay hidden all along.
    for i in (1..KEYS).step_by(4) {
        assert_eq!(db.get(key(i)).await.unwrap(), None);
    }
    db.compact().await.unwrap();
    let stats = db.stats().await.unwrap();
    let after = stats.get("segment_bytes");
    let live: u64 = (0..KEYS)
        .step_by(4)
        .map(|i| (key(i).len() + value(i).len()) as u64)
        .sum();
    eprintln!("segment bytes {before} -> {after}, live {live}, {stats:?}");
    assert!(
        after * 2 < before,
        "compaction kept expired data: {before} -> {after}"
    );
    assert!(
        after * 2 <= live * 3,
        "{after} B on disk for {live} B of live data"
    );
    let expected: Vec<Bytes> = (0..KEYS).step_by(4).map(key).collect();
    assert_eq!(scanned_keys(&db).await, expected);
    // Turning the clock back does not bring dropped data back: it is gone.
    clock.set(NOW);
    assert_eq!(db.get(key(1)).await.unwrap(), None);
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn expiries_survive_a_crash_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let db = Db::open(options(dir.path(), &clock)).await.unwrap();
    // Written before this feature's format: no expiry anywhere.
    db.put("plain", "p").await.unwrap();
    db.flush().await.unwrap();
    db.put_with_expiry("in-segment", "s", NOW + 3_000)
        .await
        .unwrap();
    db.flush().await.unwrap();
    db.put_with_expiry("in-wal", "w", NOW + 2_000)
        .await
        .unwrap();
    db.put_with_expiry("expired", "x", NOW + 10).await.unwrap();
    // A crash: no close; the WAL holds every acknowledged write.
    drop(db);
    let db = common::reopen(options(dir.path(), &clock)).await;
    assert_eq!(
        db.get_with_expiry("plain").await.unwrap(),
        Some(("p".into(), 0))
    );
    assert_eq!(
        db.get_with_expiry("in-segment").await.unwrap(),
        Some(("s".into(), NOW + 3_000))
    );
    assert_eq!(
        db.get_with_expiry("in-wal").await.unwrap(),
        Some(("w".into(), NOW + 2_000))
    );
    clock.set(NOW + 10);
    assert_eq!(db.get("expired").await.unwrap(), None);
    clock.set(NOW + 2_000);
    assert_eq!(db.get("in-wal").await.unwrap(), None);
    assert_eq!(db.get("in-segment").await.unwrap(), Some("s".into()));
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn an_expired_entry_flushed_above_an_older_version_still_hides_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let db = Db::open(options(dir.path(), &clock)).await.unwrap();
    db.put("k", "old").await.unwrap();
    db.compact().await.unwrap();
    db.put_with_expiry("k", "new", NOW + 10).await.unwrap();
    clock.set(NOW + 10);
    // Flushed after its expiry: written as a tombstone over "old", not
    // dropped (which would bring "old" back).
    db.flush().await.unwrap();
    assert_eq!(db.get("k").await.unwrap(), None);
    db.close().await.unwrap();
    let db = common::reopen(options(dir.path(), &clock)).await;
    assert_eq!(db.get("k").await.unwrap(), None);
    db.compact().await.unwrap();
    assert_eq!(db.get("k").await.unwrap(), None);
    let stats = db.stats().await.unwrap();
    assert_eq!(stats.get("live_segments"), 0, "{stats:?}");
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn expired_values_leave_the_disk_without_being_read_or_compacted_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let db = Db::open(options(dir.path(), &clock)).await.unwrap();
    const KEYS: usize = 300;
    for i in 0..KEYS {
        db.put_with_expiry(key(i), value(i), NOW + 1_000)
            .await
            .unwrap();
    }
    db.put("forever", "f").await.unwrap();
    // Everything settled on the bottom level while still live, so no
    // compaction the set's changes ask for is left to run.
    db.compact().await.unwrap();
    let before = db.stats().await.unwrap().get("segment_bytes");
    clock.set(NOW + 1_000);
    // No read, no write, no `compact`: the compactor's timer finds the
    // segment due and rewrites it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let now = db.stats().await.unwrap().get("segment_bytes");
        if now * 4 < before || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        after * 4 < before,
        "expired values still on disk: {before} -> {after} bytes"
    );
    assert_eq!(scanned_keys(&db).await, vec![Bytes::from("forever")]);
    db.close().await.unwrap();
}
