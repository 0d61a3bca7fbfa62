//! Checkpoints of a live database: the copy opens as a database holding
//! every write acknowledged before the call and a prefix of the writes made
//! during it, checks clean, and stays intact while the source compacts; a
//! power loss at any step of a checkpoint leaves the source whole and the
//! copy either unopenable or complete.

mod common;

use std::path::Path;
use std::sync::Arc;

use naive_kv::engine::check_database;
use naive_kv::fs::sim::SimFs;
use naive_kv::{Db, Error, Options};

fn key(i: usize) -> String {
    format!("key{i:06}")
}

#[actix_rt::test]
async fn a_checkpoint_taken_during_writes_holds_a_consistent_prefix() {
    let (source, copies) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Db::open(common::tiny_options(source.path())).await.unwrap();
    for i in 0..300 {
        db.put(key(i), format!("v{i}")).await.unwrap();
    }
    let writer = {
        let db = db.clone();
        actix_rt::spawn(async move {
            for i in 300..900 {
                db.put(key(i), format!("v{i}")).await.unwrap();
            }
        })
    };
    let target = copies.path().join("snapshot-1");
    let taken = db.checkpoint(&target).await.unwrap();
    writer.await.unwrap();
    db.compact().await.unwrap();
    assert!(taken.seq >= 300, "{taken:?}");

    let report = check_database(&naive_kv::fs::StdFs, &target).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let copy = Db::open(common::tiny_options(&target)).await.unwrap();
    let mut present = Vec::new();
    for i in 0..900 {
        present.push(copy.get(key(i)).await.unwrap().is_some());
    }
    let held = present.iter().take_while(|p| **p).count();
    assert!(held >= 300, "only {held} keys");
    assert!(
        present[held..].iter().all(|p| !p),
        "not a prefix: {held} then more"
    );
    assert_eq!(held as u64, taken.seq, "{taken:?}");
    copy.put("only-in-copy", "1").await.unwrap();
    copy.close().await.unwrap();
    assert!(db.get("only-in-copy").await.unwrap().is_none());
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn a_checkpoint_refuses_a_directory_that_is_not_empty() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(target.path().join("keep.txt"), b"mine").unwrap();
    let db = Db::open(Options::new(source.path())).await.unwrap();
    db.put("a", "1").await.unwrap();
    match db.checkpoint(target.path()).await {
        Err(Error::InvalidArgument(message)) => assert!(message.contains("not empty")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(target.path().join("keep.txt")).unwrap(),
        b"mine"
    );
    db.close().await.unwrap();
}

const CRASH_KEYS: usize = 120;

fn sim_options(fs: &SimFs, dir: &str) -> Options {
    let mut options = common::tiny_options(Path::new(dir));
    options.fs = Arc::new(fs.clone());
    options
}

/// Every key of `db` that [`CRASH_KEYS`] writes could have made, and its value.
async fn present(db: &Db) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for i in 0..CRASH_KEYS {
        out.push((key(i), db.get(key(i)).await.unwrap().map(|v| v.to_vec())));
    }
    out
}

fn all_written() -> Vec<(String, Option<Vec<u8>>)> {
    (0..CRASH_KEYS)
        .map(|i| (key(i), Some(format!("v{i}").into_bytes())))
        .collect()
}

/// Writes [`CRASH_KEYS`] keys into /db (some flushed to segments, the rest
/// in the WAL), cuts the power `cut_after` mutating steps into a
/// checkpoint to /ckpt (never, if `None`), and returns the steps taken
/// while the checkpoint ran.
fn checkpoint_with_power_cut(fs: &SimFs, cut_after: Option<u64>) -> u64 {
    actix_rt::System::new().block_on(async {
        let db = Db::open(sim_options(fs, "/db")).await.unwrap();
        for i in 0..CRASH_KEYS {
            db.put(key(i), format!("v{i}")).await.unwrap();
            if i == CRASH_KEYS / 2 {
                db.flush().await.unwrap();
            }
        }
        let before = fs.steps().unwrap();
        if let Some(cut) = cut_after {
            fs.power_off_at(before + cut).unwrap();
        }
        let taken = db.checkpoint("/ckpt").await;
        // Background flushes and compactions take steps too, so a cut
        // meant for the checkpoint may land after it: then it succeeded.
        assert!(cut_after.is_some() || taken.is_ok(), "{taken:?}");
        let steps = fs.steps().unwrap() - before;
        drop(db); // no close: the power is off
        steps
    })
}

#[test]
fn a_power_loss_during_a_checkpoint_leaves_the_source_whole_and_the_copy_all_or_nothing() {
    let steps = checkpoint_with_power_cut(&SimFs::new(1), None);
    assert!(steps >= 5, "a checkpoint took only {steps} mutating steps");
    let (mut unopenable, mut complete) = (0, 0);
    for cut in 1..=steps {
        let fs = SimFs::new(cut);
        checkpoint_with_power_cut(&fs, Some(cut));
        let rebooted = fs.crash().unwrap();
        actix_rt::System::new().block_on(async {
            let source = Db::open(sim_options(&rebooted, "/db")).await.unwrap();
            assert_eq!(
                present(&source).await,
                all_written(),
                "source after cut {cut}"
            );
            source.close().await.unwrap();
            // A directory that never got a file holds no checkpoint at all.
            let names = rebooted.names(Path::new("/ckpt")).unwrap_or_default();
            if names.is_empty() {
                unopenable += 1;
                return;
            }
            match Db::open(sim_options(&rebooted, "/ckpt")).await {
                Err(_) => unopenable += 1,
                Ok(copy) => {
                    assert_eq!(
                        present(&copy).await,
                        all_written(),
                        "copy after cut {cut}: {names:?}"
                    );
                    copy.close().await.unwrap();
                    complete += 1;
                }
            }
        });
    }
    assert!(unopenable > 0, "no cut left the copy unfinished");
    eprintln!("{steps} cut points: {unopenable} copies unopenable, {complete} complete");
}
