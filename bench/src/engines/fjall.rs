//! fjall: one keyspace, default options (64 MiB memtable, 4 KiB blocks,
//! LZ4, 32 MiB block cache).
//!
//! Durability: sync=always calls `Database::persist(PersistMode::SyncData)`
//! (fdatasync of the journal) after every write; sync=none leaves fjall's
//! default, which hands each write to the OS (`PersistMode::Buffer`) but
//! never syncs it.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::PEER_CACHE_BYTES;
use crate::args::SyncMode;
use crate::driver::BlockingEngine;
use crate::keys::KEY_BYTES;
use crate::workload::{BenchResult, PAGE_ENTRIES};

pub struct Fjall {
    db: Database,
    keyspace: Keyspace,
    sync: SyncMode,
}

impl Fjall {
    pub fn open(dir: &Path, sync: SyncMode) -> BenchResult<Fjall> {
        let db = Database::builder(dir).cache_size(PEER_CACHE_BYTES).open()?;
        let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, keyspace, sync })
    }

    fn persist(&self) -> BenchResult<()> {
        if self.sync == SyncMode::Always {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }
}

impl BlockingEngine for Fjall {
    fn put(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        self.keyspace.insert(key, value)?;
        self.persist()
    }

    fn get(&self, key: &[u8]) -> BenchResult<bool> {
        Ok(self.keyspace.get(key)?.is_some())
    }

    fn delete(&self, key: &[u8]) -> BenchResult<()> {
        self.keyspace.remove(key)?;
        self.persist()
    }

    fn scan(&self, start: &[u8], limit: usize) -> BenchResult<usize> {
        let mut seen = 0;
        for guard in self.keyspace.range(start..).take(limit) {
            let (_key, _value) = guard.into_inner()?;
            seen += 1;
        }
        Ok(seen)
    }

    fn put_batch(&self, entries: &[([u8; KEY_BYTES], &[u8])]) -> BenchResult<()> {
        let mut batch = self.db.batch();
        for (key, value) in entries {
            batch.insert(&self.keyspace, &key[..], *value);
        }
        batch.commit()?;
        self.persist()
    }

    fn scan_all(&self, on_page: &mut dyn FnMut(usize)) -> BenchResult<u64> {
        let mut seen = 0u64;
        for guard in self.keyspace.iter() {
            let (_key, _value) = guard.into_inner()?;
            seen += 1;
            if seen.is_multiple_of(PAGE_ENTRIES as u64) {
                on_page(PAGE_ENTRIES);
            }
        }
        on_page((seen % PAGE_ENTRIES as u64) as usize);
        Ok(seen)
    }

    fn flush(&self) -> BenchResult<()> {
        self.keyspace.rotate_memtable_and_wait()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// No flush queued and no compaction running. fjall does not say what
    /// compaction it still owes: it compacts a few steps after each flush
    /// and once at open, so `settle` waits for a quiet stretch.
    fn idle(&self) -> BenchResult<bool> {
        Ok(self.db.outstanding_flushes() == 0 && self.db.active_compactions() == 0)
    }

    fn gauges(&self) -> Vec<(String, u64)> {
        vec![
            ("tables".into(), self.keyspace.table_count() as u64),
            ("l0_tables".into(), self.keyspace.l0_table_count() as u64),
        ]
    }
}
