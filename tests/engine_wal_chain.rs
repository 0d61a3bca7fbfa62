//! A crash just after a WAL rotation: the new WAL holds no write yet, the
//! older one holds the frozen memtable's writes (its flush failed). If the
//! older WAL then loses its last records at a record boundary (a disk that
//! lost the file's tail), the sequence shows no hole: the new WAL's first
//! record used to be written with its first write. Now each WAL starts
//! with an identity record that says which write it follows
//! (`engine/wal_identity.rs`), and open refuses the cut WAL instead of
//! opening without its writes.

mod common;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use naive_kv::format::wal::read_wal;
use naive_kv::format::wal_file_name;
use naive_kv::fs::FileSystem;
use naive_kv::fs::sim::{Fault, Op, SimFs};
use naive_kv::proto::storage::WalBatch;
use naive_kv::{Db, Error, SyncPolicy};
use prost::Message as _;

const KEYS: usize = 100;

/// The WALs in `/db`, oldest first.
fn wals(fs: &SimFs) -> Vec<PathBuf> {
    let names = fs.names(Path::new("/db")).unwrap();
    let mut wals: Vec<PathBuf> = names
        .iter()
        .filter(|name| name.ends_with(".wal"))
        .map(|name| Path::new("/db").join(name))
        .collect();
    wals.sort();
    wals
}

fn records(fs: &SimFs, path: &Path) -> Vec<WalBatch> {
    let contents = read_wal(fs, path).unwrap();
    let batches = contents.records.iter();
    batches
        .map(|record| WalBatch::decode(record.as_slice()).unwrap())
        .collect()
}

/// Writes `KEYS` keys, then freezes the memtable with every segment
/// creation failing, and crashes (power loss: only what was synced stays).
/// Returns the rebooted disk.
fn crash_after_a_rotation(sync: SyncPolicy, seed: u64) -> SimFs {
    let fs = SimFs::new(seed);
    actix_rt::System::new().block_on(async {
        let db = Db::open(common::sim_options(&fs, sync)).await.unwrap();
        for i in 0..KEYS {
            db.put(format!("key{i:03}"), "value").await.unwrap();
        }
        let segments = Fault::fail(Op::Create, ErrorKind::Other).on_path(".sst");
        fs.inject(segments.times(u64::MAX)).unwrap();
        let flushed = actix_rt::time::timeout(Duration::from_millis(500), db.flush()).await;
        assert!(!matches!(flushed, Ok(Ok(()))), "the flush must fail");
        // Interval: give the rotation's job time to sync the old WAL.
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    });
    fs.crash().unwrap()
}

/// The last `KEYS` writes are numbered 1..=KEYS: the WAL the rotation
/// started says it follows the last of them.
fn assert_rotated(fs: &SimFs, follows_seq: u64, what: &str) -> (PathBuf, PathBuf) {
    let wals = wals(fs);
    assert_eq!(wals.len(), 2, "{what}: {wals:?}");
    let newer = records(fs, &wals[1]);
    assert_eq!(
        newer.len(),
        1,
        "{what}: the new WAL holds its identity only"
    );
    assert_eq!(newer[0].follows_seq, follows_seq, "{what}");
    let older = records(fs, &wals[0]);
    let writes: usize = older.iter().map(|b| b.mutations.len()).sum();
    assert_eq!(writes, KEYS, "{what}: the older WAL holds every write");
    (wals[0].clone(), wals[1].clone())
}

/// Rewrites `path` without its last record.
fn cut_last_record(fs: &SimFs, path: &Path) -> Vec<u8> {
    let original = fs.contents(path).unwrap();
    let contents = read_wal(fs, path).unwrap();
    let last = *contents.record_offsets.last().unwrap() as usize;
    rewrite(fs, path, &original[..last]);
    original
}

fn rewrite(fs: &SimFs, path: &Path, bytes: &[u8]) {
    let file = fs.create(path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_data().unwrap();
}

async fn count_keys(db: &Db) -> usize {
    let mut found = 0;
    for i in 0..KEYS {
        if db.get(format!("key{i:03}")).await.unwrap().is_some() {
            found += 1;
        }
    }
    found
}

#[test]
fn an_older_wal_cut_short_beside_an_empty_newer_one_is_refused() {
    let cases = [
        (SyncPolicy::Always, 31),
        (SyncPolicy::Interval(Duration::from_secs(3600)), 32),
    ];
    for (sync, seed) in cases {
        let what = format!("{sync:?}");
        let fs = crash_after_a_rotation(sync, seed);
        let (older, newer) = assert_rotated(&fs, KEYS as u64, &what);
        let original = cut_last_record(&fs, &older);
        actix_rt::System::new().block_on(async {
            match Db::open(common::sim_options(&fs, sync)).await {
                Err(Error::Corruption { path, detail, .. }) => {
                    assert_eq!(path, newer, "{what}: {detail}");
                    assert!(detail.contains("are missing"), "{what}: {detail}");
                }
                Err(other) => panic!("{what}: refused for another reason: {other}"),
                Ok(db) => panic!(
                    "{what}: opened without the cut writes ({} of {KEYS} keys)",
                    count_keys(&db).await
                ),
            }
        });
        // Put back, the WAL opens with every write.
        rewrite(&fs, &older, &original);
        actix_rt::System::new().block_on(async {
            let db = Db::open(common::sim_options(&fs, sync)).await.unwrap();
            assert_eq!(count_keys(&db).await, KEYS, "{what}");
            db.close().await.unwrap();
        });
        let name = wal_file_name(1);
        assert!(!wals(&fs).iter().any(|w| w.ends_with(&name)), "{what}");
    }
}

/// Under `SyncPolicy::None` the old WAL is not synced at a rotation, so a
/// power loss may take its tail; the new WAL vouches for nothing, and a
/// crash still opens.
#[test]
fn under_sync_none_a_new_wal_vouches_for_nothing() {
    let fs = crash_after_a_rotation(SyncPolicy::None, 33);
    let wals = wals(&fs);
    let newest = wals.last().unwrap();
    let identity = &records(&fs, newest)[0];
    assert_eq!(identity.follows_seq, 0);
    actix_rt::System::new().block_on(async {
        let db = Db::open(common::sim_options(&fs, SyncPolicy::None))
            .await
            .unwrap();
        db.close().await.unwrap();
    });
}
