//! Damaged files: a torn WAL tail loses exactly the last write; damage to
//! complete data (a WAL record followed by others, an SSTable block, the
//! manifest) is reported as `Error::Corruption`, never returned as wrong
//! data and never a panic.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use naive_kv::{Db, Error, Options, ScanRequest};

const RECORDS: usize = 20;

/// A change made to a copy of a file.
type Damage = Box<dyn FnOnce(&mut Vec<u8>)>;

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key{i:04}"))
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}-{}", "v".repeat(i % 17)))
}

/// A directory whose only data is `RECORDS` single-put WAL records, as a
/// crash leaves it: the MANIFEST is the one from before the close (a clean
/// close records where the WAL ends, and open then refuses a cut WAL; these
/// tests are about what a crash leaves).
async fn wal_only_database(dir: &Path) {
    let db = Db::open(Options::new(dir)).await.unwrap();
    for i in 0..RECORDS {
        db.put(key(i), value(i)).await.unwrap();
    }
    let open_manifest = std::fs::read(dir.join("MANIFEST")).unwrap();
    db.close().await.unwrap();
    std::fs::write(dir.join("MANIFEST"), open_manifest).unwrap();
}

/// The one WAL of `dir` that holds writes.
fn the_wal(dir: &Path) -> PathBuf {
    let wals: Vec<PathBuf> = common::files_ending(dir, ".wal")
        .into_iter()
        .filter(|p| !wal_records(&std::fs::read(p).unwrap()).is_empty())
        .collect();
    assert_eq!(wals.len(), 1, "expected one WAL with data: {wals:?}");
    wals.into_iter().next().unwrap()
}

/// `(start, end)` of every record of a WAL that holds writes, from their
/// length fields: all but the first, the WAL's identity record
/// (`engine/wal_identity.rs`).
fn wal_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut records = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        records.push((at, at + 12 + len));
        at += 12 + len;
    }
    assert_eq!(at, bytes.len(), "WAL does not end at a record boundary");
    if records.is_empty() {
        return records;
    }
    records.split_off(1)
}

/// A fresh copy of `pristine` with `damage` applied to the file `name`.
fn damaged_copy(
    pristine: &Path,
    name: &std::ffi::OsStr,
    damage: impl FnOnce(&mut Vec<u8>),
) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    common::copy_dir(pristine, copy.path());
    let path = copy.path().join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    copy
}

async fn contents(db: &Db) -> Vec<(Bytes, Bytes)> {
    let request = ScanRequest {
        limit: 0,
        ..ScanRequest::all()
    };
    let page = db.scan(request).await.unwrap();
    assert!(!page.more);
    page.entries
}

fn expected_first(n: usize) -> Vec<(Bytes, Bytes)> {
    (0..n).map(|i| (key(i), value(i))).collect()
}

#[actix_rt::test]
async fn torn_wal_tail_loses_exactly_the_last_write() {
    let pristine = tempfile::tempdir().unwrap();
    wal_only_database(pristine.path()).await;
    let wal = the_wal(pristine.path());
    let name = wal.file_name().unwrap().to_owned();
    let bytes = std::fs::read(&wal).unwrap();
    let records = wal_records(&bytes);
    assert_eq!(records.len(), RECORDS);
    let (last_start, last_end) = records[RECORDS - 1];
    for cut in last_start..last_end {
        let copy = damaged_copy(pristine.path(), &name, |b| b.truncate(cut));
        let db = Db::open(Options::new(copy.path()))
            .await
            .unwrap_or_else(|e| panic!("open with WAL cut at {cut} failed: {e}"));
        assert_eq!(
            contents(&db).await,
            expected_first(RECORDS - 1),
            "WAL cut at {cut} (last record {last_start}..{last_end})"
        );
        assert_eq!(db.get(key(RECORDS - 1)).await.unwrap(), None);
        // The recovered state is durable: a write and a second reopen keep it.
        db.put("after", "recovery").await.unwrap();
        db.close().await.unwrap();
        let db = common::reopen(Options::new(copy.path())).await;
        assert_eq!(
            db.get(key(RECORDS - 2)).await.unwrap(),
            Some(value(RECORDS - 2))
        );
        assert_eq!(db.get(key(RECORDS - 1)).await.unwrap(), None);
        assert_eq!(
            db.get("after").await.unwrap(),
            Some(Bytes::from("recovery"))
        );
        db.close().await.unwrap();
    }
}

