//! Injected I/O faults at each call site of the write path, flush and
//! compaction, and power loss between each two steps of a flush and of a
//! compaction, on a [`SimFs`].
//!
//! The rules checked: a failed call reaches the caller as `Error::Io`; an
//! acknowledged write is never lost; after the WAL fails, every later write
//! fails until the database is reopened (it may not trust a WAL whose state
//! it does not know), as `Error::Poisoned` naming that failure, or as
//! `Error::Io` of kind `StorageFull` while the disk is full; a failed flush or compaction leaves the database
//! usable and a later one succeeds; reopening with the faults gone (after a
//! clean stop or after a power loss) gives every acknowledged write back.
//! A write that failed may or may not be there.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use naive_kv::fs::sim::{Fault, Op, SimFs};
use naive_kv::{Db, Error, Options, SyncPolicy};

type Model = BTreeMap<Bytes, Bytes>;

fn options(fs: &SimFs) -> Options {
    let mut options = common::tiny_options(Path::new("/db"));
    // Flushes and compactions only when a test asks, so that the Nth call
    // of a kind is always the same call.
    options.memtable_bytes = 1 << 20;
    options.l0_compaction_trigger = 100;
    options.level1_bytes = 1 << 30;
    // Tables written in runs of 256 bytes: a segment takes several writes,
    // so a fault on its Nth write lands in the middle of it.
    options.table_write_buffer_bytes = 256;
    options.fs = Arc::new(fs.clone());
    options
}

fn block_on<F: Future>(future: F) -> F::Output {
    actix_rt::System::new().block_on(future)
}

/// Puts `count` keys starting at `first`, all of which must succeed.
async fn put_acked(db: &Db, model: &mut Model, first: usize, count: usize) {
    for i in first..first + count {
        let (key, value) = (format!("key{i:05}"), format!("value{i}-{}", "v".repeat(40)));
        db.put(key.clone(), value.clone()).await.unwrap();
        model.insert(Bytes::from(key), Bytes::from(value));
    }
}

/// Reopens and checks that every acknowledged write is there.
fn assert_recovers(fs: &SimFs, model: &Model, what: &str) {
    wait_until_unlocked(fs);
    block_on(async {
        let db = match Db::open(options(fs)).await {
            Ok(db) => db,
            Err(error) => panic!("{what}: reopening failed: {error}"),
        };
        for (key, value) in model {
            let got = db.get(key.clone()).await.unwrap();
            assert_eq!(got.as_ref(), Some(value), "{what}: lost {key:?}");
        }
        db.put("still-writable", "yes").await.unwrap();
        db.close().await.unwrap();
    });
}

/// Waits (up to 5 s) for the directory lock of a closed `Db` to go.
///
/// Known engine bug, not ours to fix here: `Db::close` answers before the
/// memtable actor and the compactor, which hold clones of the directory
/// lock, are dropped, so an open right after `close` can fail with
/// `Locked`.
fn wait_until_unlocked(fs: &SimFs) {
    use naive_kv::fs::FileSystem;
    for _ in 0..500 {
        match fs.lock(Path::new("/db/LOCK")) {
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => return,
        }
    }
    panic!("the directory is still locked 5 s after close");
}

fn assert_io(result: naive_kv::Result<()>, what: &str) -> Arc<std::io::Error> {
    match result {
        Err(Error::Io { source, .. }) => source,
        other => panic!("{what}: expected Error::Io, got {other:?}"),
    }
}

/// The WAL's call sites: append, fdatasync, and the creation (and directory
/// sync) of the next WAL when the memtable is frozen.
fn wal_faults() -> Vec<(&'static str, Fault, bool)> {
    vec![
        (
            "WAL write, disk full",
            Fault::fail(Op::Write, ErrorKind::StorageFull).on_path(".wal"),
            false,
        ),
        (
            "WAL write, I/O error",
            Fault::fail(Op::Write, ErrorKind::Other).on_path(".wal"),
            false,
        ),
        (
            "WAL short write",
            Fault::short_write(7, ErrorKind::StorageFull).on_path(".wal"),
            false,
        ),
        (
            "WAL fsync",
            Fault::fail(Op::Sync, ErrorKind::Other).on_path(".wal"),
            false,
        ),
        (
            "next WAL create",
            Fault::fail(Op::Create, ErrorKind::StorageFull).on_path(".wal"),
            true,
        ),
        (
            "next WAL directory sync",
            Fault::fail(Op::SyncDir, ErrorKind::Other),
            true,
        ),
    ]
}

