//! Reads an SSTable: `open` loads and checks footer, filter and index; data
//! blocks are read, checked and decoded on demand.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::block::{Block, BlockLayout, ForwardEntries, decode_block, get_in_place};
use super::bloom::{BloomFilter, key_hash};
use super::cache::{BlockCache, CachedBlock};
use super::compression::{decode_block as decode_stored_block, raw_payload};
use super::footer::{Footer, TableIdentity};
use super::index::{BlockHandle, Index};
use super::iter::{BlockReads, SstableIter};
use super::{CRC_LEN, Malformed};
use crate::format::coding::{get_u32, masked_crc};
use crate::format::{Entry, KeyRange};
use crate::fs::ReadableFile;
use crate::{Error, Result};

/// The largest block read into a thread's [`READ_BUFFER`]; a larger one (a
/// block holding one huge value) gets a buffer of its own, so that no thread
/// keeps megabytes for good.
const MAX_KEPT_READ_BUFFER: usize = 256 << 10;

thread_local! {
    /// Where a thread reads the data blocks it does not cache: grown to the
    /// largest block read, never shrunk, so a lookup neither allocates nor
    /// zeroes a buffer per read. (A `RefCell`, not a lock: one thread's.)
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Hands out the ids of tables opened without a number
/// ([`SstableReader::open`]): above every file number, so that they never
/// name a numbered table.
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1 << 63);

/// The outcome of a point lookup in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The table holds this version of the key (maybe a tombstone).
    Found(Entry),
    /// The bloom filter let the key through but no block holds it.
    Absent,
    /// The bloom filter ruled the key out; no block was read.
    FilteredOut,
}

/// An open table: footer, index and filter in memory, blocks read on demand.
#[derive(Debug)]
pub struct SstableReader {
    /// Names this table in the block cache: its segment's file number
    /// ([`SstableReader::open_numbered`]), which no other table of its
    /// database (the cache's) ever has, or an id of its own.
    id: u64,
    file: TableFile,
    index: Index,
    filter: BloomFilter,
    footer: Footer,
}

