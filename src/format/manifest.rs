//! The manifest: the live segment set, the next file number and how far the
//! segments cover the WAL. It is small and rewritten whole on every change.
//!
//! # Format
//!
//! `MANIFEST` is one header followed by one payload:
//!
//! ```text
//! offset  0: magic        8 bytes  b"NKVMANI1"
//! offset  8: version      u32 LE   1, or 2 when it holds range tombstones
//! offset 12: payload_len  u32 LE   bytes after the header
//! offset 16: payload_crc  u32 LE   masked CRC32C of the payload
//! offset 20: payload      the prost-encoded `naivekv.storage.Manifest`
//! ```
//!
//! Field 6 of the payload, `range_tombstones`, lists the installed range
//! deletes (start, end (empty: the end of the key space), sequence number,
//! and the live segments that may still hold versions they delete; see
//! `engine/range_delete.rs`). A manifest that holds any is written as
//! version 2, so that a build that predates range deletes refuses it
//! instead of opening it without them and showing deleted keys again; one
//! without any is still version 1, and both versions are read.
//!
//! # Updates and recovery
//!
//! [`write_manifest`] writes `MANIFEST.tmp`, fdatasyncs it, renames it over
//! `MANIFEST` and fsyncs the directory, so after a crash the directory holds
//! either the old manifest or the new one, complete. A leftover
//! `MANIFEST.tmp` is an interrupted write and is removed on open.
//!
//! Because a manifest is only ever replaced by a rename of a synced file, it
//! has no torn-tail case: [`read_manifest`] reports anything malformed (too
//! short, bad magic, unknown version, length not matching the file, bad
//! checksum, undecodable payload) as [`Error::Corruption`] with the file and
//! offset. A missing `MANIFEST` is `Ok(None)`: a new database if the
//! directory holds no segment and no WAL, and otherwise a refusal to open
//! (see `engine/inventory.rs`).
use std::io;
use std::path::Path;

use prost::Message;

use crate::error::IoContext;
use crate::format::coding::{get_u32, masked_crc, put_u32};
use crate::fs::FileSystem;
use crate::proto::storage::Manifest;
use crate::{Error, Result};

/// The manifest's file name inside the database directory.
pub const MANIFEST_FILE: &str = "MANIFEST";

/// The name a new manifest is written under before it replaces the old one.
const TEMPORARY_MANIFEST_FILE: &str = "MANIFEST.tmp";

/// Identifies a NaiveKV manifest.
const MAGIC: &[u8; 8] = b"NKVMANI1";

/// The format version of a manifest without range tombstones.
const VERSION: u32 = 1;

/// The format version of a manifest with range tombstones (field 6).
const VERSION_WITH_RANGE_TOMBSTONES: u32 = 2;

/// Magic, version, payload length, payload CRC.
const HEADER_BYTES: usize = 20;

/// Replaces the directory's manifest atomically and durably: write
/// `MANIFEST.tmp`, fdatasync, rename over `MANIFEST`, fsync the directory.
///
/// # Errors
///
/// [`Error::Io`] naming the file or directory whose call failed. The old
/// manifest may or may not have been replaced; either is complete.
pub fn write_manifest(fs: &dyn FileSystem, directory: &Path, manifest: &Manifest) -> Result<()> {
    let temporary = directory.join(TEMPORARY_MANIFEST_FILE);
    let path = directory.join(MANIFEST_FILE);
    let contents = encode(manifest);
    let file = fs
        .create(&temporary)
        .context(|| format!("creating {}", temporary.display()))?;
    let written = file
        .write_all(&contents)
        .context(|| format!("writing {}", temporary.display()))
        .and_then(|()| {
            file.sync_data()
                .context(|| format!("syncing {}", temporary.display()))
        });
    drop(file);
    let renamed = written.and_then(|()| {
        fs.rename(&temporary, &path)
            .context(|| format!("renaming {} to {}", temporary.display(), path.display()))
    });
    if renamed.is_err() {
        // On a full disk it holds space the retry needs.
        let _ = fs.remove_file(&temporary);
    }
    renamed?;
    // IMPORTANT: the rename lives in the directory, not in either file. Until
    // the directory is synced a crash can undo it and bring the old manifest
    // back, losing a segment set the engine may already have acted on (for
    // example by deleting the WAL or the segments the new manifest replaced).
    fs.sync_dir(directory)
        .context(|| format!("syncing directory {}", directory.display()))
}

