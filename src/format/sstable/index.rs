//! The index block: the table's smallest key, then each data block's last
//! key, offset and length.

use bytes::Bytes;

use super::block::Cursor;
use super::{CRC_LEN, Malformed, compare_keys};
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
    /// How a lookup finds its block without a key compare per step.
    probes: Probes,
}

/// The handles' last keys as numbers a binary search can compare in one
/// instruction, kept side by side (8 bytes per block) rather than behind a
/// pointer per key: every key of the table starts with `shared` (the
/// smallest and the largest key's common prefix), and `words[i]` is the 8
/// bytes of block `i`'s last key after it, big-endian, zero-padded. The map
/// keeps order (`a <= b` gives `word(a) <= word(b)`), so a search on the words
/// leaves only blocks with the key's own word to compare in full: usually
/// none or one.
///
/// The search itself goes in two steps: over `tops`, the last word of each
/// run of [`RUN`] words (one cache line of them), then inside the one run
/// that holds the answer. A binary search straight over the words touched
/// a dozen lines, the last few of them misses one after the other; the
/// tops are an eighth as many (a table of 4,000 blocks has 4 KiB of them)
/// and stay in the CPU's cache, so a search misses about one line.
#[derive(Debug, Clone, Default)]
struct Probes {
    shared: Bytes,
    words: Vec<u64>,
    tops: Vec<u64>,
}

/// Words per run of [`Probes::tops`]: one 64-byte line.
const RUN: usize = 8;

impl Probes {
    fn new(smallest_key: &Bytes, handles: &[BlockHandle]) -> Probes {
        let largest = handles
            .last()
            .map_or(&smallest_key[..], |h| &h.last_key[..]);
        let shared = smallest_key
            .iter()
            .zip(largest)
            .take_while(|(a, b)| a == b)
            .count();
        let words: Vec<u64> = handles
            .iter()
            .map(|h| word_after(&h.last_key, shared))
            .collect();
        let tops = words
            .chunks(RUN)
            .filter_map(|run| run.last().copied())
            .collect();
        Probes {
            shared: smallest_key.slice(..shared),
            words,
            tops,
        }
    }

    /// How many words are below `word` (`words.partition_point(|&w| w <
    /// word)`), found through the tops.
    fn count_below(&self, word: u64) -> usize {
        let run = self.tops.partition_point(|&top| top < word);
        // Past the last run: every word is below (the last run may be short).
        let start = (run * RUN).min(self.words.len());
        let words = self.words.get(start..).unwrap_or_default();
        let in_run = words.get(..RUN).unwrap_or(words);
        start + in_run.partition_point(|&w| w < word)
    }
}

/// The 8 bytes of `key` after its first `skip`, big-endian, zero-padded.
fn word_after(key: &[u8], skip: usize) -> u64 {
    let mut word = [0u8; 8];
    let rest = key.get(skip..).unwrap_or_default();
    let len = rest.len().min(8);
    if let (Some(to), Some(from)) = (word.get_mut(..len), rest.get(..len)) {
        to.copy_from_slice(from);
    }
    u64::from_be_bytes(word)
}

