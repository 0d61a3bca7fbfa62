//! SSTable: an immutable sorted segment file. (STUB: format doc to be written
//! by the module's author.)

mod reader;
mod writer;

pub use reader::{Lookup, SstableIter, SstableReader};
pub use writer::{SstableWriter, TableSummary};

/// How tables are written.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// Target size of a data block; a block holds at least one entry.
    pub block_bytes: usize,
    /// Bloom filter bits per key.
    pub bloom_bits_per_key: usize,
}
