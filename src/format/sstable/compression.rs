//! How a version-2 data block is stored: its payload, then one byte saying
//! how (the block's crc covers both).
//!
//! ```text
//! type 0 (raw):  [entries][0]
//! type 1 (lz4):  [raw_len: u32 LE][lz4 block of the entries][1]
//! type 2 (zstd): [raw_len: u32 LE][zstd frame of the entries][2]
//! ```
//!
//! `raw_len` is checked against [`MAX_RAW_BLOCK_BYTES`] before anything is
//! allocated, the decompressor may write no more than `raw_len` bytes, and
//! the decompressed length must equal it. Type 2 appeared after type 1 in
//! the same table version: readers that predate it report such a block as
//! corrupt rather than misreading it.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::{Compression, Malformed};

/// Block type byte: stored as written.
const RAW: u8 = 0;
/// Block type byte: LZ4 with the raw length before it.
const LZ4: u8 = 1;
/// Block type byte: one zstd frame with the raw length before it.
const ZSTD: u8 = 2;

/// No block decompresses to more: one entry of the largest key and value
/// the engine accepts, with room for its framing.
pub(super) const MAX_RAW_BLOCK_BYTES: usize = 33 << 20;

/// `entries` as they are written: compressed if `compression` asks for it
/// and it shrinks them by at least an eighth, then the type byte.
pub(super) fn encode_block(entries: &[u8], compression: Compression) -> Vec<u8> {
    let compressed = match compression {
        Compression::None => None,
        Compression::Lz4 => Some((lz4_flex::block::compress_prepend_size(entries), LZ4)),
        Compression::Zstd(level) => compress_zstd(entries, level).map(|out| (out, ZSTD)),
    };
    if let Some((mut out, kind)) = compressed
        && out.len() + entries.len() / 8 < entries.len()
    {
        out.push(kind);
        return out;
    }
    let mut out = Vec::with_capacity(entries.len() + 1);
    out.extend_from_slice(entries);
    out.push(RAW);
    out
}

/// The entries of a stored block that was stored raw, borrowed; `None` if
/// it is compressed or malformed (for [`decode_block`] to handle or report).
pub(super) fn raw_payload(stored: &[u8]) -> Option<&[u8]> {
    match stored.split_last() {
        Some((&RAW, payload)) => Some(payload),
        _ => None,
    }
}

/// The entries of a stored block (its crc already checked).
pub(super) fn decode_block(stored: Bytes) -> Result<Bytes, Malformed> {
    let Some((&kind, _)) = stored.split_last() else {
        return Err(Malformed::new(0, "empty data block"));
    };
    let payload = stored.slice(..stored.len() - 1);
    match kind {
        RAW => Ok(payload),
        LZ4 => decompress_lz4(&payload).map(Bytes::from),
        ZSTD => decompress_zstd(&payload).map(Bytes::from),
        _ => Err(Malformed::new(
            payload.len(),
            "unknown block compression type",
        )),
    }
}

fn decompress_lz4(payload: &[u8]) -> Result<Vec<u8>, Malformed> {
    let (raw_len, body) = split_raw_len(payload)?;
    let raw = lz4_flex::block::decompress(body, raw_len)
        .map_err(|_| Malformed::new(4, "compressed block does not decompress"))?;
    if raw.len() != raw_len {
        return Err(Malformed::new(0, "compressed block has the wrong size"));
    }
    Ok(raw)
}

impl FromStr for Compression {
    type Err = String;

    /// `none`, `lz4`, `zstd` (level 3) or `zstd:LEVEL` (1 to 22),
    /// case-insensitive: the `--compression` flag.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let (name, level) = match text.split_once(':') {
            Some((name, level)) => (name, Some(level)),
            None => (text.as_str(), None),
        };
        match (name, level) {
            ("none", None) => Ok(Compression::None),
            ("lz4", None) => Ok(Compression::Lz4),
            ("zstd", None) => Ok(Compression::Zstd(DEFAULT_ZSTD_LEVEL)),
            ("zstd", Some(level)) => match level.parse::<i32>() {
                Ok(level) if (1..=22).contains(&level) => Ok(Compression::Zstd(level)),
                _ => Err(format!(
                    "zstd level must be a whole number from 1 to 22, not '{level}'"
                )),
            },
            _ => Err(format!(
                "unknown compression '{text}' (use none, lz4, zstd or zstd:LEVEL)"
            )),
        }
    }
}

impl fmt::Display for Compression {
    /// The text [`Compression::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
        }
    }
}

