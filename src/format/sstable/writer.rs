//! Writes an SSTable: data blocks go to the file as they fill; the filter,
//! index and footer are written by `finish`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::block::{
    Block, BlockLayout, RESTART_INTERVAL, encode_entry, encode_restarts, encoded_len,
};
use super::bloom::{build_filter, key_hash};
use super::cache::BlockCache;
use super::compression::encode_block;
use super::footer::{FOOTER_LEN, FORMAT_VERSION, Footer, TableIdentity};
use super::index::{BlockHandle, encode_handle, encode_smallest_key};
use super::{CRC_LEN, TableOptions};
use crate::error::IoContext;
use crate::format::Entry;
use crate::format::coding::masked_crc;
use crate::fs::WritableFile;
use crate::{Error, Result};

/// What a finished table holds, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub file_size: u64,
    pub entry_count: u64,
    pub smallest_key: Bytes,
    pub largest_key: Bytes,
    pub max_seq: u64,
    /// The earliest expiry of a value in the table; 0 when none expires.
    pub earliest_expire_at_ms: u64,
}

/// Builds one table from entries added in strictly increasing key order.
///
/// Memory held: the block being filled, the index built so far (one key per
/// block) and 8 bytes of hash per key for the filter. After an error from
/// `add` or `finish` the file is not a valid table; drop the writer and
/// remove the file.
pub struct SstableWriter {
    file: Box<dyn WritableFile>,
    /// For error messages.
    path: PathBuf,
    options: TableOptions,
    /// Entries of the block being filled, encoded.
    block: Vec<u8>,
    /// Offsets in `block` of its restart points (every `RESTART_INTERVAL`th
    /// entry, from the first).
    restarts: Vec<u32>,
    /// Entries in `block`.
    block_entries: usize,
    /// Restart points (version 3) or the entries alone (version 2, kept so
    /// that tests can write tables as older code did).
    layout: BlockLayout,
    /// Index block so far: smallest key, then a handle per written block.
    index: Vec<u8>,
    /// Hashes of every key added, for the filter.
    key_hashes: Vec<u64>,
    /// Bytes of the table so far, written or in `unwritten`.
    offset: u64,
    /// The end of the table so far, not yet written to the file.
    unwritten: Vec<u8>,
    smallest_key: Option<Bytes>,
    /// The last key added: order check, and the last key of the open block.
    last_key: Option<Bytes>,
    entry_count: u64,
    max_seq: u64,
    earliest_expire_at_ms: u64,
    /// Recorded in the footer.
    identity: TableIdentity,
    /// Where each data block goes as it is written, and the table's name
    /// there (see [`SstableWriter::caching_blocks`]).
    cache: Option<(Arc<BlockCache>, u64)>,
    /// Data blocks written so far: the number of the next one.
    blocks_written: u32,
    /// The last key of the block written last, which the next block's
    /// first key must follow (checked when a block is cached).
    previous_last_key: Option<Bytes>,
}

impl SstableWriter {
    /// Starts a table in `file` (named `path` in errors).
    pub fn new(file: Box<dyn WritableFile>, path: PathBuf, options: TableOptions) -> Self {
        SstableWriter {
            file,
            path,
            options,
            block: Vec::new(),
            restarts: Vec::new(),
            block_entries: 0,
            layout: BlockLayout::Restarts,
            index: Vec::new(),
            key_hashes: Vec::new(),
            offset: 0,
            unwritten: Vec::new(),
            smallest_key: None,
            last_key: None,
            entry_count: 0,
            max_seq: 0,
            earliest_expire_at_ms: 0,
            identity: TableIdentity::default(),
            cache: None,
            blocks_written: 0,
            previous_last_key: None,
        }
    }