impl SstableReader {
    /// Opens a table, reading and checking its footer, index and filter.
    /// `Corruption` (naming the path and offset) if any of them is bad or
    /// out of bounds; `Io` if a read fails.
    pub fn open(file: Arc<dyn ReadableFile>, path: PathBuf) -> Result<SstableReader> {
        let id = NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed);
        Self::open_numbered(file, path, id)
    }

    /// Opens a table as [`SstableReader::open`] does, naming it `number` in
    /// the block cache: the segment's file number, under which its writer
    /// may have cached its blocks ([`super::SstableWriter::caching_blocks`]).
    /// Every table reading one cache needs a number of its own.
    pub fn open_numbered(
        file: Arc<dyn ReadableFile>,
        path: PathBuf,
        number: u64,
    ) -> Result<SstableReader> {
        let size = file.len();
        let file = TableFile { file, path, size };
        let footer = file.read_footer()?;
        let filter = file.read_waiting(footer.filter_offset, footer.filter_len)?;
        let filter =
            BloomFilter::decode(&filter).map_err(|m| file.corrupt(footer.filter_offset, m))?;
        let index = file.read_waiting(footer.index_offset, footer.index_len)?;
        let index = Index::decode(&index, footer.filter_offset)
            .map_err(|m| file.corrupt(footer.index_offset, m))?;
        Ok(SstableReader {
            id: number,
            file,
            index,
            filter,
            footer,
        })
    }

    /// False if the bloom filter rules out the key hashed `hash`
    /// ([`key_hash`]); reads nothing from disk.
    pub fn may_contain(&self, hash: u64) -> bool {
        self.filter.may_contain(hash)
    }

    /// Prefetching a get of `key` in this table, stage by stage (see
    /// `engine/prefetch.rs`); each stage reads only what the one before
    /// brought into the CPU's cache, and prefetches what the next reads.
    /// `hash` is the key's [`key_hash`]. Stage 0: the filter's bytes.
    pub fn prefetch_filter(&self, hash: u64) {
        self.filter.prefetch(hash);
    }

    /// Stage 1, once the filter has let the key through
    /// ([`SstableReader::may_contain`]): the block that would hold `key`,
    /// its cache set prefetched (`None` if no block number fits).
    pub fn prefetch_block_set(&self, key: &[u8], cache: &BlockCache) -> Option<u32> {
        let block = u32::try_from(self.block_for(key)).ok()?;
        cache.prefetch_set(self.id, block);
        Some(block)
    }

    /// Stage 2: the cached block's header, if the cache holds it.
    pub fn prefetch_cached_block(&self, block: u32, cache: &BlockCache) {
        cache.prefetch_block(self.id, block);
    }

    /// Stage 3 and on: the block's point index (`level` 0), its slot for
    /// `key` (1), the entry the slot names (2); the block is taken from the
    /// cache at level 0 and kept by the caller for the next levels.
    pub fn prefetch_in_block(
        &self,
        key: &[u8],
        block: u32,
        cache: &BlockCache,
    ) -> Option<Arc<CachedBlock>> {
        let cached = cache.peek(self.id, block)?;
        cached.block.prefetch_point(key, 0);
        Some(cached)
    }

    /// The last stage: `key` looked up in `cached`, block `block` of this
    /// table as the stages found it (the block [`SstableReader::block_for`]
    /// gives `key`, taken from the cache). `Corruption` if it is bad.
    pub fn get_in_cached(&self, key: &[u8], block: u32, cached: &CachedBlock) -> Result<Lookup> {
        let block = block as usize;
        if block >= self.block_count() {
            return Ok(Lookup::Absent);
        }
        self.lookup_in(block, &cached.block, key)
    }

    /// Looks `key` up: the filter first, then at most one data block.
    /// `Corruption` if that block is bad.
    pub fn get(&self, key: &[u8]) -> Result<Lookup> {
        self.get_with(key, key_hash(key), Wait::Yes, None)?
            .ok_or_else(would_block)
    }

    /// Like `get`, taking the block from `cache` if it is there and leaving
    /// it there if it was read. `hash` is `key`'s [`key_hash`], computed
    /// once by a caller that checks several tables.
    pub fn get_cached(&self, key: &[u8], hash: u64, cache: &BlockCache) -> Result<Lookup> {
        self.get_with(key, hash, Wait::Yes, Some(cache))?
            .ok_or_else(would_block)
    }

    /// Like `get_cached`, but `Ok(None)` instead of waiting for the disk:
    /// the block is read only if `cache` or the page cache holds it.
    pub fn get_if_cached(
        &self,
        key: &[u8],
        hash: u64,
        cache: &BlockCache,
    ) -> Result<Option<Lookup>> {
        self.get_with(key, hash, Wait::No, Some(cache))
    }

    fn get_with(
        &self,
        key: &[u8],
        hash: u64,
        wait: Wait,
        cache: Option<&BlockCache>,
    ) -> Result<Option<Lookup>> {
        if !self.filter.may_contain(hash) {
            return Ok(Some(Lookup::FilteredOut));
        }
        let block = self.block_for(key);
        if block >= self.block_count() {
            return Ok(Some(Lookup::Absent));
        }
        let cache = cache.zip(u32::try_from(block).ok());
        if let Some((cache, index)) = cache {
            if let Some(cached) = cache.get(self.id, index) {
                return self.lookup_in(block, &cached.block, key).map(Some);
            }
            if cache.admits(self.id, index) {
                let Some(data) = self.read_block_data(block, wait)? else {
                    return Ok(None);
                };
                let cached = cache.insert(self.id, index, self.check_block(block, data)?);
                return self.lookup_in(block, &cached.block, key).map(Some);
            }
        }
        let found = self.lookup_uncached(block, key, wait)?;
        if let (Some(_), Some((cache, index))) = (&found, cache) {
            cache.missed_once(self.id, index);
        }
        Ok(found)
    }

    /// Looks `key` up in data block number `block` without keeping the
    /// block: a version-3 block stored raw is read into this thread's
    /// [`READ_BUFFER`] and searched in place (no allocation, no zeroing, the
    /// entry found copied out); any other is read and decoded whole.
    fn lookup_uncached(&self, block: usize, key: &[u8], wait: Wait) -> Result<Option<Lookup>> {
        let (handle, after) = self.handle_and_previous(block)?;
        if self.layout() != BlockLayout::Restarts {
            let Some(data) = self.read_block_data(block, wait)? else {
                return Ok(None);
            };
            return self
                .lookup_in(block, &self.check_block(block, data)?, key)
                .map(Some);
        }
        let total = self.file.stored_len(handle.offset, handle.len)?;
        let in_place = |buf: &mut [u8]| -> Result<Option<Lookup>> {
            let Some(stored) = self.file.read_checked_into(handle.offset, buf, wait)? else {
                return Ok(None);
            };
            let raw = match self.footer.identity {
                None => Some(stored),
                Some(_) => raw_payload(stored),
            };
            let found = match raw {
                Some(raw) => get_in_place(raw, after, key),
                None => {
                    let data = decode_stored_block(Bytes::copy_from_slice(stored))
                        .map_err(|m| self.file.corrupt(handle.offset, m))?;
                    return self
                        .lookup_in(block, &self.check_block(block, data)?, key)
                        .map(Some);
                }
            };
            found
                .map(|entry| Some(entry.map_or(Lookup::Absent, Lookup::Found)))
                .map_err(|m| self.file.corrupt(handle.offset, m))
        };
        READ_BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buf) if total <= MAX_KEPT_READ_BUFFER => {
                if buf.len() < total {
                    buf.resize(total, 0);
                }
                in_place(buf.get_mut(..total).unwrap_or_default())
            }
            _ => in_place(&mut vec![0u8; total]),
        })
    }

    /// Looks `key` up in `decoded`, data block number `block`.
    fn lookup_in(&self, block: usize, decoded: &Block, key: &[u8]) -> Result<Lookup> {
        match decoded.get(key) {
            Ok(entry) => Ok(entry.map_or(Lookup::Absent, Lookup::Found)),
            Err(malformed) => Err(self.corrupt_block(block, malformed)),
        }
    }

    /// How this table's data blocks are laid out.
    fn layout(&self) -> BlockLayout {
        if self.footer.version >= 3 {
            BlockLayout::Restarts
        } else {
            BlockLayout::Entries
        }
    }

    /// The entries in `range`, ascending, or descending if `reverse`. The
    /// cursor reads one block at a time; errors come from `next_entry`.
    pub fn iter(self: &Arc<Self>, range: KeyRange, reverse: bool) -> SstableIter {
        SstableIter::new(Arc::clone(self), range, reverse, BlockReads::uncached())
    }

    /// As [`SstableReader::iter`], reading blocks as `reads` says.
    pub fn iter_with(
        self: &Arc<Self>,
        range: KeyRange,
        reverse: bool,
        reads: BlockReads,
    ) -> SstableIter {
        SstableIter::new(Arc::clone(self), range, reverse, reads)
    }

    /// Every entry of the blocks that read and check intact, block by block,
    /// in order, with the errors of the blocks that do not (for repair: a
    /// table with one bad block still holds its other blocks' writes). Each
    /// intact block's entries are checked to lie between its neighbours'
    /// last keys, as any read checks them.
    pub fn intact_entries(&self) -> (Vec<Entry>, Vec<Error>) {
        let reads = BlockReads::uncached();
        let mut entries = Vec::new();
        let mut damaged = Vec::new();
        for block in 0..self.block_count() {
            match self.read_block_for(block, &reads) {
                Ok(Some(read)) => entries.extend(read),
                Ok(None) => damaged.push(would_block()),
                Err(error) => damaged.push(error),
            }
        }
        (entries, damaged)
    }

    /// The table's path, for errors.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Entries in the table.
    pub fn entry_count(&self) -> u64 {
        self.footer.entry_count
    }

    /// The largest sequence number of any entry.
    pub fn max_seq(&self) -> u64 {
        self.footer.max_seq
    }

    /// The file and database the table was written as (`None` for a table
    /// written before tables recorded it).
    pub fn identity(&self) -> Option<TableIdentity> {
        self.footer.identity
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.file.size
    }

    /// The table's first key.
    pub fn smallest_key(&self) -> &Bytes {
        &self.index.smallest_key
    }

    /// The table's last key.
    pub fn largest_key(&self) -> &Bytes {
        self.index
            .handles
            .last()
            .map_or(&self.index.smallest_key, |h| &h.last_key)
    }

    /// Bytes this reader keeps in memory (index and filter), roughly.
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes() + self.filter.memory_bytes()
    }

    /// The number naming the table in the block cache
    /// ([`SstableReader::open_numbered`]).
    pub fn cache_id(&self) -> u64 {
        self.id
    }

    /// How many data blocks the table has.
    pub fn block_count(&self) -> usize {
        self.index.handles.len()
    }

    pub(super) fn block_last_key(&self, block: usize) -> Option<&Bytes> {
        self.index.handles.get(block).map(|h| &h.last_key)
    }

    /// The first block whose last key is `>= key` (`block_count()` if none):
    /// the only block that can hold `key`.
    pub(super) fn block_for(&self, key: &[u8]) -> usize {
        self.index.block_for(key)
    }

    /// The first block whose last key is `> key`.
    pub(super) fn block_after(&self, key: &[u8]) -> usize {
        self.index.block_after(key)
    }

    /// Data block `block`'s entries for a cursor, read as `reads` says (see
    /// [`SstableReader::fetch_block`]); `Ok(None)` if the cursor may not
    /// wait and would have to.
    pub(super) fn read_block_for(
        &self,
        block: usize,
        reads: &BlockReads,
    ) -> Result<Option<Vec<Entry>>> {
        let (handle, after) = self.handle_and_previous(block)?;
        let entries = match self.fetch_block(block, reads)? {
            None => return Ok(None),
            Some(Fetched::Cached(cached)) => {
                cached.block.entries(self.layout(), after, &handle.last_key)
            }
            Some(Fetched::Read(data)) => {
                decode_block(&data, self.layout(), after, &handle.last_key)
            }
        };
        entries
            .map(Some)
            .map_err(|m| self.file.corrupt(handle.offset, m))
    }

    /// A forward cursor over data block `block` from the restart run that
    /// can hold `start`, its bytes read as `reads` says; `Ok(None)` if the
    /// cursor may not wait and would have to. Version-3 tables only (see
    /// [`SstableReader::has_restarts`]).
    pub(super) fn forward_entries(
        &self,
        block: usize,
        reads: &BlockReads,
        start: Option<&[u8]>,
    ) -> Result<Option<ForwardEntries>> {
        let data = match self.fetch_block(block, reads)? {
            None => return Ok(None),
            Some(Fetched::Cached(cached)) => cached.block.data().clone(),
            Some(Fetched::Read(data)) => data,
        };
        let (handle, after) = self.handle_and_previous(block)?;
        ForwardEntries::seek(data, after, start)
            .map(Some)
            .map_err(|m| self.file.corrupt(handle.offset, m))
    }

    /// Data block `block` for a cursor: from the block cache of `reads` if
    /// it holds it, read and admitted to it if it was missed recently (as a
    /// point lookup's block is), read alone otherwise; from the disk only if
    /// `reads` may wait (`Ok(None)` if it may not and would have to).
    fn fetch_block(&self, block: usize, reads: &BlockReads) -> Result<Option<Fetched>> {
        let wait = match reads.wait_for_disk {
            true => Wait::Yes,
            false => Wait::No,
        };
        let cache = reads.cache.as_deref().zip(u32::try_from(block).ok());
        let Some((cache, index)) = cache else {
            return Ok(self.read_block_data(block, wait)?.map(Fetched::Read));
        };
        if let Some(cached) = cache.get(self.id, index) {
            return Ok(Some(Fetched::Cached(cached)));
        }
        let Some(data) = self.read_block_data(block, wait)? else {
            return Ok(None);
        };
        if cache.admits(self.id, index) {
            let cached = cache.insert(self.id, index, self.check_block(block, data)?);
            return Ok(Some(Fetched::Cached(cached)));
        }
        cache.missed_once(self.id, index);
        Ok(Some(Fetched::Read(data)))
    }

    /// Whether the table's blocks carry restart points (version 3), which
    /// [`SstableReader::forward_entries`] needs.
    pub(super) fn has_restarts(&self) -> bool {
        self.layout() == BlockLayout::Restarts
    }

    /// Data block `block`'s content is malformed as `malformed` says.
    pub(super) fn corrupt_block(&self, block: usize, malformed: Malformed) -> Error {
        let offset = self.index.handles.get(block).map_or(0, |h| h.offset);
        self.file.corrupt(offset, malformed)
    }

    /// The checked bytes of data block number `block`, without its crc.
    /// (Decompressed, for a version-2 table.)
    fn read_block_data(&self, block: usize, wait: Wait) -> Result<Option<Bytes>> {
        let (handle, _) = self.handle_and_previous(block)?;
        let Some(stored) = self.file.read_checked(handle.offset, handle.len, wait)? else {
            return Ok(None);
        };
        if self.footer.identity.is_none() {
            return Ok(Some(stored));
        }
        decode_stored_block(stored)
            .map(Some)
            .map_err(|m| self.file.corrupt(handle.offset, m))
    }

    /// Checks and indexes data block number `block`, read as `data`.
    fn check_block(&self, block: usize, data: Bytes) -> Result<Block> {
        let (handle, after) = self.handle_and_previous(block)?;
        Block::decode(data, self.layout(), after, &handle.last_key)
            .map_err(|m| self.file.corrupt(handle.offset, m))
    }

    /// Block `block`'s handle and the last key of the block before it.
    fn handle_and_previous(&self, block: usize) -> Result<(&BlockHandle, Option<&[u8]>)> {
        let handle = self.index.handles.get(block).ok_or_else(|| {
            Error::corruption(&self.file.path, 0, format!("no data block {block}"))
        })?;
        let after = block.checked_sub(1).and_then(|b| self.block_last_key(b));
        Ok((handle, after.map(|k| k.as_ref())))
    }
}