#[test]
fn wal_faults_fail_the_write_and_every_later_one_until_reopen() {
    wal_faults_fail_writes(SyncPolicy::Always, &[false, true]);
}

/// The same for writes made on the writers' own threads
/// (`memtable/direct.rs`), whose append faults are theirs to report. Their
/// acknowledged writes are not synced, so there is no power loss here.
#[test]
fn direct_wal_write_faults_fail_the_write_and_every_later_one_until_reopen() {
    wal_faults_fail_writes(SyncPolicy::None, &[false]);
}

fn wal_faults_fail_writes(sync: SyncPolicy, crashes: &[bool]) {
    let faults = wal_faults().into_iter();
    let faults = faults.filter(|(what, ..)| sync == SyncPolicy::Always || what.contains("write"));
    for (what, fault, at_freeze) in faults {
        let full = what.contains("disk full") || what.contains("short write");
        for &crash in crashes {
            let fs = SimFs::new(7);
            let mut model = Model::new();
            block_on(async {
                let mut options = options(&fs);
                options.sync = sync;
                let db = Db::open(options).await.unwrap();
                put_acked(&db, &mut model, 0, 50).await;
                fs.inject(fault.clone()).unwrap();
                if at_freeze {
                    // The frozen memtable is still flushed; only the next
                    // WAL is missing, so `flush` itself may succeed.
                    if let Err(error) = db.flush().await {
                        assert!(matches!(error, Error::Io { .. }), "{what}: {error:?}");
                    }
                } else {
                    assert_io(db.put("failed", "write").await, what);
                }
                assert_eq!(fs.faults_fired().unwrap(), 1, "{what}");
                // The fault fired once; the WAL stays refused all the same:
                // a full disk as a full disk (it resumes once there is
                // space), anything else as a poisoned database whose cause
                // is the failure.
                for i in 0..3 {
                    let later = db.put(format!("later{i}"), "x").await;
                    let what = format!("{what}: a write after the failure");
                    match later {
                        Err(Error::Poisoned { cause }) => {
                            assert!(matches!(*cause, Error::Io { .. }), "{what}: {cause:?}");
                            assert!(!full, "{what}: a full disk poisoned the database");
                        }
                        other => {
                            let source = assert_io(other, &what);
                            assert_eq!(source.kind(), ErrorKind::StorageFull, "{what}");
                        }
                    }
                }
                let _ = db.close().await;
            });
            let fs = if crash { fs.crash().unwrap() } else { fs };
            assert_recovers(&fs, &model, what);
        }
    }
}

/// A failed flush or compaction removes what it wrote (an outside probe
/// found a segment's `.sst.tmp` left when its last write or its rename
/// failed: on a full disk, space held until the next open).
fn assert_no_temporary_files(fs: &SimFs, what: &str) {
    let names = fs.names("/db".as_ref()).unwrap();
    let left: Vec<&String> = names.iter().filter(|n| n.ends_with(".tmp")).collect();
    assert!(left.is_empty(), "{what}: left {left:?}");
}

