//! Damaged tables: flipped bytes, truncations and random bytes must give
//! `Corruption`, never a panic and never wrong data.

use std::ops::Bound::Unbounded;

use bytes::Bytes;

use super::footer::{FOOTER_LEN, Footer};
use super::index::{BlockHandle, encode_handle, encode_smallest_key};
use super::tests::{OPTIONS, build, collect, open, sample_entries};
use super::*;
use crate::format::coding::{masked_crc, put_u32};
use crate::format::{Entry, EntryIter};
use crate::{Error, Result};

fn sample_table() -> Result<(Vec<u8>, Vec<Entry>, Footer)> {
    let entries = sample_entries(300);
    let (bytes, _) = build(&entries, OPTIONS)?;
    let footer_at = bytes.len() - FOOTER_LEN as usize;
    let footer = bytes
        .get(footer_at..)
        .and_then(|f| Footer::decode(f).ok())
        .ok_or_else(|| Error::InvalidArgument("sample footer".into()))?;
    Ok((bytes, entries, footer))
}

fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut bad = bytes.to_vec();
    if let Some(byte) = bad.get_mut(at) {
        *byte ^= 0x5a;
    }
    bad
}

fn is_corruption<T>(result: &Result<T>) -> bool {
    matches!(result, Err(Error::Corruption { .. }))
}

#[test]
fn a_flipped_data_byte_fails_reads_of_its_block() -> Result<()> {
    let (bytes, entries, footer) = sample_table()?;
    for at in (0..footer.filter_offset as usize).step_by(7) {
        let table = open(flipped(&bytes, at))?;
        let mut failures = 0;
        for e in &entries {
            match table.get(&e.key) {
                Ok(Lookup::Found(found)) => assert_eq!(&found, e),
                Ok(other) => {
                    let detail = format!("{other:?} for {:?} with byte {at} flipped", e.key);
                    return Err(Error::InvalidArgument(detail));
                }
                Err(error) => {
                    assert!(matches!(error, Error::Corruption { .. }), "{error}");
                    failures += 1;
                }
            }
        }
        assert!(failures > 0, "byte {at}");
        assert!(is_corruption(&collect(
            table.iter((Unbounded, Unbounded), false)
        )));
        assert!(is_corruption(&collect(
            table.iter((Unbounded, Unbounded), true)
        )));
    }
    Ok(())
}

#[test]
fn a_failed_cursor_keeps_failing() -> Result<()> {
    let (bytes, _, _) = sample_table()?;
    let table = open(flipped(&bytes, 3))?;
    let mut iter = table.iter((Unbounded, Unbounded), false);
    assert!(is_corruption(&iter.next_entry()));
    assert!(is_corruption(&iter.next_entry()));
    Ok(())
}

#[test]
fn a_flipped_filter_index_or_footer_byte_fails_open() -> Result<()> {
    let (bytes, _, footer) = sample_table()?;
    for at in footer.filter_offset as usize..bytes.len() {
        let result = open(flipped(&bytes, at));
        assert!(
            is_corruption(&result),
            "byte {at}: {:?}",
            result.map(|_| ())
        );
    }
    Ok(())
}

#[test]
fn every_truncation_fails_open() -> Result<()> {
    let (bytes, _, _) = sample_table()?;
    for len in 0..bytes.len() {
        let result = open(bytes.get(..len).unwrap_or_default().to_vec());
        assert!(is_corruption(&result), "length {len}");
    }
    Ok(())
}

/// xorshift64*: a seeded generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Random bytes, a random number of them below `max`.
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let len = self.below(max);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Opens `bytes` and, if that works, reads everything it can; true if it
/// opened.
fn exercise(bytes: Vec<u8>) -> bool {
    let Ok(table) = open(bytes) else { return false };
    let _ = table.get(b"key00010");
    let _ = table.get(table.largest_key());
    let _ = collect(table.iter((Unbounded, Unbounded), false));
    let _ = collect(table.iter((Unbounded, Unbounded), true));
    true
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let _ = exercise(rng.bytes(400));
    }
}

/// A file whose blocks are random bytes behind valid checksums and a valid
/// footer, so the decoders themselves see the garbage. With `plausible`, the
/// filter lets every key through and the index describes the one random data
/// block, so `open` succeeds and block decoding sees the garbage.
///
/// A version-3 table's block gets a restart array of one to three points
/// (the first at 0, the others random and ascending) and the raw block type.
fn random_table(rng: &mut Rng, plausible: bool, version: u32) -> Vec<u8> {
    let mut data = rng.bytes(200);
    if version == 3 && !data.is_empty() {
        let count = 1 + rng.below(3);
        let mut restart = 0;
        for _ in 0..count {
            put_u32(&mut data, restart as u32);
            restart += 1 + rng.below(40);
        }
        put_u32(&mut data, count as u32);
        data.push(0);
    }
    let (filter, index) = if plausible && !data.is_empty() {
        let mut index = Vec::new();
        encode_smallest_key(b"", &mut index);
        let last_key = Bytes::from(rng.bytes(3));
        encode_handle(
            &BlockHandle {
                last_key,
                offset: 0,
                len: data.len() as u64,
            },
            &mut index,
        );
        (vec![0], index)
    } else {
        (rng.bytes(40), rng.bytes(80))
    };
    let mut file = Vec::new();
    let mut with_crc = |block: &[u8]| {
        let offset = file.len() as u64;
        file.extend_from_slice(block);
        put_u32(&mut file, masked_crc(block));
        offset
    };
    let _ = with_crc(&data);
    let filter_offset = with_crc(&filter);
    let index_offset = with_crc(&index);
    let footer = Footer {
        index_offset,
        index_len: index.len() as u64,
        filter_offset,
        filter_len: filter.len() as u64,
        entry_count: rng.below(5) + u64::from(plausible),
        max_seq: rng.next(),
        identity: (version > 1).then(Default::default),
        version,
    };
    file.extend_from_slice(&footer.encode());
    file
}

#[test]
fn random_blocks_behind_valid_checksums_never_panic() {
    let mut rng = Rng(42);
    let mut opened = 0;
    for i in 0..4000 {
        let version = if i % 4 < 2 { 1 } else { 3 };
        opened += usize::from(exercise(random_table(&mut rng, i % 2 == 0, version)));
    }
    assert!(opened > 1000, "only {opened} random tables opened");
}

/// Valid tables with random bytes overwritten: no panic, and entries that
/// come back are entries that went in.
#[test]
fn damaged_tables_never_return_wrong_data() -> Result<()> {
    let (bytes, entries, _) = sample_table()?;
    let mut rng = Rng(7);
    for _ in 0..500 {
        let mut bad = bytes.clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bad.len() as u64) as usize;
            if let Some(byte) = bad.get_mut(at) {
                *byte = rng.next() as u8;
            }
        }
        let Ok(table) = open(bad) else { continue };
        if let Ok(found) = collect(table.iter((Unbounded, Unbounded), false)) {
            assert!(found.iter().all(|e| entries.contains(e)));
        }
    }
    Ok(())
}