/// A read that may not wait found its block on neither the cache nor the
/// page cache (see [`is_would_block`]). A waiting read never says this; if
/// one does, it is an I/O error.
pub(super) fn would_block() -> Error {
    Error::io(
        "reading a table",
        io::Error::from(io::ErrorKind::WouldBlock),
    )
}

/// True for the error of a cursor that may not wait for the disk and needed
/// to (see [`BlockReads`]): the read should be made again where it may wait.
pub fn is_would_block(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == io::ErrorKind::WouldBlock)
}

/// A data block a cursor reads: one in the block cache, or bytes read for
/// it alone.
enum Fetched {
    Cached(Arc<CachedBlock>),
    Read(Bytes),
}

/// Whether a read may wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Yes,
    /// Only what the page cache holds; otherwise "would block".
    No,
}

/// The table's file, its name for errors and its size when opened.
#[derive(Debug)]
struct TableFile {
    file: Arc<dyn ReadableFile>,
    path: PathBuf,
    size: u64,
}

impl TableFile {
    /// Reads the footer and checks it and the layout it describes.
    fn read_footer(&self) -> Result<Footer> {
        let too_short = || {
            Error::corruption(
                &self.path,
                0,
                format!("{} bytes is too short for a table", self.size),
            )
        };
        let tail_at = self.size.checked_sub(16).ok_or_else(too_short)?;
        let mut tail = [0u8; 16];
        self.read_at(&mut tail, tail_at)?;
        let len = Footer::len_from_tail(&tail).map_err(|m| self.corrupt(tail_at, m))?;
        let at = self.size.checked_sub(len).ok_or_else(too_short)?;
        let mut buf = vec![0u8; len as usize];
        self.read_at(&mut buf, at)?;
        let footer = Footer::decode(&buf).map_err(|m| self.corrupt(at, m))?;
        check_layout(&footer, at).map_err(|detail| Error::corruption(&self.path, at, detail))?;
        Ok(footer)
    }

