//! Writer and reader together: round trips, lookups, range cursors. The
//! in-memory files and table builders here are shared with
//! `corruption_tests`.

use std::collections::BTreeMap;
use std::io;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use bytes::Bytes;

use super::*;
use crate::format::{Entry, EntryIter, KeyRange};
use crate::fs::{FileSystem, ReadableFile, StdFs, WritableFile};
use crate::{Error, Result};

/// A writable file that sends each write to the test (no shared lock).
#[derive(Debug)]
pub(super) struct MemFile(mpsc::Sender<Vec<u8>>);

impl MemFile {
    /// The file, and where its writes arrive.
    pub(super) fn new() -> (MemFile, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel();
        (MemFile(tx), rx)
    }
}

impl WritableFile for MemFile {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::other("reader gone"))
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A readable file over bytes in memory.
#[derive(Debug)]
pub(super) struct MemReadable(pub(super) Vec<u8>);

impl ReadableFile for MemReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let source = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(source);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

pub(super) const OPTIONS: TableOptions = TableOptions {
    block_bytes: 256,
    bloom_bits_per_key: 10,
    compression: Compression::None,
    write_buffer_bytes: 256 << 10,
};

pub(super) fn entry(key: impl Into<Vec<u8>>, seq: u64, value: Option<&[u8]>) -> Entry {
    Entry {
        key: Bytes::from(key.into()),
        seq,
        value: value.map(Bytes::copy_from_slice),
        expire_at_ms: 0,
    }
}

/// Entries `key00000`, `key00002`, ... (even numbers only, so odd numbers
/// fall between keys), with tombstones and empty values among them.
pub(super) fn sample_entries(count: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| {
            let value = format!("value of {i}").repeat(i % 4);
            let value = if i % 7 == 3 {
                None
            } else {
                Some(value.as_bytes())
            };
            let mut entry = entry(format!("key{:05}", 2 * i), i as u64 + 1, value);
            // Every fifth put expires (kind 2 beside kinds 0 and 1).
            if entry.value.is_some() && i % 5 == 1 {
                entry.expire_at_ms = 1_700_000_000_000 + i as u64;
            }
            entry
        })
        .collect()
}

/// The bytes of a table holding `entries`.
pub(super) fn build(entries: &[Entry], options: TableOptions) -> Result<(Vec<u8>, TableSummary)> {
    let (file, written) = MemFile::new();
    let mut writer = SstableWriter::new(Box::new(file), PathBuf::from("mem.sst"), options);
    for e in entries {
        writer.add(e)?;
    }
    let summary = writer.finish()?;
    Ok((written.try_iter().flatten().collect(), summary))
}

pub(super) fn open(bytes: Vec<u8>) -> Result<Arc<SstableReader>> {
    SstableReader::open(Arc::new(MemReadable(bytes)), PathBuf::from("mem.sst")).map(Arc::new)
}

pub(super) fn collect(mut iter: impl EntryIter) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    while let Some(e) = iter.next_entry()? {
        out.push(e);
    }
    Ok(out)
}

fn full() -> KeyRange {
    (Unbounded, Unbounded)
}

#[test]
fn many_entries_round_trip() -> Result<()> {
    let entries = sample_entries(3000);
    let (bytes, summary) = build(&entries, OPTIONS)?;
    assert_eq!(summary.file_size, bytes.len() as u64);
    assert_eq!(summary.entry_count, 3000);
    assert_eq!(summary.max_seq, 3000);
    let table = open(bytes)?;
    assert!(table.block_count() > 50, "{} blocks", table.block_count());
    assert_eq!(table.entry_count(), 3000);
    assert_eq!(
        (table.smallest_key(), table.largest_key()),
        (&summary.smallest_key, &summary.largest_key)
    );
    assert_eq!(collect(table.iter(full(), false))?, entries);
    let mut reversed = entries.clone();
    reversed.reverse();
    assert_eq!(collect(table.iter(full(), true))?, reversed);
    for e in &entries {
        assert_eq!(table.get(&e.key)?, Lookup::Found(e.clone()));
    }
    Ok(())
}

#[test]
fn absent_keys_are_filtered_out_or_absent() -> Result<()> {
    let entries: Vec<Entry> = (0..10_000)
        .map(|i| entry(format!("present{i:05}"), 1, Some(b"v")))
        .collect();
    let (bytes, _) = build(&entries, OPTIONS)?;
    let table = open(bytes)?;
    let (mut filtered, mut absent) = (0, 0);
    for i in 0..10_000 {
        match table.get(format!("absent{i}").as_bytes())? {
            Lookup::FilteredOut => filtered += 1,
            Lookup::Absent => absent += 1,
            found => return Err(Error::InvalidArgument(format!("{found:?}"))),
        }
    }
    assert!(absent < 200, "false positive rate {absent} in 10000");
    assert!(absent > 0, "expected a few false positives, got none");
    assert_eq!(filtered + absent, 10_000);
    assert_eq!(
        table.get(b"present00042")?,
        Lookup::Found(entry("present00042", 1, Some(b"v")))
    );
    Ok(())
}