/// A flush's calls after `db.flush()` freezes the memtable: the next WAL is
/// created and the directory synced (#1), then the segment is written as
/// `.sst.tmp`, synced, renamed, the directory synced (#2), the manifest
/// written as `MANIFEST.tmp`, synced, renamed, the directory synced (#3),
/// and the flushed WAL removed. Each site, with whether `flush` must fail.
fn flush_faults() -> Vec<(&'static str, Fault, bool)> {
    let other = ErrorKind::Other;
    vec![
        (
            "segment create",
            Fault::fail(Op::Create, ErrorKind::StorageFull).on_path(".sst.tmp"),
            true,
        ),
        (
            "segment write",
            Fault::fail(Op::Write, ErrorKind::StorageFull).on_path(".sst.tmp"),
            true,
        ),
        (
            "segment write, 3rd",
            Fault::fail(Op::Write, other).on_path(".sst.tmp").nth(3),
            true,
        ),
        (
            "segment short write",
            Fault::short_write(10, ErrorKind::StorageFull).on_path(".sst.tmp"),
            true,
        ),
        (
            "segment fsync",
            Fault::fail(Op::Sync, other).on_path(".sst.tmp"),
            true,
        ),
        (
            "segment rename",
            Fault::fail(Op::Rename, other).on_path(".sst.tmp"),
            true,
        ),
        (
            "segment directory sync",
            Fault::fail(Op::SyncDir, other).nth(2),
            true,
        ),
        (
            "segment open",
            Fault::fail(Op::Open, other).on_path(".sst"),
            true,
        ),
        (
            "manifest create",
            Fault::fail(Op::Create, ErrorKind::StorageFull).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest write",
            Fault::fail(Op::Write, ErrorKind::StorageFull).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest short write",
            Fault::short_write(5, ErrorKind::StorageFull).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest fsync",
            Fault::fail(Op::Sync, other).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest rename",
            Fault::fail(Op::Rename, other).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest directory sync",
            Fault::fail(Op::SyncDir, other).nth(3),
            true,
        ),
        (
            "flushed WAL removal",
            Fault::fail(Op::Remove, other).on_path(".wal"),
            false,
        ),
    ]
}

#[test]
fn flush_faults_reach_the_caller_and_a_later_flush_succeeds() {
    for (what, fault, fails) in flush_faults() {
        let fs = SimFs::new(11);
        let mut model = Model::new();
        block_on(async {
            let db = Db::open(options(&fs)).await.unwrap();
            put_acked(&db, &mut model, 0, 80).await;
            fs.inject(fault).unwrap();
            let flushed = db.flush().await;
            assert_eq!(
                fs.faults_fired().unwrap(),
                1,
                "{what}: the fault did not fire"
            );
            if fails {
                assert_io(flushed, what);
            } else {
                flushed.unwrap();
            }
            assert_no_temporary_files(&fs, what);
            // A failed flush does not touch the WAL: writes go on.
            put_acked(&db, &mut model, 80, 20).await;
            db.flush().await.unwrap();
            for (key, value) in &model {
                assert_eq!(db.get(key.clone()).await.unwrap().as_ref(), Some(value));
            }
            db.close().await.unwrap();
        });
        assert_recovers(&fs, &model, what);
        assert_recovers(&fs.crash().unwrap(), &model, what);
    }
}

/// A compaction's calls after `db.compact()` with two level-0 segments and
/// an empty memtable: the inputs are read, the output written as
/// `.sst.tmp`, synced, renamed, the directory synced (#1), the output
/// opened, the manifest written, synced, renamed, the directory synced (#2),
/// the inputs removed.
fn compaction_faults() -> Vec<(&'static str, Fault, bool)> {
    let other = ErrorKind::Other;
    vec![
        (
            "input read",
            Fault::fail(Op::Read, other).on_path(".sst"),
            true,
        ),
        (
            "output create",
            Fault::fail(Op::Create, ErrorKind::StorageFull).on_path(".sst.tmp"),
            true,
        ),
        (
            "output write",
            Fault::fail(Op::Write, ErrorKind::StorageFull).on_path(".sst.tmp"),
            true,
        ),
        (
            "output write, 5th",
            Fault::fail(Op::Write, other).on_path(".sst.tmp").nth(5),
            true,
        ),
        (
            "output short write",
            Fault::short_write(3, ErrorKind::StorageFull).on_path(".sst.tmp"),
            true,
        ),
        (
            "output fsync",
            Fault::fail(Op::Sync, other).on_path(".sst.tmp"),
            true,
        ),
        (
            "output rename",
            Fault::fail(Op::Rename, other).on_path(".sst.tmp"),
            true,
        ),
        (
            "output directory sync",
            Fault::fail(Op::SyncDir, other),
            true,
        ),
        (
            "output open",
            Fault::fail(Op::Open, other).on_path(".sst"),
            true,
        ),
        (
            "manifest create",
            Fault::fail(Op::Create, ErrorKind::StorageFull).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest write",
            Fault::fail(Op::Write, ErrorKind::StorageFull).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest fsync",
            Fault::fail(Op::Sync, other).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest rename",
            Fault::fail(Op::Rename, other).on_path("MANIFEST"),
            true,
        ),
        (
            "manifest directory sync",
            Fault::fail(Op::SyncDir, other).nth(2),
            true,
        ),
        (
            "input removal",
            Fault::fail(Op::Remove, other).on_path(".sst"),
            false,
        ),
    ]
}

