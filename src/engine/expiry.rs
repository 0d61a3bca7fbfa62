//! Expiring keys and conditional writes on [`Db`].
//!
//! An entry may carry an absolute expiry (Unix milliseconds, compared with
//! [`Options::clock`](crate::Options::clock)); at and after it the entry
//! reads as absent everywhere (gets, scans, the merge under a compaction,
//! which drops it or turns it into a tombstone where it must still hide
//! older versions). Changing a key's expiry rewrites its value with the new
//! expiry; [`Db::read_for_update`] and [`Db::write_if_unchanged`] make that
//! read-modify-write atomic against every other write without a lock: the
//! memtable actor, which orders all writes, drops a conditional write whose
//! keys changed since they were read, and the caller reads again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::memtable::Guard;
use super::version::SegmentSet;
use super::{Db, Mutation, WriteBatch};
use crate::{Error, Result};

/// A key's time to live, as [`Db::ttl`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No such key (or it has expired).
    Absent,
    /// The key exists and never expires.
    Never,
    /// The key expires at `at_ms` (Unix milliseconds), `remaining_ms` from now.
    At { at_ms: u64, remaining_ms: u64 },
}

/// A key's newest version as read for a conditional write
/// ([`Db::write_if_unchanged`]).
#[derive(Debug, Clone)]
pub struct ReadVersion {
    /// The key read.
    pub key: Bytes,
    /// Its value, `None` if absent or expired.
    pub value: Option<Bytes>,
    /// Its expiry (Unix milliseconds), 0 if it never expires or is absent.
    pub expire_at_ms: u64,
    /// The sequence number of the version read, expired or deleted ones
    /// included: what the memtable actor compares.
    seen_seq: Option<u64>,
    segments: Arc<SegmentSet>,
}

impl Db {
    /// Milliseconds since the Unix epoch by the database's clock
    /// ([`Options::clock`](crate::Options::clock)): the time expiries are
    /// compared with.
    pub fn now_ms(&self) -> u64 {
        self.inner.options.clock.now_ms()
    }

    /// Sets `key` to `value`, expiring at `expire_at_ms` (Unix milliseconds;
    /// 0: never). A time already past hides the key at once.
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn put_with_expiry(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expire_at_ms: u64,
    ) -> impl Future<Output = Result<()>> + 'static {
        let mutation = Mutation {
            key: key.into(),
            value: Some(value.into()),
            expire_at_ms,
        };
        self.submit(vec![mutation], None)
    }

    /// The value of `key` and its expiry (0: never), `None` if absent or
    /// expired.
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn get_with_expiry(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Option<(Bytes, u64)>>> + 'static {
        let read = self.read_for_update(key);
        async move {
            let read = read.await?;
            Ok(read.value.map(|value| (value, read.expire_at_ms)))
        }
    }

    /// How long `key` has to live.
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn ttl(&self, key: impl Into<Bytes>) -> impl Future<Output = Result<Ttl>> + 'static {
        let read = self.get_with_expiry(key);
        let clock = self.inner.options.clock.clone();
        async move {
            Ok(match read.await? {
                None => Ttl::Absent,
                Some((_, 0)) => Ttl::Never,
                Some((_, at_ms)) => Ttl::At {
                    at_ms,
                    remaining_ms: at_ms.saturating_sub(clock.now_ms()),
                },
            })
        }
    }

    /// Makes `key` expire at `expire_at_ms` (Unix milliseconds); a time
    /// already past deletes it. False if there is no such key. Atomic
    /// against concurrent writes of the key.
    ///
    /// # Errors
    /// As [`Db::put`].
    pub async fn expire(&self, key: impl Into<Bytes>, expire_at_ms: u64) -> Result<bool> {
        let key = key.into();
        if expire_at_ms == 0 {
            return Err(Error::InvalidArgument(
                "an expiry of 0 means none; use persist".into(),
            ));
        }
        self.update_expiry(key, |_| Some(expire_at_ms)).await
    }

    /// Removes `key`'s expiry. True if it had one; false if it had none or
    /// there is no such key. Atomic against concurrent writes of the key.
    ///
    /// # Errors
    /// As [`Db::put`].
    pub async fn persist(&self, key: impl Into<Bytes>) -> Result<bool> {
        self.update_expiry(key.into(), |now| (now != 0).then_some(0))
            .await
    }

    /// Reads `key`, asks `decide` for a new expiry given the current one (0:
    /// none; answer `None` to leave it), and writes the value back with it,
    /// all atomically. True if the expiry was changed; false if `decide`
    /// declined or the key is absent.
    ///
    /// # Errors
    /// As [`Db::put`].
    pub async fn update_expiry(
        &self,
        key: Bytes,
        mut decide: impl FnMut(u64) -> Option<u64>,
    ) -> Result<bool> {
        loop {
            let read = self.read_for_update(key.clone()).await?;
            let Some(value) = read.value.clone() else {
                return Ok(false);
            };
            let Some(expire_at_ms) = decide(read.expire_at_ms) else {
                return Ok(false);
            };
            let mut batch = WriteBatch::new();
            if expire_at_ms != 0 && expire_at_ms <= self.now_ms() {
                batch.delete(key.clone());
            } else {
                batch.put_with_expiry(key.clone(), value, expire_at_ms);
            }
            if self.write_if_unchanged(&[read], batch).await? {
                return Ok(true);
            }
        }
    }

    /// Reads `key`'s newest version for a later
    /// [`Db::write_if_unchanged`].
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn read_for_update(
        &self,
        key: impl Into<Bytes>,
    ) -> impl Future<Output = Result<ReadVersion>> + 'static {
        let key = key.into();
        let read = self.read_newest(key.clone());
        let clock = self.inner.options.clock.clone();
        async move {
            let (entry, view) = read.await?;
            let seen_seq = entry.as_ref().map(|entry| entry.seq);
            let expire_at_ms = entry.as_ref().map_or(0, |entry| entry.expire_at_ms);
            let value = entry.and_then(|entry| entry.live_value(clock.now_ms()));
            Ok(ReadVersion {
                key,
                expire_at_ms: if value.is_some() { expire_at_ms } else { 0 },
                value,
                seen_seq,
                segments: view.segments.clone(),
            })
        }
    }

    /// Applies `batch` atomically if no key in `reads` has been written
    /// since it was read; answers whether it was applied. A false answer is
    /// normal under contention (read again and retry) and may also follow a
    /// flush or a compaction that moved the keys.
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn write_if_unchanged(
        &self,
        reads: &[ReadVersion],
        batch: WriteBatch,
    ) -> impl Future<Output = Result<bool>> + 'static {
        let applied = Arc::new(AtomicBool::new(false));
        let segments = reads.first().map(|read| read.segments.clone());
        let same_view = reads.iter().all(|read| {
            segments
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &read.segments))
        });
        let written = match (segments, same_view) {
            (Some(segments), true) => {
                let guard = Guard {
                    seen: reads.iter().map(|r| (r.key.clone(), r.seen_seq)).collect(),
                    segments,
                    applied: applied.clone(),
                };
                Some(self.submit(batch.mutations, Some(guard)))
            }
            // Reads from different moments cannot be checked together.
            (Some(_), false) => None,
            (None, _) => {
                applied.store(true, Ordering::Release);
                Some(self.submit(batch.mutations, None))
            }
        };
        async move {
            match written {
                None => Ok(false),
                Some(written) => {
                    written.await?;
                    Ok(applied.load(Ordering::Acquire))
                }
            }
        }
    }
}