#[test]
fn keys_past_the_last_block_are_absent_without_a_filter() -> Result<()> {
    let options = TableOptions {
        bloom_bits_per_key: 0,
        ..OPTIONS
    };
    let (bytes, _) = build(&sample_entries(100), options)?;
    let table = open(bytes)?;
    assert_eq!(table.get(b"zzz")?, Lookup::Absent);
    assert_eq!(table.get(b"key00001")?, Lookup::Absent);
    assert_eq!(table.get(b"a")?, Lookup::Absent);
    Ok(())
}

/// Bounds at, between, below and above the keys, including block edges.
fn bound_keys(table: &SstableReader) -> Vec<Bytes> {
    let mut keys: Vec<Bytes> = [
        "", "a", "key00000", "key00001", "key00150", "key00151", "key00399", "z",
    ]
    .iter()
    .map(|k| Bytes::copy_from_slice(k.as_bytes()))
    .collect();
    for block in [0, 1, 2] {
        if let Some(last) = table.block_last_key(block) {
            keys.push(last.clone());
            let mut after = last.to_vec();
            after.push(0);
            keys.push(Bytes::from(after));
        }
    }
    keys
}

fn bounds(keys: &[Bytes]) -> Vec<Bound<Bytes>> {
    let mut all = vec![Unbounded];
    for k in keys {
        all.push(Included(k.clone()));
        all.push(Excluded(k.clone()));
    }
    all
}

#[test]
fn ranges_match_a_model_in_both_directions() -> Result<()> {
    let entries = sample_entries(200);
    let model: BTreeMap<Bytes, Entry> =
        entries.iter().map(|e| (e.key.clone(), e.clone())).collect();
    let (bytes, _) = build(
        &entries,
        TableOptions {
            block_bytes: 100,
            ..OPTIONS
        },
    )?;
    let table = open(bytes)?;
    let all = bounds(&bound_keys(&table));
    let mut empty_ranges = 0;
    for start in &all {
        for end in &all {
            let range: KeyRange = (start.clone(), end.clone());
            let expected: Vec<Entry> = match (start, end) {
                (Included(s) | Excluded(s), Included(e) | Excluded(e)) if s > e => Vec::new(),
                (Excluded(s), Excluded(e)) if s == e => Vec::new(),
                _ => model.range(range.clone()).map(|(_, e)| e.clone()).collect(),
            };
            empty_ranges += usize::from(expected.is_empty());
            assert_eq!(
                collect(table.iter(range.clone(), false))?,
                expected,
                "{range:?}"
            );
            let reversed: Vec<Entry> = expected.into_iter().rev().collect();
            assert_eq!(
                collect(table.iter(range.clone(), true))?,
                reversed,
                "reverse {range:?}"
            );
        }
    }
    assert!(empty_ranges > 10);
    Ok(())
}

#[test]
fn a_value_larger_than_a_block_gets_its_own_block() -> Result<()> {
    let big = vec![7u8; 32 << 20];
    let entries = vec![
        entry("a", 1, Some(b"small")),
        entry("b", 2, Some(&big)),
        entry("c", 3, None),
    ];
    let (bytes, _) = build(
        &entries,
        TableOptions {
            block_bytes: 4096,
            ..OPTIONS
        },
    )?;
    let table = open(bytes)?;
    assert_eq!(table.block_count(), 3);
    assert_eq!(table.get(b"b")?, Lookup::Found(entries[1].clone()));
    assert_eq!(
        collect(table.iter(full(), true))?,
        entries.iter().rev().cloned().collect::<Vec<_>>()
    );
    Ok(())
}

/// Blocks reach the file in runs of about 256 KiB, not one or two writes
/// per block; a block larger than a run goes to the file after what was
/// collected before it, and the table reads back whole.
#[test]
fn blocks_are_written_in_runs_and_in_order() -> Result<()> {
    let value = vec![b'v'; 100];
    let big = vec![9u8; 300 << 10];
    let mut entries: Vec<Entry> = (0..12_000u32)
        .map(|i| entry(format!("key{i:08}"), u64::from(i), Some(&value)))
        .collect();
    entries[6_000].value = Some(Bytes::from(big));
    let (file, written) = MemFile::new();
    let options = TableOptions {
        block_bytes: 4096,
        ..OPTIONS
    };
    let mut writer = SstableWriter::new(Box::new(file), PathBuf::from("mem.sst"), options);
    for e in &entries {
        writer.add(e)?;
    }
    let summary = writer.finish()?;
    let writes: Vec<Vec<u8>> = written.try_iter().collect();
    let bytes: Vec<u8> = writes.concat();
    assert_eq!(bytes.len() as u64, summary.file_size);
    let table = open(bytes)?;
    assert!(table.block_count() > 300, "{} blocks", table.block_count());
    // About 1.6 MiB of blocks, the big one alone, the tail: a handful.
    assert!(writes.len() <= 12, "{} writes", writes.len());
    assert!(writes.iter().any(|w| w.len() >= 300 << 10));
    assert_eq!(collect(table.iter(full(), false))?, entries);
    assert_eq!(
        table.get(b"key00006000")?,
        Lookup::Found(entries[6_000].clone())
    );
    Ok(())
}

