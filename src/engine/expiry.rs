//! Expiring keys on [`Db`].
//!
//! An entry may carry an absolute expiry (Unix milliseconds, compared with
//! [`Options::clock`](crate::Options::clock)); at and after it the entry
//! reads as absent everywhere (gets, scans, the merge under a compaction,
//! which drops it or turns it into a tombstone where it must still hide
//! older versions). Changing a key's expiry rewrites its value with the new
//! expiry, a read-modify-write made atomic against every other write without
//! a lock by a conditional write ([`Db::get_versioned`] and
//! [`WriteBatch::require_unchanged`]): the memtable actor, which orders all
//! writes, refuses it if the key changed since it was read, and the caller
//! reads again.

use std::future::Future;

use bytes::Bytes;

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
        self.submit(vec![mutation])
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
        let read = self.get_versioned(key);
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
            let read = self.get_versioned(key.clone()).await?;
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
            batch.require_unchanged(key.clone(), read.version);
            match self.write(batch).await {
                Ok(()) => return Ok(true),
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
