//! SSTable: an immutable sorted segment file.
//!
//! [`SstableWriter`] builds a table from entries added in strictly increasing
//! key order, one entry per key; [`SstableReader`] opens it, answers point
//! lookups ([`SstableReader::get`]) and hands out range cursors
//! ([`SstableReader::iter`], forward or reverse).
//!
//! # File layout
//!
//! All fixed-width integers are little-endian. "varint" is unsigned LEB128
//! (see [`crate::format::coding`]). "crc" is the masked CRC32C of
//! [`crate::format::coding::masked_crc`], stored as a fixed-width u32.
//!
//! ```text
//! [data block 0][crc]
//! [data block 1][crc]
//! ...
//! [data block N-1][crc]
//! [filter block][crc]
//! [index block][crc]
//! [footer: 80 bytes (64 in version 1)]
//! ```
//!
//! Sections follow each other with no gaps: the first data block starts at
//! offset 0, the filter starts where the last data block's crc ends, the index
//! right after the filter's crc, and the footer right after the index's crc at
//! `file_size - 64`. Every crc covers exactly the bytes of the block it
//! follows (not the crc itself).
//!
//! ## Data block
//!
//! A run of entries, at least one, sorted by key. The writer closes a block
//! before an entry that would make it exceed `TableOptions::block_bytes`, so a
//! block is at most that size unless it holds a single larger entry (values
//! up to 32 MiB make one big block). Each entry is:
//!
//! ```text
//! key_len:      varint
//! kind:         u8        0 = tombstone (delete), 1 = put,
//!                         2 = put with an expiry
//! seq:          varint    sequence number of the write
//! expire_at_ms: varint    present only when kind = 2: Unix milliseconds at
//!                         and after which the entry reads as absent (never 0)
//! value_len:    varint    present only when kind = 1 or 2
//! key:          key_len bytes
//! value:        value_len bytes, present only when kind = 1 or 2
//! ```
//!
//! Kind 2 came later: a put without an expiry is still written as kind 1,
//! so tables written before it (which never hold kind 2) read as before,
//! and a table without expiring entries is byte for byte what older
//! versions wrote. An older reader refuses a kind-2 entry as malformed.
//!
//! Keys are strictly increasing within a block and across blocks.
//!
//! In a version-3 table a data block's entries are followed by its restart
//! array (LevelDB's name; the keys are stored whole, so "restart" only says
//! where a lookup may start decoding):
//!
//! ```text
//! entries:        as above
//! restart:        u32 per restart point, the offset in the block of every
//!                 8th entry (the 1st, the 9th, ...), strictly increasing
//! restart_count:  u32, at least 1
//! ```
//!
//! A point lookup binary-searches the restart points by the key of the
//! entry each names, then decodes at most 8 entries of one run, instead of
//! decoding the whole block. Versions 1 and 2 have no restart array.
//!
//! In a version-2 or 3 table each data block's bytes (what its crc and its index
//! length cover) are the entries stored one of three ways, named by a last
//! byte (see `compression.rs`):
//!
//! ```text
//! type 0: [entries][0]                            raw
//! type 1: [raw_len: u32][LZ4 block][1]            TableOptions::compression = Lz4
//! type 2: [raw_len: u32][zstd frame][2]           TableOptions::compression = Zstd(level)
//! ```
//!
//! A block is compressed only when that saves at least an eighth of it;
//! otherwise it is stored raw, so one table (and one database) mixes types
//! freely. `raw_len` is the entries' length; a reader refuses one above
//! 33 MiB before allocating and a block that does not decompress to exactly
//! it (reported as corruption). Type 2 was added within version 2: a reader
//! that predates it reports such a block as corrupt, never misreads it.
//! Block size limits apply to the entries (and restart array) before
//! compression. A version-1
//! table's blocks are the entries alone.
//!
//! ## Filter block
//!
//! A bloom filter over every key in the table, in one of two layouts told
//! apart by its last byte. Both are probed with `h = xxh3_64(key)`.
//!
//! **Cache-local** (written now; a reader that predates it reports the
//! block as corrupt, never misreads it):
//!
//! ```text
//! lines:  64 * n bytes, n >= 1; bit b of a line is bit b % 8, least
//!         significant first, of the line's byte b / 8
//! mark:   u8, 0x86
//! ```
//!
//! A key sets (and a lookup tests) six bits, all in line
//! `((h >> 32) * n) >> 32`: with `x = (h * 0x9E3779B97F4A7C15) ^ (h >> 29)`
//! (the product wrapping modulo 2^64), bit `(x >> (9 * j)) & 511` for `j` in
//! `0..6`. One cache line per lookup, where the classic layout's probes are
//! spread over the whole filter. The writer uses `n = max(1, ceil(keys *
//! bits_per_key / 512))`: about 1 % false positives at 10 bits per key.
//! (The memtables' key filter uses the same positions, in memory.)
//!
//! **Classic** (files written before it):
//!
//! ```text
//! bits:   m bytes (bit b is bit b % 8, least significant first, of byte b / 8)
//! probes: u8, the number k of bits set per key (1..=30; 0 only when m = 0)
//! ```
//!
//! With `nbits = 8 * m`, a key sets (and a lookup tests) bits
//! `(h + j * d) mod nbits` for `j in 0..k`, where
//! `d = h.rotate_right(32) | 1` and the sum and product wrap modulo 2^64.
//! Those writers used `nbits = max(64, keys * bits_per_key)` rounded up to a
//! whole byte and `k = round(bits_per_key * ln 2)` clamped to 1..=30.
//!
//! When `bits_per_key` is 0 the block is the single byte `0` (no bits, no
//! probes) and lets every key through. Any other last byte is corruption.
//!
//! ## Index block
//!
//! ```text
//! smallest_key_len: varint
//! smallest_key:     the table's first key
//! then, for each data block in file order, until the block's end:
//!   last_key_len:   varint
//!   last_key:       the block's last key
//!   offset:         varint, where the block starts in the file
//!   length:         varint, the block's length without its crc
//! ```
//!
//! ## Footer (80 bytes, at `file_size - 80`; version 1: 64 bytes)
//!
//! ```text
//!  0  index_offset   u64
//!  8  index_length   u64   without the crc
//! 16  filter_offset  u64
//! 24  filter_length  u64   without the crc
//! 32  entry_count    u64   entries (puts and tombstones) in the table
//! 40  max_seq        u64   the largest seq of any entry
//! 48  file_number    u64   the number in the file's name when written
//! 56  database_id    u64   the id in the manifest of the database written for
//! 64  version        u32   2, or 3 when data blocks have restart arrays
//! 68  footer_crc     u32   masked CRC32C of bytes 0..68
//! 72  magic          u64   bytes "NaiveSST"
//! ```
//!
//! Version 1 (written before file_number and database_id existed) has no
//! bytes 48..64: version at 48, crc of 0..52 at 52, magic at 56. Both end
//! with version, crc and magic, so the reader reads the last 16 bytes, takes
//! the footer length from the version, and then reads the footer. Version 1
//! tables still open; open checks the identity of version 2 and 3 tables
//! against the manifest (a renamed, swapped or foreign file is refused).
//! This code writes version 3 and reads all three.
//!
//! # Checks and what a bad one means
//!
//! A table is written once and fdatasynced before it is named in the manifest,
//! so there is no torn tail to tolerate: any mismatch is corruption and is
//! reported as [`crate::Error::Corruption`] with the path and the file offset
//! of the bad section, never as wrong data and never as a panic.
//!
//! - `open` reads the footer, then the filter and the index, with positioned
//!   reads. It fails on a file shorter than a footer, a wrong magic number,
//!   footer crc or version, sections that are out of bounds or not laid out
//!   back to back as above, a bad filter or index crc, a malformed varint or
//!   length, index keys that are not strictly increasing, or data blocks that
//!   do not tile the data region exactly.
//! - Every data block read (by `get` or a cursor) checks the block's crc and
//!   decodes defensively: a bad crc, a malformed entry, keys out of order or a
//!   last key that disagrees with the index fail that call. A cursor that
//!   failed returns the same error on every later call. A cursor also checks
//!   that every restart point is where an entry starts.
//! - A point lookup in a version-3 block checks the block's crc, its restart
//!   array (in bounds, strictly increasing, the first at 0) and that its
//!   first key follows the previous block's last key; then only what it
//!   reads: the entries it decodes must be well formed and in order, and a
//!   run must end exactly at the next restart point. Damage elsewhere in the
//!   block is found by a scan or by `check`, not by every lookup: with the
//!   crc intact it can only come from a writer bug, and decoding it all on
//!   every read is what the restart points are there to avoid.
//!
//! The reader keeps the index (one key and two numbers per block) and the
//! filter's bits in memory; data blocks are read on demand. Point lookups
//! may keep checked blocks in a [`BlockCache`] shared by a database's tables
//! (see `cache.rs`); scans and compaction read around it.

