//! Data blocks: encoding one entry, decoding a whole block, and the bounds-
//! checked cursor every decoder in this module reads with.

use std::cmp::Ordering;

use bytes::Bytes;

use super::Malformed;
use crate::format::Entry;
use crate::format::coding::{get_varint, put_varint};

const KIND_TOMBSTONE: u8 = 0;
const KIND_PUT: u8 = 1;
const KIND_PUT_EXPIRING: u8 = 2;

/// Appends `entry` in the data block encoding (see the module doc).
pub(super) fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    put_varint(out, entry.key.len() as u64);
    match &entry.value {
        None => {
            out.push(KIND_TOMBSTONE);
            put_varint(out, entry.seq);
        }
        Some(value) if entry.expire_at_ms != 0 => {
            out.push(KIND_PUT_EXPIRING);
            put_varint(out, entry.seq);
            put_varint(out, entry.expire_at_ms);
            put_varint(out, value.len() as u64);
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
    let expiry_len = if entry.expire_at_ms != 0 { 10 } else { 0 };
    10 + 1 + 10 + expiry_len + entry.key.len() + value_len
}

/// Decodes every entry of a block whose crc was checked. Keys must be
/// strictly increasing, greater than `after` (the previous block's last key)
/// and end with `last_key` (the index's word for this block).
pub(super) fn decode_block(
    data: &Bytes,
    after: Option<&[u8]>,
    last_key: &[u8],
) -> Result<Vec<Entry>, Malformed> {
    let mut entries = Vec::new();
    walk_block(data, after, last_key, |_, entry| entries.push(entry))?;
    Ok(entries)
}

/// Checks a whole block as `decode_block` does, handing each entry and its
/// offset in the block to `visit`.
fn walk_block(
    data: &Bytes,
    after: Option<&[u8]>,
    last_key: &[u8],
    mut visit: impl FnMut(usize, Entry),
) -> Result<(), Malformed> {
    let mut cursor = Cursor::new(data);
    let mut previous: Option<Bytes> = None;
    while !cursor.at_end() {
        let at = cursor.pos();
        let entry = decode_entry(&mut cursor)?;
        let before = previous.as_deref().or(after);
        if before.is_some_and(|p| entry.key.as_ref() <= p) {
            return Err(Malformed::new(at, "keys out of order"));
        }
        previous = Some(entry.key.clone());
        visit(at, entry);
    }
    match previous {
        None => Err(Malformed::new(0, "empty data block")),
        Some(last) if last.as_ref() != last_key => {
            Err(Malformed::new(0, "block's last key differs from the index"))
        }
        Some(_) => Ok(()),
    }
}

/// A checked data block kept whole, with where each entry starts, so that a
/// point lookup binary-searches it without decoding every entry. What the
/// block cache holds.
#[derive(Debug)]
pub struct Block {
    data: Bytes,
    /// Offset of each entry in `data`, ascending (so by key too).
    offsets: Vec<u32>,
}

impl Block {
    /// Checks `data` as `decode_block` does and indexes its entries.
    pub(super) fn decode(
        data: Bytes,
        after: Option<&[u8]>,
        last_key: &[u8],
    ) -> Result<Block, Malformed> {
        if u32::try_from(data.len()).is_err() {
            return Err(Malformed::new(0, "block larger than 4 GiB"));
        }
        let mut offsets = Vec::new();
        walk_block(&data, after, last_key, |at, _| offsets.push(at as u32))?;
        Ok(Block { data, offsets })
    }

    /// The entry for `key`, if the block holds one.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        // `decode` parsed every offset, so `key_at` cannot fail here; were it
        // to, the search would just miss.
        let found = self
            .offsets
            .binary_search_by(|&at| self.key_at(at).map_or(Ordering::Less, |k| k.cmp(key)));
        let at = *self.offsets.get(found.ok()?)?;
        let mut cursor = Cursor::new(&self.data);
        cursor.pos = at as usize;
        decode_entry(&mut cursor)
            .ok()
            .filter(|entry| entry.key.as_ref() == key)
    }

    /// Memory the block holds: its bytes and its offsets.
    pub fn memory_bytes(&self) -> usize {
        self.data.len() + self.offsets.len() * std::mem::size_of::<u32>()
    }

    /// The key of the entry at `at`, borrowed from the block.
    fn key_at(&self, at: u32) -> Option<&[u8]> {
        let rest = self.data.get(at as usize..)?;
        let (key_len, mut used) = get_varint(rest)?;
        let kind = *rest.get(used)?;
        used += 1;
        let (_seq, seq_len) = get_varint(rest.get(used..)?)?;
        used += seq_len;
        if kind == KIND_PUT_EXPIRING {
            let (_expire_at_ms, len) = get_varint(rest.get(used..)?)?;
            used += len;
        }
        if kind == KIND_PUT || kind == KIND_PUT_EXPIRING {
            let (_value_len, len) = get_varint(rest.get(used..)?)?;
            used += len;
        }
        let end = used.checked_add(usize::try_from(key_len).ok()?)?;
        rest.get(used..end)
    }
}

