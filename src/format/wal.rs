//! The write-ahead log: every committed write batch is appended here before it
//! reaches the memtable, so that a crash loses nothing that was acknowledged.
//!
//! # Format
//!
//! A WAL file is a sequence of records with no file header. Each record is
//!
//! ```text
//! len: u32 LE | header_crc: u32 LE | payload_crc: u32 LE | payload: len bytes
//! ```
//!
//! - `header_crc` is [`masked_crc`] of the four `len` bytes, so a damaged
//!   length is caught before it is used to find the payload or the next record.
//! - `payload_crc` is [`masked_crc`] of the payload.
//! - `len` is at most [`MAX_RECORD_BYTES`] (64 MiB + 1 MiB: one batch of
//!   maximum-size values plus their framing). A larger length whose header
//!   checksum is good is corruption, never an allocation.
//!
//! The payload is opaque here; the engine stores a prost-encoded `WalBatch`.
//!
//! # Recovery
//!
//! A crash can leave the last record half written (a *torn tail*), or leave
//! zeros after the last record: where the file system extended the file but
//! did not write the data, and where the file was preallocated (on
//! [`StdFs`](crate::fs::StdFs) the WAL is grown ahead of its appends and
//! written through a memory map, `fs/mapped.rs`; it is trimmed when closed
//! cleanly). An append stores its bytes front to back, so a crash in the
//! middle of one leaves a prefix of it followed by zeros. None of this loses
//! an acknowledged write, since a write is acknowledged only after its whole
//! record is written (and synced, if the sync policy says so).
//! [`read_wal`] therefore drops a torn tail, logs one warning and reports its
//! offset in [`WalContents::torn_tail_at`]; zeros alone after the last record
//! are the end of the log, not a torn tail. Anything else is damage to data
//! that was once complete and is reported as [`Error::Corruption`] naming the
//! file and the record's offset, never skipped. Reading a record that starts
//! at offset `o`:
//!
//! 1. Fewer than 12 bytes remain: torn tail (or the end, if all zero).
//! 2. `header_crc` does not match: torn tail if every byte after the 12
//!    header bytes is zero (the header was being written), otherwise
//!    corruption.
//! 3. `len` exceeds [`MAX_RECORD_BYTES`]: corruption.
//! 4. The payload extends past the end of the file: torn tail.
//! 5. `payload_crc` does not match: torn tail if nothing but zeros follows
//!    the record (it was being written), otherwise corruption (a bad record
//!    followed by more data).
//!
//! A complete record never has an all-zero payload (the payload is a
//! non-empty encoded batch whose checksum is stored in front of it), so the
//! zeros these rules accept are never what is left of a record that was
//! once whole.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::IoContext;
use crate::format::coding::{get_u32, masked_crc, put_u32};
use crate::fs::{FileSystem, WritableFile};
use crate::{Error, Result};

/// Bytes of framing before each payload: length, header CRC, payload CRC.
pub const RECORD_HEADER_BYTES: usize = 12;

/// The largest payload a record may carry: 64 MiB + 1 MiB.
pub const MAX_RECORD_BYTES: usize = 65 * 1024 * 1024;

/// Appends framed records to one WAL file.
///
/// Shared between threads (`&self` throughout): appends come from one
/// thread at a time, in the order the engine decides (the memtable actor's
/// groups, or direct writers in sequence-number order, see
/// `engine/memtable/direct.rs`); a sync may run beside them.
pub struct WalWriter {
    /// The open file, positioned at its end.
    file: Box<dyn WritableFile>,
    /// Named in I/O errors.
    path: PathBuf,
    /// Lets the engine decide when to roll to a new WAL.
    bytes_written: AtomicU64,
}

impl WalWriter {
    /// Starts writing `file` (named `path` in errors) from its beginning.
    pub fn new(file: Box<dyn WritableFile>, path: PathBuf) -> Self {
        WalWriter {
            file,
            path,
            bytes_written: AtomicU64::new(0),
        }
    }

