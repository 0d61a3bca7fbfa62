//! sled 0.34 (the current stable release): one default tree, 32 MiB cache.
//!
//! Durability: sync=always calls `Db::flush()` after every write (writes out
//! the dirty IO buffers and fsyncs: sled has no per-write sync flag);
//! sync=none turns off sled's periodic background flush
//! (`flush_every_ms(None)`), so nothing syncs on the write path, as for the
//! other engines.

use std::path::Path;

use super::PEER_CACHE_BYTES;
use crate::args::SyncMode;
use crate::driver::BlockingEngine;
use crate::keys::KEY_BYTES;
use crate::workload::{BenchResult, PAGE_ENTRIES};

pub struct Sled {
    db: sled::Db,
    sync: SyncMode,
}

impl Sled {
    pub fn open(dir: &Path, sync: SyncMode) -> BenchResult<Sled> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(PEER_CACHE_BYTES)
            .flush_every_ms(None)
            .open()?;
        Ok(Sled { db, sync })
    }

    fn persist(&self) -> BenchResult<()> {
        if self.sync == SyncMode::Always {
            self.db.flush()?;
        }
        Ok(())
    }
}

impl BlockingEngine for Sled {
    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        self.db.insert(key, value)?;
        self.persist()
    }

    fn get(&self, key: &[u8]) -> BenchResult<bool> {
        Ok(self.db.get(key)?.is_some())
    }

    fn delete(&self, key: &[u8]) -> BenchResult<()> {
        self.db.remove(key)?;
        self.persist()
    }

    fn scan(&self, start: &[u8], limit: usize) -> BenchResult<usize> {
        let mut seen = 0;
        for entry in self.db.range(start..).take(limit) {
            let (_key, _value) = entry?;
            seen += 1;
        }
        Ok(seen)
    }

    fn put_batch(&self, entries: &[([u8; KEY_BYTES], &[u8])]) -> BenchResult<()> {
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            batch.insert(&key[..], *value);
        }
        self.db.apply_batch(batch)?;
        self.persist()
    }

    fn scan_all(&self, on_page: &mut dyn FnMut(usize)) -> BenchResult<u64> {
        let mut seen = 0u64;
        for entry in self.db.iter() {
            let (_key, _value) = entry?;
            seen += 1;
            if seen.is_multiple_of(PAGE_ENTRIES as u64) {
                on_page(PAGE_ENTRIES);
            }
        }
        on_page((seen % PAGE_ENTRIES as u64) as usize);
        Ok(seen)
    }

    fn flush(&self) -> BenchResult<()> {
        self.db.flush()?;
        Ok(())
    }
}
