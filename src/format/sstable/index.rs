//! The index block: the table's smallest key, then each data block's last
//! key, offset and length.

use bytes::Bytes;

use super::block::Cursor;
use super::{CRC_LEN, Malformed};
use crate::format::coding::put_varint;

/// Where one data block is and the last key it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BlockHandle {
    pub(super) last_key: Bytes,
    pub(super) offset: u64,
    /// Without the crc.
    pub(super) len: u64,
}

impl BlockHandle {
    /// Where the block's crc ends: the next block's offset.
    pub(super) fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)?.checked_add(CRC_LEN)
    }
}

/// Appends one handle to an index block under construction.
pub(super) fn encode_handle(handle: &BlockHandle, out: &mut Vec<u8>) {
    put_key(&handle.last_key, out);
    put_varint(out, handle.offset);
    put_varint(out, handle.len);
}

/// Starts an index block with the table's smallest key.
pub(super) fn encode_smallest_key(key: &[u8], out: &mut Vec<u8>) {
    put_key(key, out);
}

fn put_key(key: &[u8], out: &mut Vec<u8>) {
    put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
}

/// A decoded index block.
#[derive(Debug, Clone)]
pub(super) struct Index {
    pub(super) smallest_key: Bytes,
    pub(super) handles: Vec<BlockHandle>,
}

impl Index {
    /// Decodes an index block whose crc was checked. The blocks must tile
    /// `0..data_end` in order, with strictly increasing last keys, the first
    /// not below the smallest key.
    pub(super) fn decode(block: &Bytes, data_end: u64) -> Result<Index, Malformed> {
        let mut cursor = Cursor::new(block);
        let len = cursor.varint()?;
        let smallest_key = cursor.bytes(len)?;
        let mut handles: Vec<BlockHandle> = Vec::new();
        while !cursor.at_end() {
            let at = cursor.pos();
            let handle = decode_handle(&mut cursor)?;
            check_follows(&handle, handles.last(), &smallest_key)
                .map_err(|d| Malformed::new(at, d))?;
            handles.push(handle);
        }
        let tiled_to = handles.last().map_or(Some(0), BlockHandle::end);
        if handles.is_empty() || tiled_to != Some(data_end) {
            return Err(Malformed::new(
                cursor.pos(),
                "data blocks do not fill the data region",
            ));
        }
        Ok(Index {
            smallest_key,
            handles,
        })
    }

    /// Bytes held in memory, roughly.
    pub(super) fn memory_bytes(&self) -> usize {
        let keys: usize = self.handles.iter().map(|h| h.last_key.len()).sum();
        keys + self.handles.len() * std::mem::size_of::<BlockHandle>() + self.smallest_key.len()
    }
}

fn decode_handle(cursor: &mut Cursor<'_>) -> Result<BlockHandle, Malformed> {
    let key_len = cursor.varint()?;
    let last_key = cursor.bytes(key_len)?;
    let offset = cursor.varint()?;
    let len = cursor.varint()?;
    Ok(BlockHandle {
        last_key,
        offset,
        len,
    })
}

/// Checks that `handle` comes right after `previous` (or at offset 0).
fn check_follows(
    handle: &BlockHandle,
    previous: Option<&BlockHandle>,
    smallest_key: &[u8],
) -> Result<(), &'static str> {
    let expected_offset = previous.map_or(Some(0), BlockHandle::end);
    if expected_offset != Some(handle.offset) || handle.end().is_none() {
        return Err("data block not where the previous one ended");
    }
    if handle.len == 0 {
        return Err("empty data block");
    }
    match previous {
        Some(p) if handle.last_key <= p.last_key => Err("index keys out of order"),
        None if handle.last_key.as_ref() < smallest_key => Err("index key below smallest key"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(key: &'static str, offset: u64, len: u64) -> BlockHandle {
        BlockHandle {
            last_key: Bytes::from_static(key.as_bytes()),
            offset,
            len,
        }
    }

    fn encode(smallest: &str, handles: &[BlockHandle]) -> Bytes {
        let mut buf = Vec::new();
        encode_smallest_key(smallest.as_bytes(), &mut buf);
        for h in handles {
            encode_handle(h, &mut buf);
        }
        Bytes::from(buf)
    }

    #[test]
    fn index_round_trips() {
        let handles = vec![handle("c", 0, 10), handle("f", 14, 3)];
        let index = Index::decode(&encode("a", &handles), 21);
        assert!(
            index
                .as_ref()
                .is_ok_and(|i| i.handles == handles && i.smallest_key == "a")
        );
    }

    #[test]
    fn gaps_order_and_extent_are_checked() {
        let gap = [handle("c", 0, 10), handle("f", 15, 3)];
        assert!(Index::decode(&encode("a", &gap), 22).is_err());
        let order = [handle("f", 0, 10), handle("c", 14, 3)];
        assert!(Index::decode(&encode("a", &order), 21).is_err());
        let short = [handle("c", 0, 10)];
        assert!(Index::decode(&encode("a", &short), 21).is_err());
        assert!(Index::decode(&encode("d", &short), 14).is_err());
        assert!(Index::decode(&encode("a", &[]), 0).is_err());
        let huge = [handle("c", 0, u64::MAX)];
        assert!(Index::decode(&encode("a", &huge), 21).is_err());
    }
}
