//! Checkpoints of a live database: the copy opens as a database holding
//! every write acknowledged before the call and a prefix of the writes made
//! during it, checks clean, and stays intact while the source compacts.

mod common;

use naive_kv::engine::check_database;
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