/// Reads the directory's manifest; `Ok(None)` if there is none yet.
///
/// # Errors
///
/// [`Error::Io`] if the file exists but cannot be read, [`Error::Corruption`]
/// naming the file and offset if it is malformed in any way.
pub fn read_manifest(fs: &dyn FileSystem, directory: &Path) -> Result<Option<Manifest>> {
    let path = directory.join(MANIFEST_FILE);
    let data = match fs.read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    decode(&data)
        .map(Some)
        .map_err(|(offset, detail)| Error::corruption(&path, offset, detail))
}

/// The whole file for `manifest`: header and payload.
fn encode(manifest: &Manifest) -> Vec<u8> {
    let payload = manifest.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(MAGIC);
    let version = match manifest.range_tombstones.is_empty() {
        true => VERSION,
        false => VERSION_WITH_RANGE_TOMBSTONES,
    };
    put_u32(&mut out, version);
    // A manifest lists segments, not data: far below 4 GiB.
    put_u32(&mut out, payload.len() as u32);
    put_u32(&mut out, masked_crc(&payload));
    out.extend_from_slice(&payload);
    out
}

/// Parses a whole manifest file; `Err` holds the offset and what is wrong.
fn decode(data: &[u8]) -> Result<Manifest, (u64, String)> {
    let (Some(magic), Some(version), Some(payload_len), Some(payload_crc), Some(payload)) = (
        data.get(0..MAGIC.len()),
        get_u32(data, 8),
        get_u32(data, 12),
        get_u32(data, 16),
        data.get(HEADER_BYTES..),
    ) else {
        return Err((
            0,
            format!("file is {} bytes, shorter than the header", data.len()),
        ));
    };
    if magic != MAGIC {
        return Err((0, "bad magic number".to_string()));
    }
    if version != VERSION && version != VERSION_WITH_RANGE_TOMBSTONES {
        return Err((8, format!("unknown manifest version {version}")));
    }
    if payload_len as usize != payload.len() {
        return Err((
            12,
            format!(
                "payload length {payload_len}, but {} bytes follow",
                payload.len()
            ),
        ));
    }
    if masked_crc(payload) != payload_crc {
        return Err((16, "payload checksum mismatch".to_string()));
    }
    Manifest::decode(payload)
        .map_err(|e| (HEADER_BYTES as u64, format!("undecodable payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;
    use crate::proto::storage::SegmentMeta;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn sample() -> Manifest {
        Manifest {
            next_file_number: 42,
            flushed_seq: 1_000_000,
            segments: (0..5u64)
                .map(|i| SegmentMeta {
                    file_number: i + 3,
                    level: (i % 2) as u32,
                    smallest_key: format!("key{i:03}").into_bytes().into(),
                    largest_key: format!("key{:03}", i + 100).into_bytes().into(),
                    file_size: 4096 * (i + 1),
                    entry_count: 10 * i,
                    max_seq: 900 + i,
                    earliest_expire_at_ms: i * 1_000,
                })
                .collect(),
            oldest_live_wal: 40,
            oldest_live_wal_exists: true,
            wal_lineage: 0x11,
            database_id: 0x5eed,
            range_tombstones: Vec::new(),
            closed_at_seq: 1_000_000,
        }
    }

    #[test]
    fn round_trip() -> TestResult {
        let dir = tempfile::tempdir()?;
        write_manifest(&StdFs, dir.path(), &sample())?;
        assert_eq!(read_manifest(&StdFs, dir.path())?, Some(sample()));
        Ok(())
    }

    #[test]
    fn empty_manifest_round_trips() -> TestResult {
        let dir = tempfile::tempdir()?;
        write_manifest(&StdFs, dir.path(), &Manifest::default())?;
        assert_eq!(
            read_manifest(&StdFs, dir.path())?,
            Some(Manifest::default())
        );
        Ok(())
    }

    #[test]
    fn missing_file_is_none() -> TestResult {
        let dir = tempfile::tempdir()?;
        assert_eq!(read_manifest(&StdFs, dir.path())?, None);
        Ok(())
    }

    #[test]
    fn every_byte_flip_is_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        write_manifest(&StdFs, dir.path(), &sample())?;
        let path = dir.path().join(MANIFEST_FILE);
        let good = std::fs::read(&path)?;
        for at in 0..good.len() {
            for flip in [0x01u8, 0xff] {
                let mut damaged = good.clone();
                damaged[at] ^= flip;
                std::fs::write(&path, &damaged)?;
                let result = read_manifest(&StdFs, dir.path());
                assert!(
                    matches!(&result, Err(Error::Corruption { path: named, .. }) if *named == path),
                    "flip {flip:#x} at {at}: {result:?}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn every_truncation_is_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        write_manifest(&StdFs, dir.path(), &sample())?;
        let path = dir.path().join(MANIFEST_FILE);
        let good = std::fs::read(&path)?;
        for len in 0..good.len() {
            std::fs::write(&path, &good[..len])?;
            let result = read_manifest(&StdFs, dir.path());
            assert!(
                matches!(result, Err(Error::Corruption { .. })),
                "length {len}: {result:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn unknown_version_is_corruption_at_its_offset() -> TestResult {
        let dir = tempfile::tempdir()?;
        write_manifest(&StdFs, dir.path(), &sample())?;
        let path = dir.path().join(MANIFEST_FILE);
        let mut data = std::fs::read(&path)?;
        data[8..12].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&path, &data)?;
        let result = read_manifest(&StdFs, dir.path());
        assert!(
            matches!(result, Err(Error::Corruption { offset: 8, .. })),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn range_tombstones_make_a_version_2_manifest_and_version_1_still_reads() -> TestResult {
        use crate::proto::storage::RangeTombstone;
        let dir = tempfile::tempdir()?;
        let plain = sample();
        write_manifest(&StdFs, dir.path(), &plain)?;
        let data = std::fs::read(dir.path().join(MANIFEST_FILE))?;
        assert_eq!(get_u32(&data, 8), Some(1), "no tombstone: the old version");
        assert_eq!(read_manifest(&StdFs, dir.path())?, Some(plain.clone()));
        let with = Manifest {
            range_tombstones: vec![RangeTombstone {
                start: "a".into(),
                end: "".into(),
                seq: 9,
                dirty_segments: vec![3],
            }],
            ..plain
        };
        write_manifest(&StdFs, dir.path(), &with)?;
        let data = std::fs::read(dir.path().join(MANIFEST_FILE))?;
        assert_eq!(get_u32(&data, 8), Some(2));
        assert_eq!(read_manifest(&StdFs, dir.path())?, Some(with));
        Ok(())
    }

    #[test]
    fn valid_frame_around_bad_protobuf_is_corruption() -> TestResult {
        let dir = tempfile::tempdir()?;
        let payload = [0xffu8, 0xff, 0xff];
        let mut data = MAGIC.to_vec();
        put_u32(&mut data, VERSION);
        put_u32(&mut data, payload.len() as u32);
        put_u32(&mut data, masked_crc(&payload));
        data.extend_from_slice(&payload);
        std::fs::write(dir.path().join(MANIFEST_FILE), &data)?;
        let result = read_manifest(&StdFs, dir.path());
        assert!(
            matches!(result, Err(Error::Corruption { offset: 20, .. })),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn rewrite_replaces_and_leaves_no_temporary() -> TestResult {
        let dir = tempfile::tempdir()?;
        write_manifest(&StdFs, dir.path(), &sample())?;
        let newer = Manifest {
            next_file_number: 7,
            flushed_seq: 3,
            segments: Vec::new(),
            oldest_live_wal: 6,
            oldest_live_wal_exists: false,
            wal_lineage: 0,
            database_id: 0x5eed,
            range_tombstones: Vec::new(),
            closed_at_seq: 0,
        };
        write_manifest(&StdFs, dir.path(), &newer)?;
        assert_eq!(read_manifest(&StdFs, dir.path())?, Some(newer));
        let mut names = StdFs.list_dir(dir.path())?;
        names.sort();
        assert_eq!(names, vec![MANIFEST_FILE.to_string()]);
        Ok(())
    }
}