    /// Reads `len` bytes at `offset` and the crc after them, and checks it.
    /// `read_checked` that waits for the disk.
    fn read_waiting(&self, offset: u64, len: u64) -> Result<Bytes> {
        self.read_checked(offset, len, Wait::Yes)?
            .ok_or_else(would_block)
    }

    /// With `Wait::No`, `Ok(None)` if the bytes are not in the page cache.
    fn read_checked(&self, offset: u64, len: u64, wait: Wait) -> Result<Option<Bytes>> {
        let mut buf = vec![0u8; self.stored_len(offset, len)?];
        let Some(data_len) = self
            .read_checked_into(offset, &mut buf, wait)?
            .map(<[u8]>::len)
        else {
            return Ok(None);
        };
        buf.truncate(data_len);
        Ok(Some(Bytes::from(buf)))
    }

    /// The bytes a read of `len` bytes at `offset` and their crc takes;
    /// `Corruption` if they would run past the end of the file.
    fn stored_len(&self, offset: u64, len: u64) -> Result<usize> {
        len.checked_add(CRC_LEN)
            .filter(|&total| {
                offset
                    .checked_add(total)
                    .is_some_and(|end| end <= self.size)
            })
            .and_then(|total| usize::try_from(total).ok())
            .ok_or_else(|| Error::corruption(&self.path, offset, "block past the end of the file"))
    }

