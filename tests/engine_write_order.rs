//! One caller's writes apply in the order it made them, whichever way each
//! goes in. Under `SyncPolicy::None` a plain put is made on the caller's own
//! thread (`memtable/direct.rs`), while range deletes and conditional writes
//! are queued for the memtable actor: a plain write made while a queued one
//! is still outstanding must come after it, not overtake it.

mod common;

use futures_util::future::join;
use naive_kv::{Db, Options, SyncPolicy, WriteBatch};

fn options(dir: &std::path::Path) -> Options {
    let mut options = common::tiny_options(dir);
    options.sync = SyncPolicy::None;
    options
}

#[actix_rt::test]
async fn a_put_made_after_a_queued_range_delete_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(options(dir.path())).await.unwrap();
    for round in 0..200 {
        let key = format!("k{round:03}");
        db.put(key.clone(), "old").await.unwrap();
        let delete = db.delete_range(key.clone(), format!("{key}\0"));
        let put = db.put(key.clone(), "new");
        let (deleted, put) = join(delete, put).await;
        deleted.unwrap();
        put.unwrap();
        let got = db.get(key).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"new"[..]), "round {round}");
    }
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn a_put_made_after_a_queued_conditional_write_comes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(options(dir.path())).await.unwrap();
    for round in 0..200 {
        let key = format!("k{round:03}");
        db.put(key.clone(), "0").await.unwrap();
        let read = db.get_versioned(key.clone()).await.unwrap();
        let mut batch = WriteBatch::new();
        batch.put(key.clone(), "conditional");
        batch.require_unchanged(key.clone(), read.version);
        let conditional = db.write(batch);
        let plain = db.put(key.clone(), "plain");
        let (conditional, plain) = join(conditional, plain).await;
        conditional.unwrap_or_else(|e| panic!("round {round}: made first, refused: {e}"));
        plain.unwrap();
        let got = db.get(key).await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"plain"[..]), "round {round}");
    }
    db.close().await.unwrap();
}
