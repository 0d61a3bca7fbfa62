//! LZ4 block compression: a database of compressible values takes less
//! disk with `Compression::Lz4`, reads back the same, and a database
//! written with one setting opens and reads with the other.

mod common;

use std::path::Path;

use naive_kv::options::Compression;
use naive_kv::{Db, Options, ScanRequest};

fn json(i: usize) -> String {
    format!(
        "{{\"id\":{i},\"name\":\"user number {i}\",\"email\":\"user{i}@example.com\",\"active\":true}}"
    )
}

async fn fill(dir: &Path, compression: Compression) -> u64 {
    let mut options = Options::new(dir);
    options.compression = compression;
    options.sync = naive_kv::SyncPolicy::None;
    let db = Db::open(options).await.unwrap();
    for i in 0..3000 {
        db.put(format!("user:{i:06}"), json(i)).await.unwrap();
    }
    db.flush().await.unwrap();
    db.compact().await.unwrap();
    db.close().await.unwrap();
    common::files_ending(dir, ".sst")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

async fn assert_reads_back(dir: &Path, compression: Compression) {
    let mut options = Options::new(dir);
    options.compression = compression;
    let db = common::reopen(options).await;
    for i in (0..3000).step_by(7) {
        let value = db.get(format!("user:{i:06}")).await.unwrap();
        assert_eq!(value.as_deref(), Some(json(i).as_bytes()), "user:{i:06}");
    }
    let request = ScanRequest {
        limit: 0,
        ..ScanRequest::all()
    };
    assert_eq!(db.scan(request).await.unwrap().entries.len(), 3000);
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn lz4_shrinks_compressible_data_and_reads_it_back() {
    let (plain, packed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain_bytes = fill(plain.path(), Compression::None).await;
    let packed_bytes = fill(packed.path(), Compression::Lz4).await;
    assert!(
        packed_bytes * 2 < plain_bytes,
        "lz4 {packed_bytes} bytes, raw {plain_bytes} bytes"
    );
    assert_reads_back(packed.path(), Compression::Lz4).await;
    // Each block says how it is stored: the setting only affects new files.
    assert_reads_back(packed.path(), Compression::None).await;
    assert_reads_back(plain.path(), Compression::Lz4).await;
}