    /// Also puts each data block, as it is written, into `cache` as block
    /// `n` of table `table` (the name the table's reader will look it up
    /// by, [`super::SstableReader::open_numbered`]), checked and indexed as
    /// a read would have made it: the blocks of a freshly flushed table are
    /// then read from memory, not from the file, by the gets that follow
    /// (RocksDB's `prepopulate_block_cache`). Blocks of a table that is
    /// never opened (the write failed) are never looked up, and go first.
    pub fn caching_blocks(mut self, cache: Arc<BlockCache>, table: u64) -> Self {
        self.cache = Some((cache, table));
        self
    }

    /// Records in the footer which file and database this table is.
    pub fn with_identity(mut self, identity: TableIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// Writes a version-2 table (no restart points), as code before version
    /// 3 did: for tests that older tables still read.
    #[cfg(test)]
    pub(super) fn with_version_2(mut self) -> Self {
        self.layout = BlockLayout::Entries;
        self
    }

    /// Adds an entry; its key must be greater than the last one added
    /// (`InvalidArgument` otherwise). May write a full block to the file
    /// (`Io` on failure).
    pub fn add(&mut self, entry: &Entry) -> Result<()> {
        if let Some(last) = &self.last_key
            && entry.key <= *last
        {
            return Err(Error::InvalidArgument(format!(
                "table keys must increase: {:?} after {:?}",
                entry.key, last
            )));
        }
        if !self.block.is_empty()
            && self.block_len() + encoded_len(entry) + 4 > self.options.block_bytes
        {
            self.flush_block()?;
        }
        if self.layout == BlockLayout::Restarts
            && self.block_entries.is_multiple_of(RESTART_INTERVAL)
        {
            let at = u32::try_from(self.block.len())
                .map_err(|_| Error::InvalidArgument("data block past 4 GiB".into()))?;
            self.restarts.push(at);
        }
        encode_entry(entry, &mut self.block);
        self.block_entries += 1;
        if self.smallest_key.is_none() {
            encode_smallest_key(&entry.key, &mut self.index);
            self.smallest_key = Some(entry.key.clone());
        }
        self.key_hashes.push(key_hash(&entry.key));
        self.last_key = Some(entry.key.clone());
        self.entry_count += 1;
        self.max_seq = self.max_seq.max(entry.seq);
        if entry.value.is_some() && entry.expire_at_ms > 0 {
            self.earliest_expire_at_ms = match self.earliest_expire_at_ms {
                0 => entry.expire_at_ms,
                earliest => earliest.min(entry.expire_at_ms),
            };
        }
        Ok(())
    }

    /// Bytes the table would take if finished now (the filter estimated
    /// from the keys so far).
    pub fn estimated_size(&self) -> u64 {
        // Up to a 64-byte line of rounding, and the mark.
        let filter = self.key_hashes.len() * self.options.bloom_bits_per_key / 8 + 65;
        let open_block = if self.block.is_empty() {
            0
        } else {
            self.block_len() + 64
        };
        let tail = open_block + filter + self.index.len() + 2 * CRC_LEN as usize;
        self.offset + tail as u64 + FOOTER_LEN
    }

    /// Entries added so far.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    /// Writes the filter, index and footer and fdatasyncs the file.
    /// `InvalidArgument` if no entry was added; `Io` if a write or the sync
    /// fails.
    pub fn finish(mut self) -> Result<TableSummary> {
        let (Some(smallest_key), Some(largest_key)) =
            (self.smallest_key.clone(), self.last_key.clone())
        else {
            return Err(Error::InvalidArgument(
                "a table needs at least one entry".into(),
            ));
        };
        self.flush_block()?;
        let filter = build_filter(&self.key_hashes, self.options.bloom_bits_per_key);
        let filter_offset = self.offset;
        self.write_checksummed(&filter)?;
        let index = std::mem::take(&mut self.index);
        let index_offset = self.offset;
        self.write_checksummed(&index)?;
        let footer = Footer {
            index_offset,
            index_len: index.len() as u64,
            filter_offset,
            filter_len: filter.len() as u64,
            entry_count: self.entry_count,
            max_seq: self.max_seq,
            identity: Some(self.identity),
            version: match self.layout {
                BlockLayout::Restarts => FORMAT_VERSION,
                BlockLayout::Entries => 2,
            },
        };
        self.write(&footer.encode())?;
        self.write_unwritten()?;
        let path = &self.path;
        self.file
            .sync_data()
            .context(|| format!("syncing table {}", path.display()))?;
        Ok(TableSummary {
            file_size: self.offset,
            entry_count: self.entry_count,
            smallest_key,
            largest_key,
            max_seq: self.max_seq,
            earliest_expire_at_ms: self.earliest_expire_at_ms,
        })
    }

    /// Writes the open block, if any, and records it in the index.
    fn flush_block(&mut self) -> Result<()> {
        let Some(last_key) = self.last_key.clone() else {
            return Ok(());
        };
        if self.block.is_empty() {
            return Ok(());
        }
        let mut block = std::mem::take(&mut self.block);
        if self.layout == BlockLayout::Restarts {
            encode_restarts(&self.restarts, &mut block);
        }
        self.restarts.clear();
        self.block_entries = 0;
        let stored = encode_block(&block, self.options.compression);
        let handle = BlockHandle {
            last_key,
            offset: self.offset,
            len: stored.len() as u64,
        };
        self.write_checksummed(&stored)?;
        encode_handle(&handle, &mut self.index);
        self.cache_block(&block, &handle.last_key);
        self.previous_last_key = Some(handle.last_key);
        self.blocks_written = self.blocks_written.saturating_add(1);
        // Reuse the buffer unless one huge entry grew it.
        if block.capacity() <= 2 * self.options.block_bytes {
            self.block = block;
            self.block.clear();
        }
        Ok(())
    }

    /// Puts the block just written (`data`, as stored before compression)
    /// into the cache, if the writer has one. A block that does not decode
    /// (it always should) is left to be read from the file.
    fn cache_block(&self, data: &[u8], last_key: &[u8]) {
        let Some((cache, table)) = &self.cache else {
            return;
        };
        let data = Bytes::copy_from_slice(data);
        let after = self.previous_last_key.as_deref();
        if let Ok(block) = Block::decode(data, self.layout, after, last_key) {
            cache.insert(*table, self.blocks_written, block);
        }
    }

    /// Bytes of the open block as it would be written, restart array included.
    fn block_len(&self) -> usize {
        match self.layout {
            BlockLayout::Restarts => self.block.len() + 4 * (self.restarts.len() + 1),
            BlockLayout::Entries => self.block.len(),
        }
    }

    /// Writes `data` followed by its masked crc.
    fn write_checksummed(&mut self, data: &[u8]) -> Result<()> {
        self.write(data)?;
        self.write(&masked_crc(data).to_le_bytes())
    }

    /// Appends `data` to the table: to `unwritten`, which goes to the file
    /// once it holds `TableOptions::write_buffer_bytes` (a larger `data`
    /// goes straight to the file, not copied). A data block was written
    /// with two calls (the block, then its checksum): 5,600 `write`s for a
    /// flush of 88k entries, about a fifth of its time.
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.offset += data.len() as u64;
        let collected = self.options.write_buffer_bytes;
        if data.len() >= collected {
            self.write_unwritten()?;
            return self.write_to_file(data);
        }
        self.unwritten.extend_from_slice(data);
        if self.unwritten.len() >= collected {
            self.write_unwritten()?;
        }
        Ok(())
    }

    fn write_unwritten(&mut self) -> Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let unwritten = std::mem::take(&mut self.unwritten);
        self.write_to_file(&unwritten)?;
        self.unwritten = unwritten;
        self.unwritten.clear();
        Ok(())
    }

    fn write_to_file(&self, data: &[u8]) -> Result<()> {
        let path = &self.path;
        self.file
            .write_all(data)
            .context(|| format!("writing table {}", path.display()))
    }
}
