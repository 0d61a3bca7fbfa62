//! Data blocks: encoding one entry, decoding a whole block, and the bounds-
//! checked cursor every decoder in this module reads with.

use bytes::Bytes;

use super::Malformed;
use crate::format::Entry;
use crate::format::coding::{get_varint, put_varint};

const KIND_TOMBSTONE: u8 = 0;
const KIND_PUT: u8 = 1;

/// Appends `entry` in the data block encoding (see the module doc).
pub(super) fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    put_varint(out, entry.key.len() as u64);
    match &entry.value {
        None => {
            out.push(KIND_TOMBSTONE);
            put_varint(out, entry.seq);
        }
        Some(value) => {
            out.push(KIND_PUT);
            put_varint(out, entry.seq);
            put_varint(out, value.len() as u64);
        }
    }
    out.extend_from_slice(&entry.key);
    if let Some(value) = &entry.value {
        out.extend_from_slice(value);
    }
}

/// Bytes `encode_entry` would append for `entry`.
pub(super) fn encoded_len(entry: &Entry) -> usize {
    let value_len = entry.value.as_ref().map_or(0, |v| 10 + v.len());
    10 + 1 + 10 + entry.key.len() + value_len
}

/// Decodes every entry of a block whose crc was checked. Keys must be
/// strictly increasing, greater than `after` (the previous block's last key)
/// and end with `last_key` (the index's word for this block).
pub(super) fn decode_block(
    data: &Bytes,
    after: Option<&[u8]>,
    last_key: &[u8],
) -> Result<Vec<Entry>, Malformed> {
    let mut cursor = Cursor::new(data);
    let mut entries: Vec<Entry> = Vec::new();
    while !cursor.at_end() {
        let at = cursor.pos();
        let entry = decode_entry(&mut cursor)?;
        let previous = entries.last().map(|e| e.key.as_ref()).or(after);
        if previous.is_some_and(|p| entry.key.as_ref() <= p) {
            return Err(Malformed::new(at, "keys out of order"));
        }
        entries.push(entry);
    }
    match entries.last() {
        None => Err(Malformed::new(0, "empty data block")),
        Some(last) if last.key.as_ref() != last_key => {
            Err(Malformed::new(0, "block's last key differs from the index"))
        }
        Some(_) => Ok(entries),
    }
}

fn decode_entry(cursor: &mut Cursor<'_>) -> Result<Entry, Malformed> {
    let key_len = cursor.varint()?;
    let kind = cursor.byte()?;
    let seq = cursor.varint()?;
    let value_len = match kind {
        KIND_TOMBSTONE => None,
        KIND_PUT => Some(cursor.varint()?),
        _ => {
            return Err(Malformed::new(
                cursor.pos().saturating_sub(1),
                "unknown entry kind",
            ));
        }
    };
    let key = cursor.bytes(key_len)?;
    let value = value_len.map(|len| cursor.bytes(len)).transpose()?;
    Ok(Entry { key, seq, value })
}

/// Reads a block front to back; every read is bounds-checked and fails with
/// [`Malformed`] instead of panicking.
pub(super) struct Cursor<'a> {
    data: &'a Bytes,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(data: &'a Bytes) -> Self {
        Cursor { data, pos: 0 }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, Malformed> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let (value, used) = get_varint(rest).ok_or(Malformed::new(self.pos, "bad varint"))?;
        self.pos += used;
        Ok(value)
    }

    pub(super) fn byte(&mut self) -> Result<u8, Malformed> {
        let byte = *self
            .data
            .get(self.pos)
            .ok_or(Malformed::new(self.pos, "truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    /// The next `len` bytes, sharing the block's buffer.
    pub(super) fn bytes(&mut self, len: u64) -> Result<Bytes, Malformed> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= self.data.len())
            .ok_or(Malformed::new(self.pos, "length past the end of the block"))?;
        let bytes = self.data.slice(self.pos..end);
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, seq: u64, value: Option<&str>) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            seq,
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    fn encode(entries: &[Entry]) -> Bytes {
        let mut buf = Vec::new();
        for e in entries {
            let before = buf.len();
            encode_entry(e, &mut buf);
            assert!(buf.len() - before <= encoded_len(e));
        }
        Bytes::from(buf)
    }

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            entry("a", 1, Some("x")),
            entry("b", 7, None),
            entry("c", 300, Some("")),
        ];
        let data = encode(&entries);
        assert_eq!(decode_block(&data, None, b"c"), Ok(entries));
    }

    #[test]
    fn order_and_last_key_are_checked() {
        let data = encode(&[entry("b", 1, None), entry("a", 1, None)]);
        assert!(decode_block(&data, None, b"a").is_err());
        let data = encode(&[entry("a", 1, None)]);
        assert!(decode_block(&data, Some(b"a"), b"a").is_err());
        assert!(decode_block(&data, None, b"b").is_err());
        assert!(decode_block(&Bytes::new(), None, b"").is_err());
    }

    #[test]
    fn every_truncation_is_malformed() {
        let data = encode(&[entry("key", 5, Some("value")), entry("last", 6, None)]);
        for len in 0..data.len() {
            assert!(
                decode_block(&data.slice(..len), None, b"last").is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn huge_lengths_are_malformed() {
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        buf.push(KIND_TOMBSTONE);
        put_varint(&mut buf, 1);
        assert!(decode_block(&Bytes::from(buf), None, b"").is_err());
        assert!(decode_block(&Bytes::from_static(&[1, 9, 0, b'a']), None, b"a").is_err());
    }
}