    /// Fills `buf` (of [`TableFile::stored_len`] bytes) from `offset`,
    /// checks the crc in its last bytes and returns the bytes before it.
    fn read_checked_into<'b>(
        &self,
        offset: u64,
        buf: &'b mut [u8],
        wait: Wait,
    ) -> Result<Option<&'b [u8]>> {
        if wait == Wait::No {
            let read = self.file.read_exact_at_if_cached(buf, offset);
            if !read.map_err(|e| self.read_error(offset, e))? {
                return Ok(None);
            }
        } else {
            self.read_at(buf, offset)?;
        }
        let data_len = buf.len().saturating_sub(CRC_LEN as usize);
        let stored = get_u32(buf, data_len);
        let data = buf.get(..data_len).unwrap_or_default();
        if stored != Some(masked_crc(data)) {
            return Err(Error::corruption(
                &self.path,
                offset,
                "block checksum mismatch",
            ));
        }
        Ok(Some(data))
    }

    /// A positioned read; a file shorter than it claimed to be is corruption.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.read_error(offset, e))
    }

    fn read_error(&self, offset: u64, error: io::Error) -> Error {
        match error.kind() {
            io::ErrorKind::UnexpectedEof => {
                Error::corruption(&self.path, offset, "file shorter than expected")
            }
            _ => Error::io(format!("reading table {}", self.path.display()), error),
        }
    }

    /// A `Corruption` error at `malformed.at` bytes past `base`.
    fn corrupt(&self, base: u64, malformed: Malformed) -> Error {
        let offset = base.saturating_add(malformed.at as u64);
        Error::corruption(&self.path, offset, malformed.detail)
    }
}

/// The filter must end where the index starts, and the index where the
/// footer starts.
fn check_layout(footer: &Footer, footer_at: u64) -> std::result::Result<(), &'static str> {
    let end = |offset: u64, len: u64| offset.checked_add(len)?.checked_add(CRC_LEN);
    if end(footer.filter_offset, footer.filter_len) != Some(footer.index_offset) {
        return Err("filter does not end where the index starts");
    }
    if end(footer.index_offset, footer.index_len) != Some(footer_at) {
        return Err("index does not end where the footer starts");
    }
    if footer.entry_count == 0 {
        return Err("table with no entries");
    }
    Ok(())
}
