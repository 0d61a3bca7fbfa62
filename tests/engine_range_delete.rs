//! Range deletes (`Db::delete_range`, `WriteBatch::delete_range`): what
//! reads and scans see, that they survive a reopen and a power loss, and
//! that compaction gives the space back on its own.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::fs::sim::SimFs;
use naive_kv::{Db, Options, ScanRequest, SyncPolicy, WriteBatch};

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key{i:05}"))
}

fn value(i: usize, round: usize) -> Bytes {
    Bytes::from(format!("{round}:{i}:{}", "v".repeat(100)))
}

async fn all(db: &Db, reverse: bool) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::new();
    let mut request = ScanRequest {
        limit: 7,
        reverse,
        ..ScanRequest::all()
    };
    loop {
        let page = db.scan(request.clone()).await.unwrap();
        out.extend(page.entries.iter().cloned());
        match page.continuation(reverse) {
            Some(next) if reverse => request.end = std::ops::Bound::Excluded(next),
            Some(next) => request.start = std::ops::Bound::Included(next),
            None => return out,
        }
    }
}

async fn check(db: &Db, model: &BTreeMap<Bytes, Bytes>) {
    let expected: Vec<(Bytes, Bytes)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(all(db, false).await == expected, "forward scan differs");
    let mut reversed = expected;
    reversed.reverse();
    assert!(all(db, true).await == reversed, "reverse scan differs");
    for i in 0..120 {
        assert_eq!(db.get(key(i)).await.unwrap(), model.get(&key(i)).cloned());
    }
}

fn delete_model_range(model: &mut BTreeMap<Bytes, Bytes>, start: usize, end: usize) {
    model.retain(|k, _| *k < key(start) || *k >= key(end));
}

#[actix_rt::test]
async fn reads_and_scans_skip_deleted_ranges_in_memtables_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    let mut model = BTreeMap::new();
    for i in 0..100 {
        db.put(key(i), value(i, 0)).await.unwrap();
        model.insert(key(i), value(i, 0));
    }
    db.flush().await.unwrap(); // part in segments, part in the memtable
    for i in 50..100 {
        db.put(key(i), value(i, 1)).await.unwrap();
        model.insert(key(i), value(i, 1));
    }
    db.delete_range(key(20), key(70)).await.unwrap();
    delete_model_range(&mut model, 20, 70);
    check(&db, &model).await;
    // Writes after the range delete are kept.
    db.put(key(30), value(30, 2)).await.unwrap();
    model.insert(key(30), value(30, 2));
    check(&db, &model).await;
    // Through flushes and a full compaction it stays the same.
    db.flush().await.unwrap();
    check(&db, &model).await;
    db.compact().await.unwrap();
    check(&db, &model).await;
    // An empty end deletes to the end of the key space.
    db.delete_range(key(90), Bytes::new()).await.unwrap();
    delete_model_range(&mut model, 90, 100_000);
    check(&db, &model).await;
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn a_batch_applies_its_range_deletes_after_its_puts_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    for i in 0..10 {
        db.put(key(i), value(i, 0)).await.unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.delete_range(key(0), key(5));
    batch.put(key(2), value(2, 1));
    batch.put(key(7), value(7, 1));
    assert_eq!(batch.len(), 3);
    db.write(batch).await.unwrap();
    assert_eq!(db.get(key(2)).await.unwrap(), None, "range deletes go last");
    assert_eq!(db.get(key(4)).await.unwrap(), None);
    assert_eq!(db.get(key(5)).await.unwrap(), Some(value(5, 0)));
    assert_eq!(db.get(key(7)).await.unwrap(), Some(value(7, 1)));
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn bad_ranges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    let refused = db.delete_range(key(5), key(5)).await;
    assert!(matches!(refused, Err(naive_kv::Error::InvalidArgument(_))));
    let refused = db.delete_range(key(6), key(5)).await;
    assert!(matches!(refused, Err(naive_kv::Error::InvalidArgument(_))));
    let huge = Bytes::from(vec![b'k'; 1 << 20]);
    let refused = db.delete_range(key(1), huge).await;
    assert!(matches!(refused, Err(naive_kv::Error::KeyTooLarge { .. })));
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn range_deletes_survive_reopen_from_the_wal_and_from_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::tiny_options(dir.path());
    options.memtable_bytes = 64 << 20; // nothing flushes but the freeze after a range delete
    let db = Db::open(options.clone()).await.unwrap();
    let mut model = BTreeMap::new();
    for i in 0..100 {
        db.put(key(i), value(i, 0)).await.unwrap();
        model.insert(key(i), value(i, 0));
    }
    db.flush().await.unwrap();
    db.delete_range(key(10), key(40)).await.unwrap();
    delete_model_range(&mut model, 10, 40);
    // Closed at once: the WAL may still be the only place that holds it.
    db.close().await.unwrap();
    let db = common::reopen(options.clone()).await;
    check(&db, &model).await;
    // Installed and persisted, with the deleted data still in a segment.
    db.delete_range(key(60), key(80)).await.unwrap();
    delete_model_range(&mut model, 60, 80);
    db.flush().await.unwrap();
    check(&db, &model).await;
    db.close().await.unwrap();
    let db = common::reopen(options).await;
    check(&db, &model).await;
    db.close().await.unwrap();
}