fn decode_entry(cursor: &mut Cursor<'_>) -> Result<Entry, Malformed> {
    let key_len = cursor.varint()?;
    let kind = cursor.byte()?;
    let seq = cursor.varint()?;
    let expire_at_ms = match kind {
        KIND_PUT_EXPIRING => cursor.varint()?,
        _ => 0,
    };
    let value_len = match kind {
        KIND_TOMBSTONE => None,
        KIND_PUT | KIND_PUT_EXPIRING => Some(cursor.varint()?),
        _ => {
            return Err(Malformed::new(
                cursor.pos().saturating_sub(1),
                "unknown entry kind",
            ));
        }
    };
    let key = cursor.bytes(key_len)?;
    let value = value_len.map(|len| cursor.bytes(len)).transpose()?;
    Ok(Entry {
        key,
        seq,
        value,
        expire_at_ms,
    })
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
            expire_at_ms: 0,
        }
    }

    fn expiring(key: &str, seq: u64, value: &str, expire_at_ms: u64) -> Entry {
        Entry {
            expire_at_ms,
            ..entry(key, seq, Some(value))
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
    fn expiring_entries_round_trip_beside_old_kinds() {
        let entries = vec![
            entry("a", 1, Some("x")),
            expiring("b", 2, "y", 1_700_000_000_123),
            entry("c", 3, None),
            expiring("d", 300, "", 1),
            expiring("e", 301, "z", u64::MAX),
        ];
        let data = encode(&entries);
        assert_eq!(decode_block(&data, None, b"e"), Ok(entries.clone()));
        let block = Block::decode(data.clone(), None, b"e").unwrap();
        for e in &entries {
            assert_eq!(block.get(&e.key).as_ref(), Some(e));
        }
        // kind 2 is the byte after the key length; the expiry follows seq.
        let mut one = Vec::new();
        encode_entry(&expiring("k", 5, "v", 300), &mut one);
        assert_eq!(one, [1, KIND_PUT_EXPIRING, 5, 0xAC, 0x02, 1, b'k', b'v']);
        // An entry without an expiry is still written as kind 1, byte for
        // byte what older versions wrote.
        let mut plain = Vec::new();
        encode_entry(&entry("k", 5, Some("v")), &mut plain);
        assert_eq!(plain, [1, KIND_PUT, 5, 1, b'k', b'v']);
        for len in 0..one.len() {
            let cut = Bytes::copy_from_slice(&one[..len]);
            assert!(decode_block(&cut, None, b"k").is_err(), "len {len}");
        }
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
    fn block_lookup_finds_every_key_and_only_those() {
        let entries: Vec<Entry> = (0..50u64)
            .map(|i| {
                let key = format!("k{:03}", i * 2);
                let value = (i % 3 != 0).then(|| format!("v{i}"));
                entry(&key, 100 + i, value.as_deref())
            })
            .collect();
        let data = encode(&entries);
        let block = Block::decode(data.clone(), Some(b"a"), b"k098").unwrap();
        for e in &entries {
            assert_eq!(block.get(&e.key).as_ref(), Some(e));
        }
        for i in 0..50u64 {
            assert_eq!(block.get(format!("k{:03}", i * 2 + 1).as_bytes()), None);
        }
        assert_eq!(block.get(b"a"), None);
        assert_eq!(block.get(b"z"), None);
        assert!(Block::decode(data, Some(b"k000"), b"k098").is_err());
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