    /// Frames `payload` as one record and appends the frame to `out`.
    ///
    /// The caller keeps payloads within [`MAX_RECORD_BYTES`]; a longer one
    /// would be written but refused as corruption by [`read_wal`].
    pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
        // Lossless for every payload within MAX_RECORD_BYTES.
        let len = payload.len() as u32;
        let len_bytes = len.to_le_bytes();
        out.reserve(RECORD_HEADER_BYTES + payload.len());
        out.extend_from_slice(&len_bytes);
        put_u32(out, masked_crc(&len_bytes));
        put_u32(out, masked_crc(payload));
        out.extend_from_slice(payload);
    }

    /// Appends bytes made by `encode_record` (one or more whole records).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file if the write fails; the file may then hold
    /// part of `framed`, which recovery drops as a torn tail.
    pub fn append_encoded(&self, framed: &[u8]) -> Result<()> {
        self.file
            .write_all(framed)
            .context(|| format!("appending to WAL {}", self.path.display()))?;
        self.bytes_written
            .fetch_add(framed.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// fdatasyncs the file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the file if the sync fails.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .context(|| format!("syncing WAL {}", self.path.display()))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes appended so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }
}

/// What reading a WAL found.
#[derive(Debug, Default)]
pub struct WalContents {
    /// The payloads of the intact records, in order.
    pub records: Vec<Vec<u8>>,
    /// Where each record of `records` starts in the file.
    pub record_offsets: Vec<u64>,
    /// Where a torn last record began, if one was dropped.
    pub torn_tail_at: Option<u64>,
}

/// What the record starting at some offset turned out to be.
enum Step<'a> {
    /// An intact record: its payload and its total framed length.
    Record(&'a [u8], usize),
    /// A torn tail: the rest of the file is dropped.
    Torn,
}

/// Reads every intact record of a WAL. A torn last record is dropped
/// (`torn_tail_at` says where); a bad record followed by more data is a
/// corruption error naming the file and offset.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::Corruption`] for damage
/// that is not a torn tail (see the module documentation).
pub fn read_wal(fs: &dyn FileSystem, path: &Path) -> Result<WalContents> {
    let data = read_file(fs, path)?;
    let (contents, damage) = read_records(&data, path, false);
    match damage.into_iter().next() {
        Some(damaged) => Err(damaged.error),
        None => Ok(contents),
    }
}

/// A damaged stretch of a WAL that [`read_wal_salvaging`] read past.
#[derive(Debug)]
pub struct Damage {
    /// The corruption at the stretch's start (file and offset).
    pub error: Error,
    /// Bytes skipped to the next intact record (or the end of the file).
    pub skipped_bytes: u64,
}

/// Like [`read_wal`], but reads on past damage, for repair. A record whose
/// header is intact but whose payload is damaged is skipped by its length.
/// Past a damaged header the length is unknown: it reads on from the next
/// offset where an intact record starts (header and payload checksums both
/// match) and intact records follow it to the end of the file, so that a
/// record-shaped value inside the damaged record's payload is not taken
/// for one unless it runs on into the real records after it. Returns every
/// intact record found, and each stretch skipped.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read.
pub fn read_wal_salvaging(fs: &dyn FileSystem, path: &Path) -> Result<(WalContents, Vec<Damage>)> {
    let data = read_file(fs, path)?;
    Ok(read_records(&data, path, true))
}

fn read_file(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>> {
    fs.read(path)
        .context(|| format!("reading WAL {}", path.display()))
}

/// The records of `data`; at damage, stops unless `resync`, in which case
/// it skips to the next intact record.
fn read_records(data: &[u8], path: &Path, resync: bool) -> (WalContents, Vec<Damage>) {
    let mut contents = WalContents::default();
    let mut damage = Vec::new();
    let mut offset = 0usize;
    while let Some(rest) = data.get(offset..).filter(|rest| !rest.is_empty()) {
        let step = match read_record(rest) {
            Ok(step) => step,
            Err(detail) => {
                let error = Error::corruption(path, offset as u64, detail);
                let next = resync.then(|| match damaged_payload_end(rest) {
                    Some(len) => offset + len,
                    None => next_intact_run(data, offset + 1),
                });
                let resume = next.unwrap_or(data.len()).min(data.len());
                damage.push(Damage {
                    error,
                    skipped_bytes: (resume - offset) as u64,
                });
                offset = resume;
                continue;
            }
        };
        match step {
            Step::Record(payload, framed_len) => {
                contents.records.push(payload.to_vec());
                contents.record_offsets.push(offset as u64);
                offset += framed_len;
            }
            Step::Torn if all_zero(Some(rest)) => break,
            Step::Torn => {
                log::warn!(
                    "WAL {}: dropping torn tail at offset {offset} ({} bytes)",
                    path.display(),
                    rest.len()
                );
                contents.torn_tail_at = Some(offset as u64);
                break;
            }
        }
    }
    (contents, damage)
}

/// The framed length of the record at the front of `rest` when its header
/// is intact (so its length can be trusted) but its payload is not.
fn damaged_payload_end(rest: &[u8]) -> Option<usize> {
    let len_bytes = rest.get(0..4)?;
    if masked_crc(len_bytes) != get_u32(rest, 4)? {
        return None;
    }
    let len = get_u32(rest, 0)? as usize;
    (len <= MAX_RECORD_BYTES).then_some(RECORD_HEADER_BYTES + len)
}

/// The first offset at or after `from` from which intact records run to
/// the end of `data` (a torn tail allowed), or the end of `data`.
fn next_intact_run(data: &[u8], from: usize) -> usize {
    (from..data.len())
        .find(|&at| runs_to_the_end(&data[at..]))
        .unwrap_or(data.len())
}

fn runs_to_the_end(mut rest: &[u8]) -> bool {
    let mut records = 0;
    loop {
        match read_record(rest) {
            Ok(Step::Record(_, len)) => {
                records += 1;
                rest = &rest[len..];
            }
            Ok(Step::Torn) => return records > 0,
            Err(_) => return false,
        }
        if rest.is_empty() {
            return true;
        }
    }
}

/// Decodes the record at the front of `rest` (the file from the record's start
/// to its end); `Err` holds what is wrong with a corrupt record.
fn read_record(rest: &[u8]) -> Result<Step<'_>, String> {
    let (Some(len_bytes), Some(header_crc), Some(payload_crc)) =
        (rest.get(0..4), get_u32(rest, 4), get_u32(rest, 8))
    else {
        return Ok(Step::Torn);
    };
    if masked_crc(len_bytes) != header_crc {
        if all_zero(rest.get(RECORD_HEADER_BYTES..)) {
            return Ok(Step::Torn);
        }
        return Err("WAL record header checksum mismatch".to_string());
    }
    let len = get_u32(rest, 0).unwrap_or(0) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(format!(
            "WAL record length {len} exceeds the limit {MAX_RECORD_BYTES}"
        ));
    }
    let end = RECORD_HEADER_BYTES + len;
    let Some(payload) = rest.get(RECORD_HEADER_BYTES..end) else {
        return Ok(Step::Torn);
    };
    if masked_crc(payload) != payload_crc {
        if all_zero(rest.get(end..)) {
            return Ok(Step::Torn);
        }
        return Err("WAL record payload checksum mismatch".to_string());
    }
    Ok(Step::Record(payload, end))
}

