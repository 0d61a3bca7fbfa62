//! `StdFs` reads that never wait for the disk (preadv2 + RWF_NOWAIT): a get
//! whose block is in the page cache is answered on the caller's thread.

use std::path::Path;

use naive_kv::fs::{FileSystem, StdFs};

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
