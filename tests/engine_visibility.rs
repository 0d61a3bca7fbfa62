//! What a reader on a plain OS thread may see while writers on other plain
//! threads write: never half a batch, never one thread's write without the
//! writes that thread made before it, never a key's value going back; and
//! every acknowledged write, at once, to its writer (read-your-writes) and,
//! after all threads finish and after a reopen, to everyone.
//!
//! Each writer `w`, in round `n`, writes (all values are `n`):
//! - a batch of [`BATCH_KEYS`] keys `pair/w/NN`: a reader that reads the
//!   first, then the last, then the first again must find each at least the
//!   one before (a batch seen half applied, from either end, shows a key a
//!   round behind), and a scan of `pair/w/` finds them all equal;
//! - `seq/w/x` then `seq/w/y`, one after the other, or both submitted before
//!   either is awaited (pipelined), or `x`'s future dropped unawaited: a
//!   reader that reads `y` and then `x` must find `x >= y`.
//!
//! These are the guarantees any change to who inserts a write into the
//! memtable must keep (writers inserting their own versions, issue 14, was
//! tried against this test: see docs/BENCHMARKS.md). A model check, not a
//! timing test: it fails only if an order is broken.

mod common;

use common::block_on;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use naive_kv::{Db, Options, ScanRequest, SyncPolicy, WriteBatch};

const WRITERS: usize = 3;
const READERS: usize = 2;
/// Rounds per writer; a synced write waits for an fdatasync, so fewer.
const ROUNDS: u64 = 300;
const SYNCED_ROUNDS: u64 = 25;
/// Keys per batch: many, so that a batch seen half applied is likely to be
/// caught in the act.
const BATCH_KEYS: usize = 16;

fn key(kind: &str, writer: usize, name: &str) -> Bytes {
    Bytes::from(format!("{kind}/{writer}/{name}"))
}

fn value(round: u64) -> Bytes {
    Bytes::from(format!("{round:08}"))
}

/// The round a key holds, 0 if absent.
fn read_round(db: &Db, key: Bytes) -> u64 {
    block_on(db.get(key))
        .unwrap()
        .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

fn write_round(db: &Db, writer: usize, round: u64) {
    let mut batch = WriteBatch::new();
    for k in 0..BATCH_KEYS {
        batch.put(pair_key(writer, k), value(round));
    }
    block_on(db.write(batch)).unwrap();
    let (x, y) = (key("seq", writer, "x"), key("seq", writer, "y"));
    match round % 3 {
        0 => {
            block_on(db.put(x.clone(), value(round))).unwrap();
            block_on(db.put(y.clone(), value(round))).unwrap();
        }
        1 => {
            // Both submitted before either is awaited.
            let first = db.put(x.clone(), value(round));
            let second = db.put(y.clone(), value(round));
            block_on(second).unwrap();
            block_on(first).unwrap();
        }
        _ => {
            // Submitted, never awaited: still ordered before `y`.
            drop(db.put(x.clone(), value(round)));
            block_on(db.put(y.clone(), value(round))).unwrap();
        }
    }
    // Read-your-writes, and the dropped write is in too.
    assert_eq!(read_round(db, y), round, "writer {writer}");
    assert_eq!(read_round(db, x), round, "writer {writer}");
    assert_eq!(read_round(db, pair_key(writer, 0)), round);
}

fn pair_key(writer: usize, k: usize) -> Bytes {
    key("pair", writer, &format!("{k:02}"))
}

/// Reads every writer's keys in the order that exposes a broken order, and
/// checks that no key's round goes back.
fn read_once(db: &Db, last: &mut [[u64; 2]; WRITERS]) {
    for (writer, [last_a, last_y]) in last.iter_mut().enumerate() {
        let first = read_round(db, pair_key(writer, 0));
        let last_key = read_round(db, pair_key(writer, BATCH_KEYS - 1));
        let again = read_round(db, pair_key(writer, 0));
        assert!(
            first <= last_key && last_key <= again,
            "writer {writer}: half a batch seen ({first}, {last_key}, {again})"
        );
        let a = again;
        let y = read_round(db, key("seq", writer, "y"));
        let x = read_round(db, key("seq", writer, "x"));
        assert!(x >= y, "writer {writer}: y {y} seen before x (x {x})");
        assert!(
            a >= *last_a && y >= *last_y,
            "writer {writer}: a round went back"
        );
        (*last_a, *last_y) = (a, y);
        let page = block_on(db.scan(ScanRequest::range(
            format!("pair/{writer}/"),
            format!("pair/{writer}0"),
        )))
        .unwrap();
        let values: Vec<&Bytes> = page.entries.iter().map(|(_, v)| v).collect();
        assert!(
            values.is_empty()
                || (values.len() == BATCH_KEYS && values.iter().all(|v| *v == values[0])),
            "writer {writer}: a scan saw half a batch: {values:?}"
        );
    }
}

async fn check_final(db: &Db, rounds: u64) {
    for writer in 0..WRITERS {
        let pairs = (0..BATCH_KEYS).map(|k| pair_key(writer, k));
        for key in pairs.chain([key("seq", writer, "x"), key("seq", writer, "y")]) {
            let got = db.get(key.clone()).await.unwrap();
            assert_eq!(got, Some(value(rounds)), "{key:?}");
        }
    }
}

async fn run(options: Options, rounds: u64) {
    let db = Db::open(options.clone()).await.unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let db = db.clone();
            std::thread::spawn(move || (1..=rounds).for_each(|n| write_round(&db, writer, n)))
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (db, writing) = (db.clone(), writing.clone());
            std::thread::spawn(move || {
                let mut last = [[0u64; 2]; WRITERS];
                while writing.load(Ordering::Acquire) {
                    read_once(&db, &mut last);
                }
                read_once(&db, &mut last);
            })
        })
        .collect();
    // Joined on a blocking thread: this one runs the memtable actor.
    actix_rt::task::spawn_blocking(move || {
        writers.into_iter().for_each(|h| h.join().unwrap());
        writing.store(false, Ordering::Release);
        readers.into_iter().for_each(|h| h.join().unwrap());
    })
    .await
    .unwrap();
    check_final(&db, rounds).await;
    db.close().await.unwrap();
    let db = common::reopen(options).await;
    check_final(&db, rounds).await;
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn readers_never_see_half_a_batch_or_a_thread_s_writes_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.sync = SyncPolicy::None;
    run(options, ROUNDS).await;
}