#[test]
fn keys_must_increase_and_tables_must_not_be_empty() -> Result<()> {
    let (file, _written) = MemFile::new();
    let mut writer = SstableWriter::new(Box::new(file), "t.sst".into(), OPTIONS);
    writer.add(&entry("b", 1, None))?;
    assert!(matches!(
        writer.add(&entry("b", 2, None)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        writer.add(&entry("a", 2, None)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(writer.entry_count(), 1);
    let (file, _written_too) = MemFile::new();
    let empty = SstableWriter::new(Box::new(file), "t.sst".into(), OPTIONS);
    assert!(matches!(empty.finish(), Err(Error::InvalidArgument(_))));
    Ok(())
}

#[test]
fn estimated_size_is_close_to_the_file_size() -> Result<()> {
    let (file, _written) = MemFile::new();
    let mut writer = SstableWriter::new(Box::new(file), "t.sst".into(), OPTIONS);
    for e in sample_entries(1000) {
        writer.add(&e)?;
    }
    let estimate = writer.estimated_size();
    let actual = writer.finish()?.file_size;
    assert!(
        estimate.abs_diff(actual) < actual / 20,
        "estimate {estimate}, actual {actual}"
    );
    Ok(())
}

#[test]
fn tables_round_trip_through_real_files() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let path = dir.path().join("000001.sst");
    let file = StdFs.create(&path).map_err(|e| Error::io("create", e))?;
    let mut writer = SstableWriter::new(file, path.clone(), OPTIONS);
    let entries = sample_entries(500);
    for e in &entries {
        writer.add(e)?;
    }
    let summary = writer.finish()?;
    let file = StdFs.open(&path).map_err(|e| Error::io("open", e))?;
    let table = Arc::new(SstableReader::open(file, path.clone())?);
    assert_eq!(table.path(), path);
    assert_eq!(table.file_size(), summary.file_size);
    assert_eq!(collect(table.iter(full(), false))?, entries);
    Ok(())
}

#[test]
fn readers_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<SstableReader>();
    fn sendable<T: Send>() {}
    sendable::<SstableIter>();
}

#[test]
fn lz4_tables_are_smaller_and_read_back_the_same() -> Result<()> {
    let entries: Vec<Entry> = (0..300)
        .map(|i| {
            let value = format!("{{\"id\":{i},\"name\":\"user name\",\"active\":true}}");
            entry(format!("user:{i:06}"), i + 1, Some(value.as_bytes()))
        })
        .collect();
    let lz4 = TableOptions {
        block_bytes: 4096,
        compression: Compression::Lz4,
        ..OPTIONS
    };
    let (compressed, _) = build(&entries, lz4)?;
    let raw = TableOptions {
        compression: Compression::None,
        ..lz4
    };
    let (plain, _) = build(&entries, raw)?;
    assert!(
        compressed.len() * 2 < plain.len(),
        "{} vs {} bytes",
        compressed.len(),
        plain.len()
    );
    let table = open(compressed)?;
    for e in &entries {
        assert_eq!(table.get(&e.key)?, Lookup::Found(e.clone()));
    }
    let mut iter = table.iter((Unbounded, Unbounded), true);
    let mut back = Vec::new();
    while let Some(e) = iter.next_entry()? {
        back.push(e);
    }
    back.reverse();
    assert_eq!(back, entries);
    Ok(())
}

/// Gets every entry of `table` and the keys between them, through `cache`.
fn check_lookups(table: &SstableReader, entries: &[Entry], cache: &BlockCache) -> Result<()> {
    for e in entries {
        assert_eq!(table.get(&e.key)?, Lookup::Found(e.clone()));
        assert_eq!(
            table.get_cached(&e.key, key_hash(&e.key), cache)?,
            Lookup::Found(e.clone())
        );
        let mut between = e.key.to_vec();
        between.push(b'!');
        assert!(matches!(
            table.get_cached(&between, key_hash(&between), cache)?,
            Lookup::Absent | Lookup::FilteredOut
        ));
    }
    Ok(())
}

#[test]
fn large_blocks_with_many_restart_points_find_every_key() -> Result<()> {
    let entries = sample_entries(3000);
    let options = TableOptions {
        block_bytes: 4096,
        ..OPTIONS
    };
    let (bytes, _) = build(&entries, options)?;
    let table = open(bytes)?;
    assert!(
        table.block_count() < 3000 / 32,
        "{} blocks",
        table.block_count()
    );
    check_lookups(&table, &entries, &BlockCache::new(1 << 20, 4096))?;
    assert_eq!(collect(table.iter(full(), false))?, entries);
    Ok(())
}

#[test]
fn version_2_tables_without_restart_points_still_read() -> Result<()> {
    let entries = sample_entries(2000);
    for compression in [Compression::None, Compression::Lz4] {
        let options = TableOptions {
            block_bytes: 4096,
            compression,
            ..OPTIONS
        };
        let (file, written) = MemFile::new();
        let mut writer =
            SstableWriter::new(Box::new(file), PathBuf::from("v2.sst"), options).with_version_2();
        for e in &entries {
            writer.add(e)?;
        }
        writer.finish()?;
        let bytes: Vec<u8> = written.try_iter().flatten().collect();
        let (v3, _) = build(&entries, options)?;
        assert!(bytes.len() < v3.len(), "version 2 has no restart arrays");
        let version_at = bytes.len() - 16;
        assert_eq!(
            bytes.get(version_at..version_at + 4),
            Some(&2u32.to_le_bytes()[..])
        );
        let table = open(bytes)?;
        check_lookups(&table, &entries, &BlockCache::new(1 << 20, 4096))?;
        let mut reversed = entries.clone();
        reversed.reverse();
        assert_eq!(collect(table.iter(full(), true))?, reversed);
    }
    Ok(())
}

/// A table whose writer cached its blocks, read through that cache under
/// the number it was written for.
fn written_through(
    entries: &[Entry],
    options: TableOptions,
    version_2: bool,
    (cache, number): (&Arc<BlockCache>, u64),
) -> Result<Vec<u8>> {
    let (file, written) = MemFile::new();
    let mut writer = SstableWriter::new(Box::new(file), PathBuf::from("cached.sst"), options)
        .caching_blocks(cache.clone(), number);
    if version_2 {
        writer = writer.with_version_2();
    }
    for e in entries {
        writer.add(e)?;
    }
    writer.finish()?;
    Ok(written.try_iter().flatten().collect())
}

#[test]
fn blocks_cached_by_the_writer_answer_every_get_without_a_read() -> Result<()> {
    let entries = sample_entries(2000);
    for (compression, version_2) in [
        (Compression::None, false),
        (Compression::Lz4, false),
        (Compression::Lz4, true),
    ] {
        let options = TableOptions {
            block_bytes: 1024,
            compression,
            ..OPTIONS
        };
        let cache = Arc::new(BlockCache::new(1 << 20, 1024));
        let bytes = written_through(&entries, options, version_2, (&cache, 7))?;
        let file = Arc::new(MemReadable(bytes.clone()));
        let table = SstableReader::open_numbered(file, PathBuf::from("cached.sst"), 7)?;
        let blocks = table.block_count() as u64;
        assert!(blocks > 20, "{blocks} blocks");
        check_lookups(&table, &entries, &cache)?;
        let stats = cache.stats();
        assert_eq!(stats.misses, 0, "{compression:?}, version 2: {version_2}");
        assert!(stats.hits >= entries.len() as u64, "{stats:?}");
        // The same file under another number finds none of them.
        let other = SstableReader::open_numbered(Arc::new(MemReadable(bytes)), "o".into(), 8)?;
        let first = entries.first().map(|e| e.key.clone()).unwrap_or_default();
        other.get_cached(&first, key_hash(&first), &cache)?;
        assert_eq!(cache.stats().misses, 1);
    }
    Ok(())
}

#[test]
fn tables_opened_without_a_number_never_share_a_cached_name() -> Result<()> {
    let entries = sample_entries(500);
    let cache = Arc::new(BlockCache::new(1 << 20, 256));
    // Cached under numbers 0 and 1, the first a counter from 0 would give.
    let bytes = written_through(&entries, OPTIONS, false, (&cache, 0))?;
    written_through(&entries, OPTIONS, false, (&cache, 1))?;
    let (a, b) = (open(bytes.clone())?, open(bytes)?);
    let key = entries.first().map(|e| e.key.clone()).unwrap_or_default();
    for table in [&a, &b] {
        table.get_cached(&key, key_hash(&key), &cache)?;
    }
    assert_eq!(cache.stats().hits, 0);
    Ok(())
}
