//! Snapshot archives: an engine checkpoint packed into one file, the form in
//! which openraft streams a snapshot to a follower that is too far behind.
//!
//! # Archive format (`DIR/raft/snapshots/*.snap`)
//!
//! ```text
//! magic: 8 bytes "NKVSNAP1"
//! records, each in the WAL framing of `crate::format::wal`:
//!   len: u32 LE | header_crc: u32 LE | payload_crc: u32 LE | payload
//! ```
//!
//! Each payload is the postcard encoding of an `ArchiveRecord`: first
//! `Meta` (openraft's snapshot meta: last log id, membership, snapshot id),
//! then for each file of the checkpoint a `File` record with its name
//! followed by `Data` records of at most [`CHUNK_BYTES`] bytes each, and
//! finally `End`. An archive is valid only if every record checks and `End`
//! is present and last: there is no torn tail to forgive, since an archive
//! is used only once complete (built under a `.tmp` name and renamed, or
//! received whole from the leader). File names are plain names (no `/`, not
//! `.` or `..`), so unpacking cannot write outside its target directory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use openraft::{BasicNode, SnapshotMeta};
use serde::{Deserialize, Serialize};

use super::{NodeId, codec_error};
use crate::format::coding::{get_u32, masked_crc};
use crate::format::wal::{MAX_RECORD_BYTES, RECORD_HEADER_BYTES, WalWriter};

/// The first bytes of every archive.
pub const MAGIC: &[u8; 8] = b"NKVSNAP1";

/// The most file bytes one `Data` record carries.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The snapshot meta as stored in archives.
pub type Meta = SnapshotMeta<NodeId, BasicNode>;

/// One record of an archive (see the module doc).
#[derive(Debug, Serialize, Deserialize)]
enum ArchiveRecord {
    Meta(Meta),
    File { name: String },
    Data(Vec<u8>),
    End,
}

fn invalid(detail: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, detail.into())
}

fn write_record(out: &mut impl Write, record: &ArchiveRecord) -> std::io::Result<()> {
    let payload = postcard::to_stdvec(record).map_err(codec_error)?;
    let mut framed = Vec::with_capacity(payload.len() + RECORD_HEADER_BYTES);
    WalWriter::encode_record(&payload, &mut framed);
    out.write_all(&framed)
}

/// Packs the checkpoint in `checkpoint` (a flat directory) with `meta` into
/// the archive `target`, written under `target.tmp`, synced and renamed.
///
/// # Errors
///
/// Any I/O error; a partial `.tmp` file may be left for the caller.
pub fn pack(checkpoint: &Path, meta: &Meta, target: &Path) -> std::io::Result<u64> {
    let tmp = target.with_extension("snap.tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    out.write_all(MAGIC)?;
    write_record(&mut out, &ArchiveRecord::Meta(meta.clone()))?;
    let mut names: Vec<String> = std::fs::read_dir(checkpoint)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        write_record(&mut out, &ArchiveRecord::File { name: name.clone() })?;
        let mut file = BufReader::new(File::open(checkpoint.join(&name))?);
        let mut chunk = vec![0u8; CHUNK_BYTES];
        loop {
            let read = read_up_to(&mut file, &mut chunk)?;
            if read == 0 {
                break;
            }
            write_record(&mut out, &ArchiveRecord::Data(chunk[..read].to_vec()))?;
        }
    }
    write_record(&mut out, &ArchiveRecord::End)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    std::fs::rename(&tmp, target)?;
    if let Some(parent) = target.parent() {
        // IMPORTANT: the archive's name must be durable.
        File::open(parent)?.sync_all()?;
    }
    Ok(bytes)
}

