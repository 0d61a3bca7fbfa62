//! Conditional writes (optimistic concurrency): a batch that names the
//! versions it read is applied only if none of those keys changed since,
//! whether the key is in a memtable or only in segments, across flushes and
//! reopens; concurrent read-modify-write loops lose no update.

mod common;

use naive_kv::{Db, Error, WriteBatch};

async fn conditional_put(
    db: &Db,
    key: &str,
    value: &str,
    read: &naive_kv::Versioned,
) -> Result<(), Error> {
    let mut batch = WriteBatch::new();
    batch.put(key.to_string(), value.to_string());
    batch.require_unchanged(key.to_string(), read.version);
    db.write(batch).await
}

#[actix_rt::test]
async fn a_conditional_write_is_refused_after_the_key_changed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    db.put("k", "1").await.unwrap();
    let read = db.get_versioned("k").await.unwrap();
    assert_eq!(read.value.as_deref(), Some(&b"1"[..]));
    db.put("k", "2").await.unwrap();
    assert!(matches!(
        conditional_put(&db, "k", "3", &read).await,
        Err(Error::Conflict)
    ));
    assert_eq!(db.get("k").await.unwrap().as_deref(), Some(&b"2"[..]));

    let again = db.get_versioned("k").await.unwrap();
    conditional_put(&db, "k", "3", &again).await.unwrap();
    assert_eq!(db.get("k").await.unwrap().as_deref(), Some(&b"3"[..]));
    // The version read is used up by the write it allowed.
    assert!(matches!(
        conditional_put(&db, "k", "4", &again).await,
        Err(Error::Conflict)
    ));

    // An absent key: created by someone else in between, or not.
    let absent = db.get_versioned("new").await.unwrap();
    assert_eq!(absent.value, None);
    db.put("new", "x").await.unwrap();
    assert!(matches!(
        conditional_put(&db, "new", "y", &absent).await,
        Err(Error::Conflict)
    ));
    let deleted_later = db.get_versioned("other").await.unwrap();
    db.put("unrelated", "z").await.unwrap();
    conditional_put(&db, "other", "y", &deleted_later)
        .await
        .unwrap();
    assert_eq!(db.stats().await.unwrap().get("write_conflicts"), 3);
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn keys_only_in_segments_are_checked_across_flushes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    db.put("k", "1").await.unwrap();
    db.flush().await.unwrap();
    // Read from a segment, nothing flushed since: unchanged.
    let read = db.get_versioned("k").await.unwrap();
    conditional_put(&db, "k", "2", &read).await.unwrap();

    // Changed, then flushed out of every memtable: still a conflict.
    let stale = db.get_versioned("k").await.unwrap();
    db.put("k", "3").await.unwrap();
    db.flush().await.unwrap();
    assert!(matches!(
        conditional_put(&db, "k", "x", &stale).await,
        Err(Error::Conflict)
    ));
    assert_eq!(db.get("k").await.unwrap().as_deref(), Some(&b"3"[..]));
    db.close().await.unwrap();

    // After a reopen a fresh read of a key that lives only in segments
    // allows its write (no endless conflict).
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    let read = db.get_versioned("k").await.unwrap();
    assert_eq!(read.value.as_deref(), Some(&b"3"[..]));
    conditional_put(&db, "k", "4", &read).await.unwrap();
    assert_eq!(db.get("k").await.unwrap().as_deref(), Some(&b"4"[..]));
    db.close().await.unwrap();
}

/// Increments `key` by one with a read and a conditional write, retrying on
/// conflicts; returns how many conflicts it met.
async fn increment(db: &Db, key: &str) -> u64 {
    let mut conflicts = 0;
    loop {
        let read = db.get_versioned(key.to_string()).await.unwrap();
        let n: u64 = read
            .value
            .as_deref()
            .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
        match conditional_put(db, key, &(n + 1).to_string(), &read).await {
            Ok(()) => return conflicts,
            Err(Error::Conflict) => conflicts += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

#[actix_rt::test]
async fn concurrent_increments_lose_no_update_while_memtables_flush() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    let (tasks, each) = (8, 60);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let db = db.clone();
        handles.push(actix_rt::spawn(async move {
            let mut conflicts = 0;
            for i in 0..each {
                conflicts += increment(&db, "counter").await;
                // Unrelated traffic fills memtables, so flushes happen.
                db.put(format!("filler-{t}-{i}"), vec![b'x'; 512])
                    .await
                    .unwrap();
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for handle in handles {
        conflicts += handle.await.unwrap();
    }
    let total = db.get("counter").await.unwrap().unwrap();
    assert_eq!(total, (tasks * each).to_string().as_bytes());
    assert!(conflicts > 0, "eight tasks on one key never raced");
    assert!(db.stats().await.unwrap().get("flushes") > 0);
    db.close().await.unwrap();
}