mod block;
mod bloom;
mod cache;
mod compression;
mod footer;
mod index;
mod iter;
mod reader;
mod writer;

#[cfg(test)]
mod corruption_tests;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;

pub use block::Block;
pub use bloom::{CACHE_LOCAL_PROBES, WORDS_PER_LINE, cache_local_probes, key_hash};
pub use cache::{BlockCache, BlockCacheStats, CachedBlock};
pub use footer::TableIdentity;
pub use iter::{BlockReads, SstableIter};
pub use reader::{Lookup, SstableReader, is_would_block};
pub use writer::{SstableWriter, TableSummary};

/// How tables are written.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// Target size of a data block; a block holds at least one entry.
    pub block_bytes: usize,
    /// Bloom filter bits per key.
    pub bloom_bits_per_key: usize,
    /// How data blocks are compressed.
    pub compression: Compression,
    /// Bytes the writer collects before writing them to the file
    /// (`Options::table_write_buffer_bytes`); 0 writes each at once.
    pub write_buffer_bytes: usize,
}

/// How SSTable data blocks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Raw.
    None,
    /// LZ4 block compression (`lz4_flex`, pure Rust), for blocks it shrinks
    /// by at least an eighth; the engine's default.
    #[default]
    Lz4,
    /// zstd at this level (libzstd through the `zstd` crate; 1 is fastest,
    /// 3 is zstd's default, up to 22; out-of-range levels are clamped), for
    /// blocks it shrinks by at least an eighth.
    Zstd(i32),
}