impl Index {
    /// Decodes an index block whose crc was checked. The blocks must tile
    /// `0..data_end` in order, with strictly increasing last keys, the first
    /// not below the smallest key.
    pub(super) fn decode(block: &Bytes, data_end: u64) -> Result<Index, Malformed> {
        let mut cursor = Cursor::new(block);
        let len = cursor.varint()?;
        let smallest_key = cursor.bytes(block, len)?;
        let mut handles: Vec<BlockHandle> = Vec::new();
        while !cursor.at_end() {
            let at = cursor.pos();
            let handle = decode_handle(block, &mut cursor)?;
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
        let probes = Probes::new(&smallest_key, &handles);
        Ok(Index {
            smallest_key,
            handles,
            probes,
        })
    }

    /// The first block whose last key is `>= key` (the count of blocks if
    /// none): the only block that can hold `key`.
    pub(super) fn block_for(&self, key: &[u8]) -> usize {
        self.partition(key, |last| compare_keys(last, key).is_lt())
    }

    /// The first block whose last key is `> key`.
    pub(super) fn block_after(&self, key: &[u8]) -> usize {
        self.partition(key, |last| compare_keys(last, key).is_le())
    }

    /// `handles.partition_point(|h| below(&h.last_key))` for a `below` that
    /// holds for the keys under `key` (and maybe `key` itself): the words
    /// narrow it to the blocks whose word is `key`'s, compared in full.
    fn partition(&self, key: &[u8], below: impl Fn(&[u8]) -> bool) -> usize {
        let shared = &self.probes.shared;
        if !key.starts_with(shared) {
            // Every last key starts with `shared`: all are above `key` or
            // all below it.
            return if key < &shared[..] {
                0
            } else {
                self.handles.len()
            };
        }
        let word = word_after(key, shared.len());
        let lo = self.probes.count_below(word);
        let from_lo = self.probes.words.get(lo..).unwrap_or_default();
        let hi = lo + from_lo.iter().take_while(|&&w| w == word).count();
        let tied = self.handles.get(lo..hi).unwrap_or_default();
        lo + tied.partition_point(|h| below(&h.last_key))
    }

    /// Bytes held in memory, roughly.
    pub(super) fn memory_bytes(&self) -> usize {
        let keys: usize = self.handles.iter().map(|h| h.last_key.len()).sum();
        keys + self.handles.len() * (std::mem::size_of::<BlockHandle>() + 9)
            + self.smallest_key.len()
    }
}

fn decode_handle(block: &Bytes, cursor: &mut Cursor<'_>) -> Result<BlockHandle, Malformed> {
    let key_len = cursor.varint()?;
    let last_key = cursor.bytes(block, key_len)?;
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

    /// `block_for` and `block_after` agree with a search comparing whole
    /// keys, for keys inside, between, around and outside the blocks', with
    /// long shared prefixes, keys that are prefixes of others and zero bytes
    /// (which the padding of the words must not confuse).
    #[test]
    fn the_word_search_agrees_with_comparing_whole_keys() {
        let keys: Vec<&'static [u8]> = vec![
            b"user:0000000001",
            b"user:0000000001\0",
            b"user:0000000001\0\0a",
            b"user:00000000010000",
            b"user:0000000002",
            b"user:00000000020000000000x",
            b"user:00000000020000000000y",
            b"user:0000000003",
        ];
        let mut handles = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            handles.push(BlockHandle {
                last_key: Bytes::from_static(key),
                offset: i as u64 * 14,
                len: 10,
            });
        }
        let mut block = Vec::new();
        encode_smallest_key(b"user:0", &mut block);
        for h in &handles {
            encode_handle(h, &mut block);
        }
        let index = Index::decode(&Bytes::from(block), keys.len() as u64 * 14).unwrap();
        assert_eq!(&index.probes.shared[..], b"user:0");
        let mut probes: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"user".to_vec(),
            b"user:".to_vec(),
            b"z".to_vec(),
        ];
        for key in &keys {
            for tail in [&b""[..], b"\0", b"\0\0", b"0", b"00000000000", b"\xff"] {
                probes.push([key, tail].concat());
            }
            probes.push(key[..key.len() - 1].to_vec());
        }
        for probe in &probes {
            let at = handles.partition_point(|h| h.last_key.as_ref() < &probe[..]);
            let after = handles.partition_point(|h| h.last_key.as_ref() <= &probe[..]);
            assert_eq!(index.block_for(probe), at, "block_for {probe:?}");
            assert_eq!(index.block_after(probe), after, "block_after {probe:?}");
        }
    }

    /// The two-step search counts what a search over all the words
    /// counts, for runs that end exactly, a last run cut short, ties and
    /// words outside the table's.
    #[test]
    fn the_search_through_the_tops_counts_the_words_below() {
        for len in [1usize, 2, 7, 8, 9, 16, 17, 100, 1000] {
            let words: Vec<u64> = (0..len as u64).map(|i| 10 + 3 * (i / 2)).collect();
            let tops = words
                .chunks(RUN)
                .filter_map(|r| r.last().copied())
                .collect();
            let probes = Probes {
                shared: Bytes::new(),
                words: words.clone(),
                tops,
            };
            for word in 0..(20 + 3 * len as u64) {
                assert_eq!(
                    probes.count_below(word),
                    words.partition_point(|&w| w < word),
                    "{len} words, {word}"
                );
            }
        }
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
