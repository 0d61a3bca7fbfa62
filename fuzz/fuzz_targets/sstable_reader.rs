//! Arbitrary bytes as an SSTable: opening it, point lookups (of keys the
//! table claims and of a few others) and full scans both ways must give
//! results or errors, never panic or hang.
#![no_main]

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use naive_kv::format::EntryIter;
use naive_kv::format::sstable::SstableReader;
use naive_kv::fs::{FileSystem, StdFs};

/// Entries read per scan at most: a corrupt table must not loop forever,
/// and this bounds the time per input.
const MAX_ENTRIES: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("000001.sst");
    std::fs::write(&path, data).expect("write");
    let Ok(file) = StdFs.open(&path) else { return };
    let Ok(reader) = SstableReader::open(file, path) else {
        return;
    };
    let reader = Arc::new(reader);
    let mut keys = vec![
        reader.smallest_key().clone(),
        reader.largest_key().clone(),
        Bytes::new(),
        Bytes::from_static(b"k"),
    ];
    for reverse in [false, true] {
        let mut iter = reader.iter((Bound::Unbounded, Bound::Unbounded), reverse);
        for _ in 0..MAX_ENTRIES {
            match iter.next_entry() {
                Ok(Some(entry)) => {
                    if keys.len() < 16 {
                        keys.push(entry.key);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    for key in &keys {
        let _ = reader.may_contain(key);
        let _ = reader.get(key);
        let _ = reader.get_if_cached(key);
    }
    let range = (
        Bound::Included(keys[0].clone()),
        Bound::Excluded(keys[1].clone()),
    );
    let mut iter = reader.iter(range, false);
    for _ in 0..MAX_ENTRIES {
        if !matches!(iter.next_entry(), Ok(Some(_))) {
            break;
        }
    }
});