/// True for no bytes or only zeros.
fn all_zero(bytes: Option<&[u8]>) -> bool {
    bytes.is_none_or(|bytes| bytes.iter().all(|&byte| byte == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn payload(index: usize, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(31) ^ index) as u8)
            .collect()
    }

    /// Writes `payloads` as a WAL through `WalWriter`; returns the file's path
    /// and the offset at which each record starts.
    fn write_wal(dir: &Path, payloads: &[Vec<u8>]) -> Result<(PathBuf, Vec<usize>)> {
        let path = dir.join("000001.wal");
        let file = StdFs.create(&path).context(|| "create".to_string())?;
        let writer = WalWriter::new(file, path.clone());
        let mut starts = Vec::new();
        for payload in payloads {
            starts.push(writer.bytes_written() as usize);
            let mut framed = Vec::new();
            WalWriter::encode_record(payload, &mut framed);
            writer.append_encoded(&framed)?;
        }
        writer.sync()?;
        Ok((path, starts))
    }

    fn three_records() -> Vec<Vec<u8>> {
        vec![payload(1, 20), payload(2, 33), payload(3, 50)]
    }

    #[test]
    fn round_trip_many_records() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut payloads: Vec<Vec<u8>> = (0..200).map(|i| payload(i, i % 37)).collect();
        payloads.push(Vec::new());
        payloads.push(payload(7, 3 * 1024 * 1024));
        payloads.push(Vec::new());
        let (path, _) = write_wal(dir.path(), &payloads)?;
        let contents = read_wal(&StdFs, &path)?;
        assert_eq!(contents.records, payloads);
        assert_eq!(contents.torn_tail_at, None);
        Ok(())
    }

    #[test]
    fn bytes_written_counts_framing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (path, starts) = write_wal(dir.path(), &three_records())?;
        assert_eq!(starts, vec![0, 32, 77]);
        assert_eq!(std::fs::metadata(&path)?.len(), 77 + 62);
        Ok(())
    }

    #[test]
    fn empty_file_has_no_records() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (path, _) = write_wal(dir.path(), &[])?;
        let contents = read_wal(&StdFs, &path)?;
        assert!(contents.records.is_empty());
        assert_eq!(contents.torn_tail_at, None);
        Ok(())
    }

    #[test]
    fn truncation_inside_last_record_is_a_torn_tail() -> TestResult {
        let dir = tempfile::tempdir()?;
        let payloads = three_records();
        let (path, starts) = write_wal(dir.path(), &payloads)?;
        let full = std::fs::read(&path)?;
        let last = starts[2];
        for cut in last + 1..full.len() {
            std::fs::write(&path, &full[..cut])?;
            let contents = read_wal(&StdFs, &path)?;
            assert_eq!(contents.records, payloads[..2], "cut at {cut}");
            assert_eq!(contents.torn_tail_at, Some(last as u64), "cut at {cut}");
        }
        Ok(())
    }

    #[test]
    fn truncation_inside_second_record_keeps_the_first() -> TestResult {
        let dir = tempfile::tempdir()?;
        let payloads = three_records();
        let (path, starts) = write_wal(dir.path(), &payloads)?;
        let full = std::fs::read(&path)?;
        for cut in starts[1] + 1..starts[2] {
            std::fs::write(&path, &full[..cut])?;
            let contents = read_wal(&StdFs, &path)?;
            assert_eq!(contents.records, payloads[..1], "cut at {cut}");
            assert_eq!(
                contents.torn_tail_at,
                Some(starts[1] as u64),
                "cut at {cut}"
            );
        }
        Ok(())
    }

    #[test]
    fn trailing_zeros_end_the_log() -> TestResult {
        let dir = tempfile::tempdir()?;
        let payloads = three_records();
        let (path, _) = write_wal(dir.path(), &payloads)?;
        let full = std::fs::read(&path)?;
        for zeros in [1, 11, 12, 13, 100, 4096] {
            let mut padded = full.clone();
            padded.resize(full.len() + zeros, 0);
            std::fs::write(&path, &padded)?;
            let contents = read_wal(&StdFs, &path)?;
            assert_eq!(contents.records, payloads, "{zeros} zeros");
            assert_eq!(contents.torn_tail_at, None, "{zeros} zeros");
        }
        Ok(())
    }

    /// What a crash in the middle of an append into a preallocated file
    /// leaves: a prefix of the last record, then zeros.
    #[test]
    fn prefix_of_the_last_record_then_zeros_is_a_torn_tail() -> TestResult {
        let dir = tempfile::tempdir()?;
        let payloads = three_records();
        let (path, starts) = write_wal(dir.path(), &payloads)?;
        let full = std::fs::read(&path)?;
        for cut in starts[2] + 1..full.len() {
            let mut torn = full[..cut].to_vec();
            torn.resize(full.len() + 4096, 0);
            std::fs::write(&path, &torn)?;
            let contents = read_wal(&StdFs, &path)?;
            assert_eq!(contents.records, payloads[..2], "cut at {cut}");
            assert_eq!(
                contents.torn_tail_at,
                Some(starts[2] as u64),
                "cut at {cut}"
            );
        }
        Ok(())
    }

    #[test]
    fn damaged_first_record_is_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (path, starts) = write_wal(dir.path(), &three_records())?;
        let full = std::fs::read(&path)?;
        for at in 0..starts[1] {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = full.clone();
                damaged[at] ^= flip;
                std::fs::write(&path, &damaged)?;
                let result = read_wal(&StdFs, &path);
                assert!(
                    matches!(result, Err(Error::Corruption { offset: 0, .. })),
                    "flip {flip:#x} at {at}: {result:?}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn oversized_length_with_good_header_is_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("big.wal");
        let len_bytes = ((MAX_RECORD_BYTES + 1) as u32).to_le_bytes();
        let mut data = len_bytes.to_vec();
        put_u32(&mut data, masked_crc(&len_bytes));
        put_u32(&mut data, 0);
        data.extend_from_slice(b"some bytes");
        std::fs::write(&path, &data)?;
        let result = read_wal(&StdFs, &path);
        assert!(
            matches!(result, Err(Error::Corruption { .. })),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn corruption_names_file_and_offset() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (path, starts) = write_wal(dir.path(), &three_records())?;
        let mut data = std::fs::read(&path)?;
        data[starts[1] + RECORD_HEADER_BYTES] ^= 1;
        std::fs::write(&path, &data)?;
        match read_wal(&StdFs, &path) {
            Err(Error::Corruption {
                path: named,
                offset,
                ..
            }) => {
                assert_eq!(named, path);
                assert_eq!(offset, starts[1] as u64);
            }
            other => return Err(format!("expected corruption, got {other:?}").into()),
        }
        Ok(())
    }

    #[test]
    fn missing_file_is_an_io_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let result = read_wal(&StdFs, &dir.path().join("absent.wal"));
        assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
        Ok(())
    }

    #[test]
    fn random_garbage_never_panics() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("garbage.wal");
        let mut next = crate::test_random::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let (good, _) = write_wal(dir.path(), &three_records())?;
        let good = std::fs::read(good)?;
        for round in 0..500 {
            let len = (next() % 300) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 {
                // Garbage after valid records exercises the later offsets too.
                data.splice(0..0, good.iter().copied());
            }
            std::fs::write(&path, &data)?;
            let _ = read_wal(&StdFs, &path);
        }
        Ok(())
    }

    /// Repair reads past a record whose payload is damaged by its length.
    #[test]
    fn salvaging_skips_a_damaged_payload_by_its_length() -> TestResult {
        let dir = tempfile::tempdir()?;
        let records = three_records();
        let (path, starts) = write_wal(dir.path(), &records)?;
        let mut bytes = std::fs::read(&path)?;
        bytes[starts[1] + RECORD_HEADER_BYTES + 3] ^= 0x40;
        std::fs::write(&path, &bytes)?;
        assert!(read_wal(&StdFs, &path).is_err());
        let (contents, damage) = read_wal_salvaging(&StdFs, &path)?;
        assert_eq!(
            contents.records,
            vec![records[0].clone(), records[2].clone()]
        );
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].skipped_bytes, (starts[2] - starts[1]) as u64);
        Ok(())
    }

    /// Past a damaged header, a record-shaped value inside the damaged
    /// record is not taken for a record: reading resumes at the real one
    /// after it, from which intact records run to the end.
    #[test]
    fn salvaging_past_a_damaged_header_resumes_at_the_real_next_record() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut planted = payload(7, 10);
        WalWriter::encode_record(&payload(9, 16), &mut planted);
        planted.extend_from_slice(&payload(8, 10));
        let records = vec![payload(1, 20), planted, payload(3, 50), payload(4, 5)];
        let (path, starts) = write_wal(dir.path(), &records)?;
        let mut bytes = std::fs::read(&path)?;
        bytes[starts[1]] ^= 0x01;
        std::fs::write(&path, &bytes)?;
        let (contents, damage) = read_wal_salvaging(&StdFs, &path)?;
        assert_eq!(
            contents.records,
            vec![records[0].clone(), records[2].clone(), records[3].clone()]
        );
        assert_eq!(damage.len(), 1);
        assert_eq!(contents.record_offsets[1], starts[2] as u64);
        Ok(())
    }
}
