//! The fixed-size footer at the end of every table.

use super::Malformed;
use crate::format::coding::{get_u32, get_u64, masked_crc, put_u32, put_u64};

/// Bytes of the footer.
pub(super) const FOOTER_LEN: u64 = 64;
/// The format version this code writes and reads.
pub(super) const FORMAT_VERSION: u32 = 1;
/// The last eight bytes of every table.
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"NaiveSST");

const VERSION_AT: usize = 48;
const CRC_AT: usize = 52;
const MAGIC_AT: usize = 56;

/// Where the index and filter are, and what the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Footer {
    pub(super) index_offset: u64,
    pub(super) index_len: u64,
    pub(super) filter_offset: u64,
    pub(super) filter_len: u64,
    pub(super) entry_count: u64,
    pub(super) max_seq: u64,
}

impl Footer {
    /// The footer's 64 bytes.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(FOOTER_LEN as usize);
        for field in self.fields() {
            put_u64(&mut buf, field);
        }
        put_u32(&mut buf, FORMAT_VERSION);
        let crc = masked_crc(&buf);
        put_u32(&mut buf, crc);
        put_u64(&mut buf, MAGIC);
        buf
    }

    fn fields(&self) -> [u64; 6] {
        [
            self.index_offset,
            self.index_len,
            self.filter_offset,
            self.filter_len,
            self.entry_count,
            self.max_seq,
        ]
    }

    /// Decodes and checks magic, crc and version, in that order.
    pub(super) fn decode(buf: &[u8]) -> Result<Footer, Malformed> {
        if buf.len() as u64 != FOOTER_LEN {
            return Err(Malformed::new(0, "footer has the wrong length"));
        }
        if get_u64(buf, MAGIC_AT) != Some(MAGIC) {
            return Err(Malformed::new(MAGIC_AT, "bad magic number: not a table"));
        }
        let covered = buf.get(..CRC_AT).unwrap_or_default();
        if get_u32(buf, CRC_AT) != Some(masked_crc(covered)) {
            return Err(Malformed::new(CRC_AT, "footer checksum mismatch"));
        }
        if get_u32(buf, VERSION_AT) != Some(FORMAT_VERSION) {
            return Err(Malformed::new(VERSION_AT, "unknown format version"));
        }
        let field = |i: usize| get_u64(buf, i * 8).ok_or(Malformed::new(i * 8, "truncated"));
        Ok(Footer {
            index_offset: field(0)?,
            index_len: field(1)?,
            filter_offset: field(2)?,
            filter_len: field(3)?,
            entry_count: field(4)?,
            max_seq: field(5)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOOTER: Footer = Footer {
        index_offset: 1,
        index_len: 2,
        filter_offset: 3,
        filter_len: 4,
        entry_count: 5,
        max_seq: u64::MAX,
    };

    #[test]
    fn footer_round_trips() {
        let buf = FOOTER.encode();
        assert_eq!(buf.len() as u64, FOOTER_LEN);
        assert_eq!(buf.get(56..), Some(&b"NaiveSST"[..]));
        assert_eq!(Footer::decode(&buf), Ok(FOOTER));
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let buf = FOOTER.encode();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            if let Some(byte) = bad.get_mut(i) {
                *byte ^= 0x10;
            }
            assert!(Footer::decode(&bad).is_err(), "byte {i}");
        }
    }
}
