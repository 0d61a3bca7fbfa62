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

/// `get_many_now` answers each key as `get` does, wherever its newest
/// version lives (the active memtable, a frozen one, level 0, deeper
/// levels), for overwritten, deleted, range-deleted and expired keys, absent
/// keys and keys `get` refuses; and memory answers all of them once read.
#[actix_rt::test]
async fn get_many_now_answers_as_get_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(small_options(dir.path())).await.unwrap();
    for round in 0..6u32 {
        for i in (round..600).step_by(3) {
            db.put(format!("key{i:04}"), format!("v{round}-{i}"))
                .await
                .unwrap();
        }
        db.delete(format!("key{:04}", round * 7)).await.unwrap();
        if round == 2 {
            db.flush().await.unwrap();
            db.compact().await.unwrap();
        }
        if round == 4 {
            db.delete_range("key0100", "key0120").await.unwrap();
            let mut batch = WriteBatch::new();
            batch.put_with_expiry("key0202", "gone", 1);
            batch.put_with_expiry("key0201", "stays", u64::MAX);
            db.write(batch).await.unwrap();
        }
    }
    let too_long = "k".repeat((64 << 10) + 1);
    let mut keys: Vec<String> = (0..640).map(|i| format!("key{i:04}")).collect();
    keys.extend(["".to_string(), too_long, "absent".to_string()]);
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    for pass in 0..2 {
        let mut answers: Vec<Option<naive_kv::Result<Option<Bytes>>>> =
            keys.iter().map(|_| None).collect();
        db.get_many_now(&keys, |at, answer| {
            assert!(answers[at].is_none(), "key {at} answered twice");
            answers[at] = Some(answer);
        });
        let mut answered = 0;
        for (key, answer) in keys.iter().zip(answers) {
            let expected = db.get(Bytes::copy_from_slice(key)).await;
            match (answer, expected) {
                (None, _) => {}
                (Some(answer), expected) => {
                    answered += 1;
                    assert_eq!(
                        answer.as_ref().ok(),
                        expected.as_ref().ok(),
                        "key {:?}",
                        String::from_utf8_lossy(&key[..key.len().min(16)])
                    );
                }
            }
        }
        // Refused keys are left to `get` (and its error); after one pass of
        // gets every other key's block is in memory.
        if pass == 1 {
            assert_eq!(answered, keys.len() - 2, "pass {pass}");
        }
    }
    let mut values: Vec<Option<Bytes>> = vec![Some(Bytes::from("unanswered")); 4];
    let keys: [&[u8]; 4] = [b"key0003", b"key0100", b"key0202", b"key0201"];
    db.get_many_now(&keys, |at, answer| values[at] = answer.unwrap());
    assert_eq!(
        values,
        [
            Some(Bytes::from("v3-3")),
            None,
            None,
            Some(Bytes::from("stays"))
        ]
    );
    let stats = db.stats().await.unwrap();
    assert!(stats.get("flushes") > 1, "{stats:?}");
    db.close().await.unwrap();
    db.get_many_now(&[b"key0003"], |_, _| panic!("answered after close"));
}
