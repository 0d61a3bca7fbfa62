//! Plain OS threads (no actix system on them) write and read one database
//! at once, with puts, deletes and batches, checked against models:
//! - each thread owns some keys and keeps a model of them: every answered
//!   write is visible to its next read (read-your-writes) and, after all
//!   threads finish and after a reopen, every key holds what the model says;
//! - batches set (or delete) a group of keys together, and a scan, which
//!   reflects one point in time, never sees a group half written;
//! - every thread also writes shared keys with values counting up: a reader
//!   never sees one writer's value for a key go back to an older one.

mod common;

use common::block_on;

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use naive_kv::{Db, Options, ScanRequest, SyncPolicy, WriteBatch};

const THREADS: usize = 4;
const ROUNDS: u64 = 400;
const OWN_KEYS: u64 = 24;
const SHARED_KEYS: u64 = 8;
const GROUP_KEYS: u64 = 5;

fn own_key(thread: usize, key: u64) -> Bytes {
    Bytes::from(format!("own/{thread}/{key:03}"))
}

fn group_key(thread: usize, key: u64) -> Bytes {
    Bytes::from(format!("group/{thread}/{key}"))
}

fn shared_key(key: u64) -> Bytes {
    Bytes::from(format!("shared/{key}"))
}

/// `writer:counter`, parsed back by [`parse_shared`].
fn shared_value(thread: usize, counter: u64) -> Bytes {
    Bytes::from(format!("{thread}:{counter:08}"))
}

fn parse_shared(value: &[u8]) -> (usize, u64) {
    let text = std::str::from_utf8(value).unwrap();
    let (thread, counter) = text.split_once(':').unwrap();
    (thread.parse().unwrap(), counter.parse().unwrap())
}

/// A cheap deterministic sequence per thread.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What one thread wrote to its own keys (`None`: deleted).
type Model = BTreeMap<Bytes, Option<Bytes>>;

/// Scans `prefix` and checks the group is all one value or all absent.
async fn check_group(db: &Db, thread: usize) {
    let page = db
        .scan(ScanRequest::range(
            format!("group/{thread}/"),
            format!("group/{thread}0"),
        ))
        .await
        .unwrap();
    let values: Vec<&Bytes> = page.entries.iter().map(|(_, v)| v).collect();
    if let Some(first) = values.first() {
        assert_eq!(values.len() as u64, GROUP_KEYS, "half a batch: {page:?}");
        assert!(values.iter().all(|v| v == first), "mixed batch: {page:?}");
    }
}

/// Reads a shared key and checks no writer's counter went backwards.
fn check_shared(db: &Db, key: u64, seen: &mut HashMap<(u64, usize), u64>) {
    let Some(value) = block_on(db.get(shared_key(key))).unwrap() else {
        return;
    };
    let (writer, counter) = parse_shared(&value);
    let last = seen.entry((key, writer)).or_insert(0);
    assert!(
        counter >= *last,
        "shared/{key}: {writer}'s {counter} after {last}"
    );
    *last = counter;
}

