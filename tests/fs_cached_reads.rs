//! `StdFs` reads that never wait for the disk (preadv2 + RWF_NOWAIT): a get
//! whose block is in the page cache is answered on the caller's thread, and
//! a short scan is read again on the read pool only when a block it needs
//! is in neither the block cache nor the page cache.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;

use bytes::Bytes;
use naive_kv::fs::{FileSystem, StdFs};
use naive_kv::{Db, Options, ScanRequest};

fn write_file(path: &Path, data: &[u8]) {
    let file = StdFs.create(path).unwrap();
    file.write_all(data).unwrap();
    file.sync_data().unwrap();
}

#[test]
fn page_cache_hit_reads_the_right_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    write_file(&path, &data);
    let file = StdFs.open(&path).unwrap();
    let mut warm = vec![0u8; data.len()];
    file.read_exact_at(&mut warm, 0).unwrap();
    let mut buf = vec![0u8; 5000];
    let read = file.read_exact_at_if_cached(&mut buf, 7000).unwrap();
    // On Linux with a file system that supports RWF_NOWAIT the hot bytes come
    // back; elsewhere the call declines, and the caller falls back.
    if read {
        assert_eq!(buf, data[7000..12_000]);
    } else {
        assert!(
            buf.iter().all(|&b| b == 0),
            "declined but wrote into the buffer"
        );
    }
}

#[test]
fn reading_past_the_end_is_an_error_not_a_short_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short");
    write_file(&path, b"0123456789");
    let file = StdFs.open(&path).unwrap();
    let mut buf = vec![0u8; 8];
    match file.read_exact_at_if_cached(&mut buf, 6) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        Ok(read) => assert!(!read, "a read past the end cannot succeed"),
    }
}

#[actix_rt::test]
async fn gets_from_flushed_segments_agree_with_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = naive_kv::Options::new(dir.path());
    options.memtable_bytes = 8 << 10;
    let db = naive_kv::Db::open(options).await.unwrap();
    for i in 0..2000u32 {
        db.put(format!("k{i:05}"), format!("v{i}")).await.unwrap();
    }
    db.flush().await.unwrap();
    for i in (0..2000u32).step_by(7) {
        let value = db.get(format!("k{i:05}")).await.unwrap();
        assert_eq!(value.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    assert_eq!(db.get("k99999").await.unwrap(), None);
    db.close().await.unwrap();
}

/// Drops `path`'s pages from the page cache (they are clean: the segment
/// was synced when it was written).
fn drop_from_page_cache(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: a plain system call on an open descriptor.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
}

#[actix_rt::test]
async fn a_short_scan_goes_to_the_read_pool_only_when_its_block_is_not_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        let mut options = Options::new(dir.path());
        options.block_cache_bytes = 0;
        options
    };
    let db = Db::open(options()).await.unwrap();
    for i in 0..2000u32 {
        db.put(format!("k{i:05}"), format!("v{i}")).await.unwrap();
    }
    db.flush().await.unwrap();
    db.close().await.unwrap();
    for segment in common::files_ending(dir.path(), ".sst") {
        drop_from_page_cache(&segment);
    }
    let db = Db::open(options()).await.unwrap();
    let expected: Vec<(Bytes, Bytes)> = (1000..1010u32)
        .map(|i| (format!("k{i:05}").into(), format!("v{i}").into()))
        .collect();
    let mut on_pool = Vec::new();
    for _ in 0..2 {
        let request = ScanRequest {
            start: std::ops::Bound::Included(Bytes::from("k01000")),
            limit: 10,
            ..ScanRequest::all()
        };
        let page = db.scan(request).await.unwrap();
        assert_eq!(page.entries, expected);
        let stats = db.stats().await.unwrap();
        on_pool.push(stats.get("scans_on_read_pool"));
    }
    // The first scan found its block on disk only; the read pool's read
    // brought it into the page cache, where the second one found it.
    assert_eq!(on_pool, [1, 1]);
    db.close().await.unwrap();
}
