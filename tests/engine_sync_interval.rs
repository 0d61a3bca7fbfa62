//! `SyncPolicy::Interval`: writes are acknowledged once written (made on the
//! writers' own threads, `memtable/direct.rs`), the WAL is fdatasynced in the
//! background every interval, so a power loss loses at most the last
//! interval; and an idle database does not sync at all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use naive_kv::fs::sim::SimFs;
use naive_kv::{Db, Options, SyncPolicy};

const INTERVAL: Duration = Duration::from_millis(20);

fn options(fs: &SimFs) -> Options {
    let mut options = Options::new("/db");
    options.fs = Arc::new(fs.clone());
    options.read_threads = 1;
    options.sync = SyncPolicy::Interval(INTERVAL);
    options
}

async fn syncs(db: &Db) -> u64 {
    db.stats().await.unwrap().get("wal_syncs")
}

#[test]
fn writes_older_than_an_interval_survive_a_power_loss_and_an_idle_wal_is_not_synced() {
    let fs = SimFs::new(5);
    let mut model = BTreeMap::new();
    actix_rt::System::new().block_on(async {
        let db = Db::open(options(&fs)).await.unwrap();
        for i in 0..500 {
            let (key, value) = (format!("key{i:04}"), format!("value{i}"));
            db.put(key.clone(), value.clone()).await.unwrap();
            model.insert(key, value);
        }
        // A few intervals: the background sync covers every write above.
        actix_rt::time::sleep(INTERVAL * 5).await;
        let after_writes = syncs(&db).await;
        assert!(after_writes > 0, "no sync in five intervals after writes");
        // Nothing written since: nothing to sync.
        actix_rt::time::sleep(INTERVAL * 10).await;
        assert_eq!(syncs(&db).await, after_writes, "an idle WAL was synced");
        // The power goes with the database open: a crash ends the disk of
        // this boot, and the handle is dropped unclosed.
        drop(db);
    });
    let fs = fs.crash().unwrap();
    actix_rt::System::new().block_on(async {
        let db = Db::open(options(&fs)).await.unwrap();
        for (key, value) in &model {
            let got = db.get(key.clone()).await.unwrap();
            assert_eq!(got.as_deref(), Some(value.as_bytes()), "lost {key}");
        }
        db.close().await.unwrap();
    });
}
