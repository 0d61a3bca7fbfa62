//! The fixed-size footer at the end of every table. Version 2 (80 bytes)
//! adds the table's file number and its database's id to version 1's 64
//! bytes; all end with version, crc and magic, so the last 16 bytes of a
//! file say which one it has. Version 3 has version 2's footer; its data
//! blocks end with restart points.

use super::Malformed;
use crate::format::coding::{get_u32, get_u64, masked_crc, put_u32, put_u64};

/// Bytes of the footer this code writes (versions 2 and 3).
pub(super) const FOOTER_LEN: u64 = 80;
/// Bytes of a version 1 footer, still read.
pub(super) const FOOTER_V1_LEN: u64 = 64;
/// The format version this code writes.
pub(super) const FORMAT_VERSION: u32 = 3;
/// The last eight bytes of every table.
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"NaiveSST");

/// Version, crc and magic: the same last 16 bytes in every version.
const TRAILER_LEN: usize = 16;

/// Where the index and filter are, and what the table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Footer {
    pub(super) index_offset: u64,
    pub(super) index_len: u64,
    pub(super) filter_offset: u64,
    pub(super) filter_len: u64,
    pub(super) entry_count: u64,
    pub(super) max_seq: u64,
    /// Which file and database the table was written as; `None` in a
    /// version 1 table.
    pub(super) identity: Option<TableIdentity>,
    /// The table's format version: 1, 2 or 3 (restart points in data
    /// blocks).
    pub(super) version: u32,
}

/// What a table was written as, so that a file renamed, swapped or copied
/// from another database is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableIdentity {
    /// The number in the file's name when it was written.
    pub file_number: u64,
    /// The id of the database it was written for (its manifest's).
    pub database_id: u64,
}

impl Footer {
    /// The footer's bytes: `version` 2 or 3 with an identity, version 1
    /// without one (what tests use to make version-1 tables).
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(FOOTER_LEN as usize);
        for field in self.fields() {
            put_u64(&mut buf, field);
        }
        if let Some(identity) = self.identity.filter(|_| self.version >= 2) {
            put_u64(&mut buf, identity.file_number);
            put_u64(&mut buf, identity.database_id);
            put_u32(&mut buf, self.version);
        } else {
            put_u32(&mut buf, 1);
        }
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

    /// How long the footer at the end of `tail` (the file's last bytes, at
    /// least 16 of them) is, from its version; checks the magic number.
    pub(super) fn len_from_tail(tail: &[u8]) -> Result<u64, Malformed> {
        let at = tail.len().saturating_sub(TRAILER_LEN);
        if tail.len() < TRAILER_LEN || get_u64(tail, at + 8) != Some(MAGIC) {
            return Err(Malformed::new(at + 8, "bad magic number: not a table"));
        }
        match get_u32(tail, at) {
            Some(1) => Ok(FOOTER_V1_LEN),
            Some(2 | FORMAT_VERSION) => Ok(FOOTER_LEN),
            _ => Err(Malformed::new(at, "unknown format version")),
        }
    }

    /// Decodes a whole footer (64 or 80 bytes) and checks magic, version
    /// and crc.
    pub(super) fn decode(buf: &[u8]) -> Result<Footer, Malformed> {
        let len = Footer::len_from_tail(buf)?;
        if buf.len() as u64 != len {
            return Err(Malformed::new(0, "footer has the wrong length"));
        }
        let crc_at = buf.len() - 12;
        let covered = buf.get(..crc_at).unwrap_or_default();
        if get_u32(buf, crc_at) != Some(masked_crc(covered)) {
            return Err(Malformed::new(crc_at, "footer checksum mismatch"));
        }
        let field = |i: usize| get_u64(buf, i * 8).ok_or(Malformed::new(i * 8, "truncated"));
        let version = get_u32(buf, buf.len() - 16).unwrap_or(1);
        let identity = if len == FOOTER_LEN {
            Some(TableIdentity {
                file_number: field(6)?,
                database_id: field(7)?,
            })
        } else {
            None
        };
        Ok(Footer {
            index_offset: field(0)?,
            index_len: field(1)?,
            filter_offset: field(2)?,
            filter_len: field(3)?,
            entry_count: field(4)?,
            max_seq: field(5)?,
            identity,
            version,
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
        identity: Some(TableIdentity {
            file_number: 6,
            database_id: 7,
        }),
        version: FORMAT_VERSION,
    };

    #[test]
    fn footer_round_trips() {
        let buf = FOOTER.encode();
        assert_eq!(buf.len() as u64, FOOTER_LEN);
        assert_eq!(buf.get(72..), Some(&b"NaiveSST"[..]));
        assert_eq!(Footer::decode(&buf), Ok(FOOTER));
    }

    /// A version 1 footer, as tables written before version 2 end.
    fn version_1(footer: &Footer) -> Vec<u8> {
        Footer {
            identity: None,
            version: 1,
            ..*footer
        }
        .encode()
    }

    #[test]
    fn version_1_footers_still_decode_without_identity() {
        let buf = version_1(&FOOTER);
        assert_eq!(Footer::len_from_tail(&buf), Ok(FOOTER_V1_LEN));
        let decoded = Footer::decode(&buf).unwrap();
        assert_eq!(decoded.identity, None);
        assert_eq!(decoded.max_seq, FOOTER.max_seq);
        let mut bad = buf.clone();
        bad[3] ^= 1;
        assert!(Footer::decode(&bad).is_err());
    }

    #[test]
    fn version_2_footers_still_decode() {
        let buf = Footer {
            version: 2,
            ..FOOTER
        }
        .encode();
        let decoded = Footer::decode(&buf).unwrap();
        assert_eq!(decoded.version, 2);
        assert_eq!(decoded.identity, FOOTER.identity);
        let unknown = Footer {
            version: FORMAT_VERSION + 1,
            ..FOOTER
        };
        assert!(Footer::decode(&unknown.encode()).is_err());
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
