//! Arbitrary bytes as a WAL file: `read_wal` must return records, a torn
//! tail or a corruption error, never panic; each record is then decoded as
//! recovery would (a `WalBatch`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use naive_kv::format::wal::read_wal;
use naive_kv::fs::StdFs;
use naive_kv::proto::storage::WalBatch;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("000001.wal");
    std::fs::write(&path, data).expect("write");
    if let Ok(contents) = read_wal(&StdFs, &path) {
        for record in &contents.records {
            let _ = WalBatch::decode(record.as_slice());
        }
        if let Some(at) = contents.torn_tail_at {
            assert!(at <= data.len() as u64);
        }
    }
});