#[actix_rt::test]
async fn zeros_after_the_last_record_lose_nothing() {
    let pristine = tempfile::tempdir().unwrap();
    wal_only_database(pristine.path()).await;
    let name = the_wal(pristine.path()).file_name().unwrap().to_owned();
    for zeros in [1, 11, 12, 4096] {
        let copy = damaged_copy(pristine.path(), &name, |b| b.resize(b.len() + zeros, 0));
        let db = Db::open(Options::new(copy.path())).await.unwrap();
        assert_eq!(
            contents(&db).await,
            expected_first(RECORDS),
            "{zeros} zeros"
        );
        db.close().await.unwrap();
    }
}

#[actix_rt::test]
async fn damaged_wal_record_followed_by_others_fails_the_open() {
    let pristine = tempfile::tempdir().unwrap();
    wal_only_database(pristine.path()).await;
    let wal = the_wal(pristine.path());
    let name = wal.file_name().unwrap().to_owned();
    let records = wal_records(&std::fs::read(&wal).unwrap());
    let (start, end) = records[RECORDS / 2];
    // Every byte of a middle record: length, both checksums, payload.
    for at in start..end {
        let copy = damaged_copy(pristine.path(), &name, |b| b[at] ^= 0x5A);
        let opened = Db::open(Options::new(copy.path())).await;
        match opened {
            Err(Error::Corruption { path, .. }) => {
                assert_eq!(path.file_name(), Some(name.as_os_str()), "byte {at}");
            }
            Err(other) => panic!("byte {at} of {start}..{end}: {other}"),
            Ok(db) => panic!(
                "byte {at} of record {start}..{end} flipped, yet open succeeded with {} keys",
                contents(&db).await.len()
            ),
        }
    }
}

/// A flushed database of several hundred keys in many small blocks.
async fn segment_database(dir: &Path) -> Vec<(Bytes, Bytes)> {
    let mut options = Options::new(dir);
    options.block_bytes = 256;
    let db = Db::open(options).await.unwrap();
    let data: Vec<(Bytes, Bytes)> = (0..400)
        .map(|i| {
            (
                key(i),
                Bytes::from(format!("{i}:{}", "d".repeat(40 + i % 60))),
            )
        })
        .collect();
    for (k, v) in &data {
        db.put(k.clone(), v.clone()).await.unwrap();
    }
    db.flush().await.unwrap();
    db.close().await.unwrap();
    data
}

/// Opens a directory holding one damaged segment and reads everything;
/// returns how many operations reported `Corruption`. Any other error, a
/// wrong value or a panic fails the test.
async fn read_damaged(dir: &Path, data: &[(Bytes, Bytes)], what: &str) -> usize {
    let mut options = Options::new(dir);
    options.block_bytes = 256;
    let db = match Db::open(options).await {
        Err(Error::Corruption { .. }) => return 1,
        Err(other) => panic!("{what}: open failed with {other}, not Corruption"),
        Ok(db) => db,
    };
    let mut corruptions = 0;
    for (k, v) in data {
        match db.get(k.clone()).await {
            Ok(got) => assert_eq!(
                got.as_ref(),
                Some(v),
                "{what}: get {k:?} read a wrong value"
            ),
            Err(Error::Corruption { .. }) => corruptions += 1,
            Err(other) => panic!("{what}: get {k:?} failed with {other}, not Corruption"),
        }
    }
    for reverse in [false, true] {
        let request = ScanRequest {
            limit: 0,
            reverse,
            ..ScanRequest::all()
        };
        match db.scan(request).await {
            Ok(page) => {
                let mut expected = data.to_vec();
                if reverse {
                    expected.reverse();
                }
                assert!(
                    page.entries == expected,
                    "{what}: scan (reverse {reverse}) read wrong data"
                );
            }
            Err(Error::Corruption { .. }) => corruptions += 1,
            Err(other) => panic!("{what}: scan failed with {other}, not Corruption"),
        }
    }
    db.close().await.unwrap();
    corruptions
}

