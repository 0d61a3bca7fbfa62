//! A full disk under the WAL: the failed writes and the ones made while the
//! disk stays full fail with `StorageFull`, reads go on, and writes resume
//! by themselves once a new WAL can be written, with no reopen; every
//! acknowledged write is there, also after a power loss.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::fs::sim::{Fault, Op, SimFs};
use naive_kv::{Db, Error, Options, SyncPolicy};

fn options(fs: &SimFs, sync: SyncPolicy) -> Options {
    let mut options = Options::new("/db");
    options.fs = Arc::new(fs.clone());
    options.read_threads = 1;
    options.sync = sync;
    options
}

fn assert_disk_full(result: naive_kv::Result<()>, what: &str) {
    match result {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), ErrorKind::StorageFull, "{what}")
        }
        other => panic!("{what}: expected a full-disk error, got {other:?}"),
    }
}

async fn put(db: &Db, model: &mut BTreeMap<Bytes, Bytes>, key: String) {
    let value = format!("value of {key}");
    db.put(key.clone(), value.clone()).await.unwrap();
    model.insert(Bytes::from(key), Bytes::from(value));
}

/// Waits (up to 20 s) until a write succeeds again; it is acknowledged.
async fn until_writable(db: &Db, model: &mut BTreeMap<Bytes, Bytes>) -> u32 {
    let started = Instant::now();
    for attempt in 0.. {
        let key = format!("probe{attempt}");
        match db.put(key.clone(), "p").await {
            Ok(()) => {
                model.insert(Bytes::from(key), Bytes::from("p"));
                return attempt;
            }
            Err(error) => assert_disk_full(Err(error), "while the disk is full"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "writes never resumed"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

async fn assert_holds(db: &Db, model: &BTreeMap<Bytes, Bytes>, what: &str) {
    for (key, value) in model {
        let got = db.get(key.clone()).await.unwrap();
        assert_eq!(got.as_ref(), Some(value), "{what}: lost {key:?}");
    }
}

/// The failed write never reached the WAL whole (these faults write none
/// or 7 bytes of it), so it must not show, not even once later numbers are
/// published past its own.
async fn assert_failed_write_absent(db: &Db, what: &str) {
    let got = db.get("failed").await.unwrap();
    assert_eq!(got, None, "{what}: the failed write shows");
}

/// Under `SyncPolicy::None` writes are made by the writers' own threads
/// (`memtable/direct.rs`), and acknowledged ones are durable only once
/// synced: the database is closed (which syncs) before the power loss.
fn scenario(faults: Vec<Fault>, what: &'static str, sync: SyncPolicy) {
    let fs = SimFs::new(11);
    let mut model = BTreeMap::new();
    actix_rt::System::new().block_on(async {
        let db = Db::open(options(&fs, sync)).await.unwrap();
        for i in 0..20 {
            put(&db, &mut model, format!("before{i}")).await;
        }
        for fault in faults {
            fs.inject(fault).unwrap();
        }
        assert_disk_full(db.put("failed", "x").await, what);
        assert_disk_full(db.put("refused", "x").await, what);
        // Reads go on while writes are refused.
        assert_holds(&db, &model, what).await;
        let attempts = until_writable(&db, &mut model).await;
        assert!(
            attempts > 0,
            "{what}: the first retry cannot have succeeded yet"
        );
        for i in 0..20 {
            put(&db, &mut model, format!("after{i}")).await;
        }
        assert_holds(&db, &model, what).await;
        assert_failed_write_absent(&db, what).await;
        db.flush().await.unwrap();
        put(&db, &mut model, "last".into()).await;
        if sync == SyncPolicy::None {
            db.close().await.unwrap();
        }
    });
    // Power loss now: the acknowledged writes survive, and the WALs (the old
    // one with its unknown tail, the new one with its resume marker) open.
    let fs = fs.crash().unwrap();
    actix_rt::System::new().block_on(async {
        let db = Db::open(options(&fs, sync)).await.unwrap();
        assert_holds(&db, &model, what).await;
        assert_failed_write_absent(&db, what).await;
        db.put("reopened", "yes").await.unwrap();
        db.close().await.unwrap();
    });
}

/// The append fails, then two retries fail writing the resume marker.
fn failed_append() -> Vec<Fault> {
    vec![
        Fault::fail(Op::Write, ErrorKind::StorageFull)
            .on_path(".wal")
            .times(3),
    ]
}

/// Half the append is written, then two retries fail creating the WAL.
fn short_append_then_failed_creates() -> Vec<Fault> {
    vec![
        Fault::short_write(7, ErrorKind::StorageFull).on_path(".wal"),
        Fault::fail(Op::Create, ErrorKind::StorageFull)
            .on_path(".wal")
            .times(2),
    ]
}

#[test]
fn a_failed_append_then_failed_retries_resume_without_reopen() {
    scenario(failed_append(), "group append fails", SyncPolicy::Always);
}

#[test]
fn a_half_written_group_and_failed_creates_resume_without_reopen() {
    let what = "short group append";
    scenario(short_append_then_failed_creates(), what, SyncPolicy::Always);
}

#[test]
fn a_failed_direct_append_then_failed_retries_resume_without_reopen() {
    scenario(failed_append(), "direct append fails", SyncPolicy::None);
}

#[test]
fn a_half_written_direct_append_and_failed_creates_resume_without_reopen() {
    let what = "short direct append";
    scenario(short_append_then_failed_creates(), what, SyncPolicy::None);
}