impl From<&crate::Options> for TableOptions {
    /// The table settings of the engine's options.
    fn from(options: &crate::Options) -> Self {
        TableOptions {
            block_bytes: options.block_bytes,
            bloom_bits_per_key: options.bloom_bits_per_key,
            compression: options.compression,
            write_buffer_bytes: options.table_write_buffer_bytes,
        }
    }
}

/// Byte-wise key order, as `<[u8]>::cmp`, eight bytes at a time: short keys
/// are compared without a call to `memcmp`, which a skip-list search makes
/// dozens of per insert and a table lookup a dozen of (index and block).
#[inline]
pub fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    let mut a_words = a.chunks_exact(8);
    let mut b_words = b.chunks_exact(8);
    for (x, y) in a_words.by_ref().zip(b_words.by_ref()) {
        let x = u64::from_be_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_be_bytes(y.try_into().unwrap_or_default());
        if x != y {
            return x.cmp(&y);
        }
    }
    let done = a.len().min(b.len()) / 8 * 8;
    a.get(done..).cmp(&b.get(done..))
}

/// Bytes of the crc that follows every block.
const CRC_LEN: u64 = 4;

/// Where a decoder found a block malformed: an offset inside the block and
/// what was wrong. The reader turns it into a `Corruption` error naming the
/// file offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Malformed {
    at: usize,
    detail: &'static str,
}

impl Malformed {
    fn new(at: usize, detail: &'static str) -> Self {
        Malformed { at, detail }
    }
}