fn the_segment(dir: &Path) -> PathBuf {
    let segments: Vec<PathBuf> = common::files_ending(dir, ".sst")
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 64)
        .collect();
    assert_eq!(
        segments.len(),
        1,
        "expected one segment with data: {segments:?}"
    );
    segments.into_iter().next().unwrap()
}

#[actix_rt::test]
async fn damaged_data_block_is_reported_not_returned() {
    let pristine = tempfile::tempdir().unwrap();
    let data = segment_database(pristine.path()).await;
    let segment = the_segment(pristine.path());
    let name = segment.file_name().unwrap().to_owned();
    let bytes = std::fs::read(&segment).unwrap();
    let footer = bytes.len() - 80; // a version 2 footer
    let filter_offset =
        u64::from_le_bytes(bytes[footer + 16..footer + 24].try_into().unwrap()) as usize;
    assert!(filter_offset > 4096, "data blocks end at {filter_offset}");
    let spots = [
        1,
        17,
        filter_offset / 3,
        filter_offset / 2,
        filter_offset - 40,
        filter_offset - 2,
    ];
    for at in spots {
        let copy = damaged_copy(pristine.path(), &name, |b| b[at] ^= 0xFF);
        let what = format!("data byte {at} of {filter_offset}");
        let corruptions = read_damaged(copy.path(), &data, &what).await;
        assert!(corruptions > 0, "{what}: the damage went unnoticed");
    }
}

#[actix_rt::test]
async fn damage_anywhere_in_a_segment_is_reported_not_returned() {
    let pristine = tempfile::tempdir().unwrap();
    let data = segment_database(pristine.path()).await;
    let segment = the_segment(pristine.path());
    let name = segment.file_name().unwrap().to_owned();
    let len = std::fs::metadata(&segment).unwrap().len() as usize;
    // Evenly spread, plus every byte of the footer.
    let spots: Vec<usize> = (0..24).map(|i| i * len / 24).chain(len - 64..len).collect();
    for at in spots {
        let copy = damaged_copy(pristine.path(), &name, |b| b[at] ^= 0x01);
        let what = format!("byte {at} of {len}");
        let corruptions = read_damaged(copy.path(), &data, &what).await;
        assert!(corruptions > 0, "{what}: the damage went unnoticed");
    }
}

#[actix_rt::test]
async fn damaged_manifest_fails_the_open() {
    let pristine = tempfile::tempdir().unwrap();
    segment_database(pristine.path()).await;
    let manifest = pristine.path().join("MANIFEST");
    let len = std::fs::metadata(&manifest).unwrap().len() as usize;
    assert!(len > 20, "manifest of {len} bytes");
    let name = std::ffi::OsString::from("MANIFEST");
    let mut cases: Vec<(String, Damage)> = Vec::new();
    for at in (0..len).step_by(3).chain([len - 1]) {
        cases.push((
            format!("byte {at} flipped"),
            Box::new(move |b: &mut Vec<u8>| b[at] ^= 0x10),
        ));
    }
    for keep in [0, 7, 19, 20, len - 1] {
        cases.push((
            format!("cut to {keep}"),
            Box::new(move |b: &mut Vec<u8>| b.truncate(keep)),
        ));
    }
    cases.push((
        "a byte appended".into(),
        Box::new(|b: &mut Vec<u8>| b.push(0)),
    ));
    for (what, damage) in cases {
        let copy = damaged_copy(pristine.path(), &name, damage);
        match Db::open(Options::new(copy.path())).await {
            Err(Error::Corruption { path, .. }) => {
                assert_eq!(path.file_name(), Some(name.as_os_str()), "{what}");
            }
            Err(other) => panic!("MANIFEST {what}: {other}, not Corruption"),
            Ok(_) => panic!("MANIFEST {what}: open succeeded"),
        }
    }
}