/// Two level-0 segments and an empty memtable.
async fn two_segments(db: &Db, model: &mut Model) {
    put_acked(db, model, 0, 60).await;
    db.flush().await.unwrap();
    put_acked(db, model, 30, 60).await;
    db.delete("key00001").await.unwrap();
    model.remove(&Bytes::from("key00001"));
    db.flush().await.unwrap();
}

#[test]
fn compaction_faults_reach_the_caller_and_a_later_compaction_succeeds() {
    for (what, fault, fails) in compaction_faults() {
        let fs = SimFs::new(13);
        let mut model = Model::new();
        block_on(async {
            let db = Db::open(options(&fs)).await.unwrap();
            two_segments(&db, &mut model).await;
            fs.inject(fault).unwrap();
            let compacted = db.compact().await;
            assert!(
                fs.faults_fired().unwrap() >= 1,
                "{what}: the fault did not fire"
            );
            if fails {
                assert_io(compacted, what);
            } else {
                compacted.unwrap();
            }
            assert_no_temporary_files(&fs, what);
            fs.clear_faults().unwrap();
            put_acked(&db, &mut model, 100, 10).await;
            db.compact().await.unwrap();
            let stats = db.stats().await.unwrap();
            assert_eq!(stats.get("level_0_segments"), 0, "{what}: {stats:?}");
            for (key, value) in &model {
                assert_eq!(db.get(key.clone()).await.unwrap().as_ref(), Some(value));
            }
            assert_eq!(db.get("key00001").await.unwrap(), None);
            db.close().await.unwrap();
        });
        assert_recovers(&fs, &model, what);
        assert_recovers(&fs.crash().unwrap(), &model, what);
    }
}

/// Runs `setup`, then `job` with the power cut at each step `job` takes
/// (and one past), each time on a fresh disk; after each cut, the state
/// left must open with every write `setup` acknowledged. Returns the
/// number of crash points tried.
fn crash_at_every_step_of(
    what: &str,
    setup: impl AsyncFn(&Db, &mut Model),
    job: impl AsyncFn(&Db) -> naive_kv::Result<()>,
) -> u64 {
    let measure = SimFs::new(1);
    let (before, after) = block_on(async {
        let db = Db::open(options(&measure)).await.unwrap();
        setup(&db, &mut Model::new()).await;
        let before = measure.steps().unwrap();
        job(&db).await.unwrap();
        let after = measure.steps().unwrap();
        drop(db);
        (before, after)
    });
    assert!(
        after > before + 5,
        "{what}: the job took {} steps",
        after - before
    );
    for step in before + 1..=after + 1 {
        let fs = SimFs::new(step);
        let mut model = Model::new();
        block_on(async {
            let db = Db::open(options(&fs)).await.unwrap();
            setup(&db, &mut model).await;
            assert_eq!(
                fs.steps().unwrap(),
                before,
                "{what}: setup is not deterministic"
            );
            fs.power_off_at(step).unwrap();
            let _ = job(&db).await;
            drop(db);
        });
        assert_recovers(
            &fs.crash().unwrap(),
            &model,
            &format!("{what}, power off at step {step}"),
        );
    }
    after + 1 - before
}

#[test]
fn power_loss_between_each_two_steps_of_a_flush() {
    let points = crash_at_every_step_of(
        "flush",
        async |db, model| put_acked(db, model, 0, 120).await,
        async |db| db.flush().await,
    );
    eprintln!("flush: {points} crash points");
}

#[test]
fn power_loss_between_each_two_steps_of_a_compaction() {
    let points = crash_at_every_step_of(
        "compaction",
        async |db, model| two_segments(db, model).await,
        async |db| db.compact().await,
    );
    eprintln!("compaction: {points} crash points");
}
