//! Block compression: a database of compressible values takes less disk
//! with `Compression::Lz4` and less again with `Compression::Zstd`, reads
//! back the same, a database written with one setting opens and reads with
//! the others (segments of every codec side by side, then merged), and a
//! damaged zstd block is reported as corruption.

mod common;

use std::path::Path;

use naive_kv::format::coding::masked_crc;
use naive_kv::options::Compression;
use naive_kv::{Db, Error, Options, ScanRequest};

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
    // LZ4 is what a database gets unless told otherwise.
    assert_eq!(Options::new(plain.path()).compression, Compression::Lz4);
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

#[actix_rt::test]
async fn zstd_shrinks_more_than_lz4_and_reads_back_under_any_setting() {
    let (lz4, zstd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lz4_bytes = fill(lz4.path(), Compression::Lz4).await;
    let zstd_bytes = fill(zstd.path(), Compression::Zstd(3)).await;
    assert!(
        zstd_bytes < lz4_bytes,
        "zstd {zstd_bytes} bytes, lz4 {lz4_bytes} bytes"
    );
    for reader in [Compression::Zstd(3), Compression::Lz4, Compression::None] {
        assert_reads_back(zstd.path(), reader).await;
    }
}

/// Opens `dir` with `compression`, writes keys `range` (value: `json(i)`
/// with the codec's name) and flushes them into a segment of their own.
async fn write_segment(dir: &Path, compression: Compression, range: std::ops::Range<usize>) {
    let mut options = Options::new(dir);
    options.compression = compression;
    options.sync = naive_kv::SyncPolicy::None;
    let db = Db::open(options).await.unwrap();
    for i in range {
        db.put(format!("user:{i:06}"), format!("{compression}{}", json(i)))
            .await
            .unwrap();
    }
    db.flush().await.unwrap();
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn segments_of_every_codec_live_in_one_database_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let codecs = [Compression::None, Compression::Lz4, Compression::Zstd(1)];
    // Overlapping ranges: later segments overwrite half of the earlier ones.
    for (n, codec) in codecs.iter().enumerate() {
        write_segment(dir.path(), *codec, n * 500..n * 500 + 1000).await;
    }
    assert!(common::files_ending(dir.path(), ".sst").len() >= 3);
    let expected = |i: usize| {
        let newest = codecs
            .iter()
            .enumerate()
            .filter(|(n, _)| (n * 500..n * 500 + 1000).contains(&i))
            .map(|(_, c)| *c)
            .next_back()
            .unwrap();
        format!("{newest}{}", json(i))
    };
    let mut options = Options::new(dir.path());
    options.compression = Compression::Zstd(9);
    let db = common::reopen(options).await;
    for i in (0..2000).step_by(3) {
        let value = db.get(format!("user:{i:06}")).await.unwrap();
        assert_eq!(
            value.as_deref(),
            Some(expected(i).as_bytes()),
            "user:{i:06}"
        );
    }
    // Merging rewrites every block with zstd level 9; the data stays.
    db.compact().await.unwrap();
    let all = db
        .scan(ScanRequest {
            limit: 0,
            ..ScanRequest::all()
        })
        .await
        .unwrap();
    assert_eq!(all.entries.len(), 2000);
    for (i, entry) in all.entries.iter().enumerate() {
        assert_eq!(entry.1.as_ref(), expected(i).as_bytes(), "user:{i:06}");
    }
    db.close().await.unwrap();
}

/// The end of the table's first data block (where its crc starts): the
/// first length whose crc follows it.
fn first_block_end(table: &[u8]) -> usize {
    (5..table.len() - 4)
        .find(|&end| {
            let stored = u32::from_le_bytes(table[end..end + 4].try_into().unwrap());
            masked_crc(&table[..end]) == stored
        })
        .unwrap()
}

#[actix_rt::test]
async fn a_damaged_zstd_block_with_a_good_crc_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), Compression::Zstd(3)).await;
    let tables = common::files_ending(dir.path(), ".sst");
    assert_eq!(tables.len(), 1);
    let mut table = std::fs::read(&tables[0]).unwrap();
    let end = first_block_end(&table);
    assert_eq!(table[end - 1], 2, "the first block is stored as zstd");
    // Scramble the middle of the frame and re-seal the block's crc, so only
    // the decompressor can notice.
    for byte in &mut table[end / 2..end / 2 + 16] {
        *byte ^= 0x5a;
    }
    let crc = masked_crc(&table[..end]);
    table[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&tables[0], &table).unwrap();

    let mut options = Options::new(dir.path());
    options.block_cache_bytes = 0;
    let Ok(db) = Db::open(options).await else {
        panic!("a damaged data block must not stop the database from opening");
    };
    let got = db.get("user:000000").await;
    assert!(matches!(got, Err(Error::Corruption { .. })), "{got:?}");
    let scan = db
        .scan(ScanRequest {
            limit: 0,
            ..ScanRequest::all()
        })
        .await;
    assert!(
        matches!(scan, Err(Error::Corruption { .. })),
        "{:?}",
        scan.map(|s| s.entries.len())
    );
    // Keys in later blocks still read.
    let last = db.get("user:002999").await.unwrap();
    assert_eq!(last.as_deref(), Some(json(2999).as_bytes()));
    db.close().await.unwrap();
}

#[actix_rt::test]
async fn the_block_cache_holds_blocks_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = fill(dir.path(), Compression::Zstd(3)).await;
    let mut options = Options::new(dir.path());
    options.block_cache_bytes = 64 << 20;
    let db = common::reopen(options).await;
    for round in 0..2 {
        for i in 0..3000 {
            let value = db.get(format!("user:{i:06}")).await.unwrap();
            assert_eq!(value.as_deref(), Some(json(i).as_bytes()), "round {round}");
        }
    }
    let stats = db.stats().await.unwrap();
    // The second round is served from the cache, whose blocks take the
    // room of the raw entries: more than the compressed files.
    assert!(stats.get("block_cache_hits") >= 3000, "{stats:?}");
    let cached = stats.get("block_cache_bytes");
    assert!(
        cached > on_disk * 2,
        "cache {cached} bytes, files {on_disk} bytes"
    );
    db.close().await.unwrap();
}
