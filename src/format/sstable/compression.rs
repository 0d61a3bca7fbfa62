//! How a version-2 data block is stored: its payload, then one byte saying
//! how (the block's crc covers both).
//!
//! ```text
//! type 0 (raw):  [entries][0]
//! type 1 (lz4):  [raw_len: u32 LE][lz4 block of the entries][1]
//! ```
//!
//! `raw_len` is checked against [`MAX_RAW_BLOCK_BYTES`] before anything is
//! allocated, and the decompressed length must equal it.

use bytes::Bytes;

use super::{Compression, Malformed};

/// Block type byte: stored as written.
const RAW: u8 = 0;
/// Block type byte: LZ4 with the raw length before it.
const LZ4: u8 = 1;

/// No block decompresses to more: one entry of the largest key and value
/// the engine accepts, with room for its framing.
pub(super) const MAX_RAW_BLOCK_BYTES: usize = 33 << 20;

/// `entries` as they are written: compressed if `compression` asks for it
/// and it shrinks them by at least an eighth, then the type byte.
pub(super) fn encode_block(entries: &[u8], compression: Compression) -> Vec<u8> {
    if compression == Compression::Lz4 {
        let compressed = lz4_flex::block::compress_prepend_size(entries);
        if compressed.len() + entries.len() / 8 < entries.len() {
            let mut out = compressed;
            out.push(LZ4);
            return out;
        }
    }
    let mut out = Vec::with_capacity(entries.len() + 1);
    out.extend_from_slice(entries);
    out.push(RAW);
    out
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
        _ => Err(Malformed::new(
            payload.len(),
            "unknown block compression type",
        )),
    }
}

fn decompress_lz4(payload: &[u8]) -> Result<Vec<u8>, Malformed> {
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
    let body = payload.get(4..).unwrap_or_default();
    let raw = lz4_flex::block::decompress(body, raw_len)
        .map_err(|_| Malformed::new(4, "compressed block does not decompress"))?;
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

    #[test]
    fn blocks_that_do_not_shrink_are_stored_raw() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let stored = encode_block(&noise, Compression::Lz4);
        assert_eq!(stored.last(), Some(&RAW));
        assert_eq!(decode_block(Bytes::from(stored)).unwrap(), noise);
        let plain = encode_block(&text(10), Compression::None);
        assert_eq!(plain.last(), Some(&RAW));
    }

    #[test]
    fn damaged_compressed_blocks_are_errors_not_panics() {
        let stored = encode_block(&text(100), Compression::Lz4);
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
        assert!(decode_block(Bytes::from(huge)).is_err());
        assert!(decode_block(Bytes::new()).is_err());
    }
}