/// Tiny memtables: freezes and flushes happen while the threads write.
#[actix_rt::test]
async fn the_same_through_freezes_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::tiny_options(dir.path());
    options.sync = SyncPolicy::None;
    run(options, ROUNDS).await;
}

/// Every write synced: writers park while the group commit runs.
#[actix_rt::test]
async fn the_same_when_every_write_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.sync = SyncPolicy::Always;
    run(options, SYNCED_ROUNDS).await;
}

/// `Db::point_in_time` reads as of its creation: a write made after it is
/// not seen through it, whether the key was in the memtable, flushed to a
/// segment, or absent (RESP's MGET reads its keys through one, together
/// from memory first), read one by one or together.
#[actix_rt::test]
async fn a_point_in_time_does_not_see_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Options::new(dir.path())).await.unwrap();
    db.put("flushed", "old").await.unwrap();
    db.flush().await.unwrap();
    db.put("in-memory", "old").await.unwrap();
    let moment = db.point_in_time();
    db.put("flushed", "new").await.unwrap();
    db.put("in-memory", "new").await.unwrap();
    db.put("absent", "new").await.unwrap();
    db.delete("in-memory").await.unwrap();
    db.flush().await.unwrap();
    assert_eq!(
        moment.get("flushed").await.unwrap(),
        Some(Bytes::from("old"))
    );
    assert_eq!(
        moment.get("in-memory").await.unwrap(),
        Some(Bytes::from("old"))
    );
    assert_eq!(moment.get("absent").await.unwrap(), None);
    assert_eq!(db.get("flushed").await.unwrap(), Some(Bytes::from("new")));
    assert!(matches!(
        moment.get("").await,
        Err(naive_kv::Error::InvalidArgument(_))
    ));
    // Read together from memory (MGET's first try), the same answers; the
    // refused key is left to `get`.
    let keys: [&[u8]; 4] = [b"flushed", b"in-memory", b"absent", b""];
    let mut answers: Vec<Option<Option<Bytes>>> = vec![None; keys.len()];
    moment.get_many_now(&keys, |at, read| answers[at] = Some(read.unwrap()));
    assert_eq!(
        answers,
        [
            Some(Some(Bytes::from("old"))),
            Some(Some(Bytes::from("old"))),
            Some(None),
            None
        ]
    );
    drop(moment);
    db.close().await.unwrap();
}