/// The level of `zstd` without one: zstd's own default.
pub(super) const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The recorded raw length of a compressed block (checked against
/// [`MAX_RAW_BLOCK_BYTES`]) and the compressed bytes after it.
fn split_raw_len(payload: &[u8]) -> Result<(usize, &[u8]), Malformed> {
    let raw_len = payload
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
        .ok_or(Malformed::new(0, "compressed block too short"))?;
    if raw_len > MAX_RAW_BLOCK_BYTES {
        return Err(Malformed::new(
            0,
            "compressed block claims an impossible size",
        ));
    }
    Ok((raw_len, payload.get(4..).unwrap_or_default()))
}

thread_local! {
    /// This thread's zstd compression context and the level it is set to:
    /// making one per block would cost more than compressing a 4 KiB block.
    static ZSTD_COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// This thread's zstd decompression context.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// `[raw_len][zstd frame]` of `entries`, or `None` if zstd failed (the
/// block is then stored raw rather than failing the write). zstd clamps a
/// level outside its range.
fn compress_zstd(entries: &[u8], level: i32) -> Option<Vec<u8>> {
    let raw_len = u32::try_from(entries.len()).ok()?;
    ZSTD_COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.as_ref().is_none_or(|(set, _)| *set != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        let frame = compressor.compress(entries).ok()?;
        // Room for the type byte the caller pushes.
        let mut out = Vec::with_capacity(4 + frame.len() + 1);
        out.extend_from_slice(&raw_len.to_le_bytes());
        out.extend_from_slice(&frame);
        Some(out)
    })
}

fn decompress_zstd(payload: &[u8]) -> Result<Vec<u8>, Malformed> {
    let (raw_len, body) = split_raw_len(payload)?;
    let failed = || Malformed::new(4, "compressed block does not decompress");
    let raw = ZSTD_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|_| failed())?;
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|_| failed())?);
        }
        let decompressor = slot.as_mut().ok_or_else(failed)?;
        // The output buffer is `raw_len` bytes: a frame that would grow
        // past it is an error, not an allocation.
        decompressor.decompress(body, raw_len).map_err(|_| failed())
    })?;
    if raw.len() != raw_len {
        return Err(Malformed::new(0, "compressed block has the wrong size"));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("{{\"user\":{i},\"name\":\"field\"}}").into_bytes())
            .collect()
    }

    #[test]
    fn compressible_blocks_shrink_and_come_back() {
        let entries = text(100);
        let stored = encode_block(&entries, Compression::Lz4);
        assert!(stored.len() < entries.len() / 2, "{}", stored.len());
        assert_eq!(stored.last(), Some(&LZ4));
        assert_eq!(decode_block(Bytes::from(stored)).unwrap(), entries);
    }

    /// 4 KiB of xorshift noise from `state`: bytes no codec shrinks.
    fn noise(state: u64) -> Vec<u8> {
        let mut next = crate::test_random::xorshift(state);
        (0..4096).map(|_| (next() >> 24) as u8).collect()
    }

    #[test]
    fn blocks_that_do_not_shrink_are_stored_raw() {
        let noise = noise(0x9E37_79B9_7F4A_7C15);
        let stored = encode_block(&noise, Compression::Lz4);
        assert_eq!(stored.last(), Some(&RAW));
        assert_eq!(decode_block(Bytes::from(stored)).unwrap(), noise);
        let plain = encode_block(&text(10), Compression::None);
        assert_eq!(plain.last(), Some(&RAW));
    }

    #[test]
    fn zstd_blocks_shrink_and_come_back_at_each_level() {
        let entries = text(200);
        let lz4 = encode_block(&entries, Compression::Lz4);
        for level in [1, 3, 9, 19] {
            let stored = encode_block(&entries, Compression::Zstd(level));
            assert_eq!(stored.last(), Some(&ZSTD), "level {level}");
            assert!(stored.len() < lz4.len(), "level {level}: {}", stored.len());
            assert_eq!(decode_block(Bytes::from(stored)).unwrap(), entries);
        }
        // Levels zstd does not have are clamped, not refused.
        let stored = encode_block(&entries, Compression::Zstd(1000));
        assert_eq!(decode_block(Bytes::from(stored)).unwrap(), entries);
    }

    #[test]
    fn incompressible_blocks_are_raw_under_zstd_too() {
        let noise = noise(0x2545_F491_4F6C_DD1D);
        let stored = encode_block(&noise, Compression::Zstd(3));
        assert_eq!(stored.last(), Some(&RAW));
        assert_eq!(decode_block(Bytes::from(stored)).unwrap(), noise);
    }

    #[test]
    fn damaged_compressed_blocks_are_errors_not_panics() {
        for codec in [Compression::Lz4, Compression::Zstd(3)] {
            let stored = encode_block(&text(100), codec);
            for at in 0..stored.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut bad = stored.clone();
                    bad[at] ^= flip;
                    if let Ok(raw) = decode_block(Bytes::from(bad)) {
                        assert!(raw.len() <= MAX_RAW_BLOCK_BYTES);
                    }
                }
            }
            let mut huge = stored.clone();
            huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
            assert!(decode_block(Bytes::from(huge)).is_err(), "{codec}");
            for cut in [1, 4, 5, stored.len() / 2, stored.len() - 1] {
                let mut short = stored[..stored.len() - 1 - cut.min(stored.len() - 1)].to_vec();
                short.push(*stored.last().unwrap());
                assert!(
                    decode_block(Bytes::from(short)).is_err(),
                    "{codec} cut {cut}"
                );
            }
        }
        assert!(decode_block(Bytes::new()).is_err());
    }

    #[test]
    fn a_zstd_frame_larger_than_its_recorded_length_is_refused() {
        let entries = text(100);
        let mut stored = encode_block(&entries, Compression::Zstd(3));
        // Claim one byte fewer: the frame no longer fits the buffer.
        stored[..4].copy_from_slice(&(entries.len() as u32 - 1).to_le_bytes());
        assert!(decode_block(Bytes::from(stored.clone())).is_err());
        // Claim one byte more: the frame decompresses short.
        stored[..4].copy_from_slice(&(entries.len() as u32 + 1).to_le_bytes());
        assert!(decode_block(Bytes::from(stored)).is_err());
    }

    #[test]
    fn compression_flags_parse_and_print_back() {
        for (text, codec) in [
            ("none", Compression::None),
            ("LZ4", Compression::Lz4),
            ("zstd", Compression::Zstd(DEFAULT_ZSTD_LEVEL)),
            ("zstd:19", Compression::Zstd(19)),
        ] {
            assert_eq!(text.parse::<Compression>(), Ok(codec));
            assert_eq!(codec.to_string().parse::<Compression>(), Ok(codec));
        }
        for bad in ["gzip", "zstd:0", "zstd:23", "zstd:x", "lz4:1", ""] {
            let err = bad.parse::<Compression>().unwrap_err();
            assert!(err.contains("zstd") || err.contains("compression"), "{err}");
        }
    }
}