/// Fills `buf` as far as the reader allows; 0 only at the end.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads the next record; `Ok(None)` at a clean end of input.
fn read_record(reader: &mut impl Read) -> std::io::Result<Option<ArchiveRecord>> {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    match read_up_to(reader, &mut header)? {
        0 => return Ok(None),
        RECORD_HEADER_BYTES => {}
        _ => return Err(invalid("archive ends inside a record header")),
    }
    let (len, header_crc, payload_crc) = (
        get_u32(&header, 0).unwrap_or(0),
        get_u32(&header, 4).unwrap_or(0),
        get_u32(&header, 8).unwrap_or(0),
    );
    if masked_crc(&header[0..4]) != header_crc {
        return Err(invalid("archive record header checksum mismatch"));
    }
    let len = len as usize;
    if len > MAX_RECORD_BYTES {
        return Err(invalid(format!("archive record of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    if read_up_to(reader, &mut payload)? != len {
        return Err(invalid("archive ends inside a record"));
    }
    if masked_crc(&payload) != payload_crc {
        return Err(invalid("archive record payload checksum mismatch"));
    }
    postcard::from_bytes(&payload)
        .map(Some)
        .map_err(codec_error)
}

fn check_magic(reader: &mut impl Read) -> std::io::Result<()> {
    let mut magic = [0u8; 8];
    if read_up_to(reader, &mut magic)? != magic.len() || &magic != MAGIC {
        return Err(invalid("not a NaiveKV snapshot archive"));
    }
    Ok(())
}

/// The meta at the front of an archive.
///
/// # Errors
///
/// `InvalidData` if the file is not an archive; other I/O errors.
pub fn read_meta(reader: &mut impl Read) -> std::io::Result<Meta> {
    check_magic(reader)?;
    match read_record(reader)? {
        Some(ArchiveRecord::Meta(meta)) => Ok(meta),
        _ => Err(invalid("archive does not start with its meta")),
    }
}

/// Whether `name` may be created inside the unpack directory.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Unpacks a whole archive into the new directory `target`, syncing every
/// file and the directory; returns the archive's meta.
///
/// # Errors
///
/// `InvalidData` for a damaged or incomplete archive or an unsafe name
/// (the partial directory is left for the caller to remove); other I/O
/// errors.
pub fn unpack(reader: &mut impl Read, target: &Path) -> std::io::Result<Meta> {
    let meta = read_meta(reader)?;
    std::fs::create_dir(target)?;
    let mut current: Option<File> = None;
    loop {
        let record = read_record(reader)?.ok_or_else(|| invalid("archive has no end"))?;
        match record {
            ArchiveRecord::File { name } if plain_name(&name) => {
                finish_file(current.take())?;
                current = Some(File::create_new(target.join(name))?);
            }
            ArchiveRecord::Data(data) => match current.as_mut() {
                Some(file) => file.write_all(&data)?,
                None => return Err(invalid("archive data before any file")),
            },
            ArchiveRecord::End => break,
            other => return Err(invalid(format!("unexpected archive record {other:?}"))),
        }
    }
    finish_file(current)?;
    // IMPORTANT: the files' names must be durable before the directory is used.
    File::open(target)?.sync_all()?;
    Ok(meta)
}

fn finish_file(file: Option<File>) -> std::io::Result<()> {
    match file {
        Some(file) => file.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    use super::*;

    fn meta() -> Meta {
        Meta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 9)),
            last_membership: StoredMembership::default(),
            snapshot_id: "2-9-x".into(),
        }
    }

    #[test]
    fn pack_then_unpack_gives_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        let big: Vec<u8> = (0..CHUNK_BYTES * 2 + 7).map(|i| (i % 251) as u8).collect();
        std::fs::write(source.join("a.sst"), &big).unwrap();
        std::fs::write(source.join("empty"), b"").unwrap();
        let archive = dir.path().join("x.snap");
        pack(&source, &meta(), &archive).unwrap();
        let out = dir.path().join("out");
        let unpacked = unpack(&mut File::open(&archive).unwrap(), &out).unwrap();
        assert_eq!(unpacked, meta());
        assert_eq!(std::fs::read(out.join("a.sst")).unwrap(), big);
        assert_eq!(std::fs::read(out.join("empty")).unwrap(), b"");
    }

    #[test]
    fn damaged_or_cut_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("f"), vec![7u8; 1000]).unwrap();
        let archive = dir.path().join("x.snap");
        pack(&source, &meta(), &archive).unwrap();
        let full = std::fs::read(&archive).unwrap();
        let mut flipped = full.clone();
        flipped[full.len() - 600] ^= 1;
        for (n, bytes) in [full[..full.len() - 1].to_vec(), flipped]
            .iter()
            .enumerate()
        {
            let out = dir.path().join(format!("out{n}"));
            let result = unpack(&mut bytes.as_slice(), &out);
            assert!(result.is_err(), "case {n}");
        }
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let mut bytes = MAGIC.to_vec();
        write_record(&mut bytes, &ArchiveRecord::Meta(meta())).unwrap();
        let escape = "../evil".to_string();
        write_record(&mut bytes, &ArchiveRecord::File { name: escape }).unwrap();
        write_record(&mut bytes, &ArchiveRecord::End).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let result = unpack(&mut bytes.as_slice(), &dir.path().join("out"));
        assert!(result.is_err());
        assert!(!dir.path().join("evil").exists());
    }
}