fn compaction_options(dir: &Path) -> Options {
    let mut options = common::tiny_options(dir);
    options.memtable_bytes = 64 << 10;
    options.target_segment_bytes = 32 << 10;
    options.level1_bytes = 64 << 10;
    options.block_bytes = 1024;
    // Its bounds compare raw bytes (LZ4, the default, shrinks these values).
    options.compression = naive_kv::options::Compression::None;
    options
}

/// Waits until `done` holds of the stats, for up to 10 s.
async fn wait_for(db: &Db, what: &str, done: impl Fn(&naive_kv::Stats) -> bool) {
    let started = Instant::now();
    loop {
        let stats = db.stats().await.unwrap();
        if done(&stats) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: still not so after 10 s: {stats:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn compaction_gives_the_space_back_without_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let options = compaction_options(dir.path());
    let db = Db::open(options.clone()).await.unwrap();
    for round in 0..3 {
        for chunk in 0..20 {
            let mut batch = WriteBatch::new();
            for i in chunk * 100..(chunk + 1) * 100 {
                batch.put(key(i), value(i, round));
            }
            db.write(batch).await.unwrap();
        }
    }
    db.flush().await.unwrap();
    let before = db.stats().await.unwrap().get("segment_bytes");
    assert!(before > 200 << 10, "only {before} bytes in segments");
    db.delete_range(key(0), key(1990)).await.unwrap();
    // No compact(), no more writes: the freeze, the flush and the reclaim
    // compactions start on their own.
    wait_for(&db, "segments shrink", |s| {
        s.get("segment_bytes") * 20 < before && s.get("frozen_memtables") == 0
    })
    .await;
    // The replaced segments' files are removed just after the new set is
    // installed (the stats above show the set): give the removal a moment.
    let sst_bytes = || -> u64 {
        common::files_ending(dir.path(), ".sst")
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    };
    let started = Instant::now();
    while sst_bytes() * 20 >= before && started.elapsed() < Duration::from_secs(10) {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let on_disk = sst_bytes();
    assert!(
        on_disk * 20 < before,
        "{on_disk} bytes of .sst files left of {before} after 10 s"
    );
    let left = all(&db, false).await;
    let expected: Vec<(Bytes, Bytes)> = (1990..2000).map(|i| (key(i), value(i, 2))).collect();
    assert!(left == expected);
    db.close().await.unwrap();
    // The tombstone was retired: the manifest no longer needs it, and the
    // data stays deleted (its versions are gone from every segment).
    let db = common::reopen(options).await;
    assert!(all(&db, false).await == expected);
    db.close().await.unwrap();
}

/// One batch of a crash workload: puts, then range deletes.
type Step = (Vec<(usize, usize)>, Vec<(usize, usize)>);

fn crash_workload() -> Vec<Step> {
    vec![
        ((0..60).map(|i| (i, 0)).collect(), vec![]),
        (vec![], vec![(10, 40)]),
        (vec![(20, 1), (50, 1)], vec![]),
        (vec![(5, 2)], vec![(0, 30), (55, 58)]),
        ((30..45).map(|i| (i, 3)).collect(), vec![]),
    ]
}

fn state_after(steps: &[Step]) -> BTreeMap<Bytes, Bytes> {
    let mut model = BTreeMap::new();
    for (puts, ranges) in steps {
        for &(i, round) in puts {
            model.insert(key(i), value(i, round));
        }
        for &(start, end) in ranges {
            delete_model_range(&mut model, start, end);
        }
    }
    model
}

fn sim_options(fs: &SimFs) -> Options {
    let mut options = common::tiny_options(Path::new("/db"));
    options.fs = Arc::new(fs.clone());
    options.sync = SyncPolicy::Always;
    options
}

/// Runs the workload until the power goes; returns how many steps were acked.
fn run_until_power_loss(fs: &SimFs, steps: &[Step]) -> usize {
    actix_rt::System::new().block_on(async {
        let Ok(db) = Db::open(sim_options(fs)).await else {
            return 0;
        };
        let mut acked = 0;
        for (puts, ranges) in steps {
            let mut batch = WriteBatch::new();
            for &(i, round) in puts {
                batch.put(key(i), value(i, round));
            }
            for &(start, end) in ranges {
                batch.delete_range(key(start), key(end));
            }
            if db.write(batch).await.is_err() {
                break;
            }
            acked += 1;
        }
        drop(db);
        acked
    })
}

fn recovered(fs: &SimFs) -> BTreeMap<Bytes, Bytes> {
    actix_rt::System::new().block_on(async {
        let db = Db::open(sim_options(fs)).await.unwrap();
        let contents = all(&db, false).await.into_iter().collect();
        db.close().await.unwrap();
        contents
    })
}

#[test]
fn a_power_loss_keeps_every_acknowledged_range_delete_and_no_half_batch() {
    let steps = crash_workload();
    let dry = SimFs::new(1);
    assert_eq!(run_until_power_loss(&dry, &steps), steps.len());
    let total = dry.steps().unwrap();
    for step in (1..total).step_by(usize::try_from(total / 40).unwrap_or(1).max(1)) {
        let fs = SimFs::new(step);
        fs.power_off_at(step).unwrap();
        let acked = run_until_power_loss(&fs, &steps);
        let after = recovered(&fs.crash().unwrap());
        let matches = (acked..=steps.len()).find(|n| state_after(&steps[..*n]) == after);
        assert!(
            matches.is_some(),
            "power off at step {step}: {acked} batches acked, recovered state is no prefix at or past it"
        );
    }
}

/// A key deleted by a range delete keeps the range delete's sequence number
/// as its version after the flush that drops its value (what WATCH and
/// conditional writes compare); a key the range never held stays at 0.
#[actix_rt::test]
async fn a_range_deleted_key_keeps_its_version_after_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(common::tiny_options(dir.path())).await.unwrap();
    db.put("w", "1").await.unwrap();
    db.delete_range("a", "z").await.unwrap();
    let deleted_at = db.visible_seq();
    for flushed in [false, true] {
        if flushed {
            db.flush().await.unwrap();
        }
        let read = db.get_versioned("w").await.unwrap();
        assert_eq!(read.value, None, "flushed: {flushed}");
        assert_eq!(read.version.seq, deleted_at, "flushed: {flushed}");
        let never = db.get_versioned("q").await.unwrap();
        assert_eq!(never.version.seq, 0, "flushed: {flushed}");
    }
    db.close().await.unwrap();
}