/// One thread's work: own keys, its batch group, shared keys, and reads of
/// the others' groups and the shared keys.
fn run_thread(db: &Db, thread: usize) -> (Model, Vec<u64>) {
    let mut model = Model::new();
    let mut shared_last = vec![0u64; SHARED_KEYS as usize];
    let mut seen = HashMap::new();
    let mut random = 0x9e37_79b9_7f4a_7c15 ^ (thread as u64 + 1);
    for round in 1..=ROUNDS {
        let choice = next_random(&mut random) % 10;
        let key = next_random(&mut random) % OWN_KEYS;
        match choice {
            0..=3 => {
                let value = Bytes::from(format!("{thread}/{round}"));
                block_on(db.put(own_key(thread, key), value.clone())).unwrap();
                model.insert(own_key(thread, key), Some(value));
            }
            4 => {
                block_on(db.delete(own_key(thread, key))).unwrap();
                model.insert(own_key(thread, key), None);
            }
            5 | 6 => {
                let mut batch = WriteBatch::new();
                let delete = round % 7 == 0;
                for k in 0..GROUP_KEYS {
                    match delete {
                        true => batch.delete(group_key(thread, k)),
                        false => batch.put(group_key(thread, k), format!("{round}")),
                    };
                }
                block_on(db.write(batch)).unwrap();
            }
            _ => {
                let shared = key % SHARED_KEYS;
                block_on(db.put(shared_key(shared), shared_value(thread, round))).unwrap();
                shared_last[shared as usize] = round;
            }
        }
        // Read-your-writes on the key just touched.
        let own = own_key(thread, key);
        let expected = model.get(&own).cloned().flatten();
        assert_eq!(block_on(db.get(own)).unwrap(), expected, "thread {thread}");
        block_on(check_group(db, (thread + round as usize) % THREADS));
        check_shared(db, key % SHARED_KEYS, &mut seen);
    }
    (model, shared_last)
}

/// Every thread's own keys hold what its model says; every shared key
/// holds some writer's last value for it.
async fn check_final(db: &Db, results: &[(Model, Vec<u64>)]) {
    for (model, _) in results {
        for (key, value) in model {
            assert_eq!(&db.get(key.clone()).await.unwrap(), value, "{key:?}");
        }
    }
    for key in 0..SHARED_KEYS {
        let Some(value) = db.get(shared_key(key)).await.unwrap() else {
            assert!(results.iter().all(|(_, last)| last[key as usize] == 0));
            continue;
        };
        let (writer, counter) = parse_shared(&value);
        assert_eq!(results[writer].1[key as usize], counter, "shared/{key}");
    }
}

async fn run_threads(db: &Db) -> Vec<(Model, Vec<u64>)> {
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let db = db.clone();
            std::thread::spawn(move || run_thread(&db, thread))
        })
        .collect();
    // Joined on a blocking thread: this one runs the memtable actor.
    actix_rt::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap()
}

async fn threads_against_models(options: Options) {
    let db = Db::open(options.clone()).await.unwrap();
    let results = run_threads(&db).await;
    check_final(&db, &results).await;
    for thread in 0..THREADS {
        check_group(&db, thread).await;
    }
    db.close().await.unwrap();
    let db = common::reopen(options).await;
    check_final(&db, &results).await;
    db.close().await.unwrap();
}

/// Writes not synced: writers and the actor spin for each other.
#[actix_rt::test]
async fn plain_threads_agree_with_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.sync = SyncPolicy::None;
    threads_against_models(options).await;
}

/// The same with tiny memtables: flushes, stalls and compactions happen
/// while the threads write.
#[actix_rt::test]
async fn plain_threads_agree_with_the_models_through_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::tiny_options(dir.path());
    options.sync = SyncPolicy::None;
    threads_against_models(options).await;
}

/// As above with the memtables' point index on: gets of keys other
/// threads keep overwriting are answered by the index or, for versions not
/// yet published, by the skip list.
#[actix_rt::test]
async fn plain_threads_agree_with_the_models_through_flushes_with_a_point_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::tiny_options(dir.path());
    options.sync = SyncPolicy::None;
    options.memtable_point_index = true;
    threads_against_models(options).await;
}

/// Every write synced: each thread's write is synced by a leader among the
/// writers (`memtable/direct.rs`), which share syncs.
#[actix_rt::test]
async fn plain_threads_agree_with_the_models_when_every_write_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.sync = SyncPolicy::Always;
    threads_against_models(options).await;
}

/// Synced writes with tiny memtables: the lane closes under the sync
/// leaders for freezes, flushes and stalls, and their queued writes go to
/// the actor instead.
#[actix_rt::test]
async fn plain_threads_agree_with_the_models_when_synced_through_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::tiny_options(dir.path());
    options.sync = SyncPolicy::Always;
    threads_against_models(options).await;
}
