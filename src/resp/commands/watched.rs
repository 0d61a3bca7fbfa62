//! The keys a connection watches (WATCH) until EXEC, DISCARD, UNWATCH or
//! RESET forget them; how EXEC uses them is in `transaction.rs`.
//!
//! Each key is kept once: a key watched again keeps the point its first
//! WATCH recorded, as in Redis. Keys are copied out of the request that
//! named them (a slice would keep the whole request's buffer) and counted
//! with [`WATCHED_KEY_OVERHEAD_BYTES`] each for their bookkeeping; a
//! connection watches at most [`MAX_WATCHED_BYTES`] so counted
//! (docs/PROTOCOL.md, "Limits"). A WATCH that would pass it, or that names
//! a key the engine cannot store (empty, or over its key limit), is
//! refused whole and watches nothing. Forgetting the keys frees their
//! table, not only its entries.

use std::collections::HashMap;

use bytes::Bytes;

use super::{WatchPoint, engine_error};
use crate::resp::reply::Reply;

/// Most bytes of watched keys (with their overhead) per connection: 1 MiB.
/// Redis has no such limit.
pub const MAX_WATCHED_BYTES: usize = 1 << 20;

/// What each watched key is counted for beyond its bytes: its table entry
/// and its point.
pub const WATCHED_KEY_OVERHEAD_BYTES: usize = 64;

/// A connection's watched keys, each with the point its WATCH recorded.
#[derive(Debug, Clone, Default)]
pub struct WatchedKeys {
    points: HashMap<Bytes, WatchPoint>,
    /// The keys' bytes plus their overhead, held to [`MAX_WATCHED_BYTES`].
    bytes: usize,
}

impl WatchedKeys {
    /// Watches `keys` (already mapped into the connection's database):
    /// the keys not watched before, each with a new point for the WATCH
    /// request to set. Refused, watching nothing, if a key is empty or
    /// longer than `max_key_bytes`, or the keys would pass
    /// [`MAX_WATCHED_BYTES`].
    pub fn watch(
        &mut self,
        keys: impl IntoIterator<Item = Bytes>,
        max_key_bytes: usize,
    ) -> Result<Vec<(Bytes, WatchPoint)>, Reply> {
        let mut added: HashMap<Bytes, WatchPoint> = HashMap::new();
        let mut bytes = self.bytes;
        for key in keys {
            check_key(&key, max_key_bytes)?;
            if self.points.contains_key(&key) || added.contains_key(&key) {
                continue;
            }
            bytes += key.len() + WATCHED_KEY_OVERHEAD_BYTES;
            if bytes > MAX_WATCHED_BYTES {
                return Err(too_many_watched());
            }
            added.insert(Bytes::copy_from_slice(&key), WatchPoint::default());
        }
        self.bytes = bytes;
        let added: Vec<(Bytes, WatchPoint)> = added.into_iter().collect();
        self.points.extend(added.iter().cloned());
        Ok(added)
    }

    /// Forgets every key, freeing the table; the keys with their points.
    pub fn take(&mut self) -> Vec<(Bytes, WatchPoint)> {
        self.bytes = 0;
        std::mem::take(&mut self.points).into_iter().collect()
    }

    /// Forgets every key, freeing the table.
    pub fn clear(&mut self) {
        self.take();
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }
}

/// The engine's refusal of a key it cannot store, as a read of it gets.
fn check_key(key: &[u8], max_key_bytes: usize) -> Result<(), Reply> {
    if key.is_empty() {
        return Err(engine_error(&crate::Error::empty_key()));
    }
    if key.len() > max_key_bytes {
        let (len, limit) = (key.len(), max_key_bytes);
        return Err(engine_error(&crate::Error::KeyTooLarge { len, limit }));
    }
    Ok(())
}

fn too_many_watched() -> Reply {
    Reply::err(format!(
        "WATCH would watch more than {MAX_WATCHED_BYTES} bytes of keys on this connection; \
         EXEC, DISCARD or UNWATCH first"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .collect()
    }

    #[test]
    fn a_key_is_watched_once_and_keeps_its_first_point() {
        let mut watched = WatchedKeys::default();
        let first = watched.watch(keys(&["a", "b", "a"]), 16).unwrap();
        assert_eq!(first.len(), 2);
        let again = watched.watch(keys(&["a", "c"]), 16).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(watched.len(), 3);
        assert_eq!(watched.take().len(), 3);
        assert!(watched.is_empty());
        assert_eq!(watched.bytes, 0);
    }

    #[test]
    fn a_refused_watch_keeps_nothing() {
        let mut watched = WatchedKeys::default();
        watched.watch(keys(&["a"]), 4).unwrap();
        assert!(watched.watch(keys(&["b", "too long"]), 4).is_err());
        assert!(watched.watch(keys(&["b", ""]), 4).is_err());
        let many: Vec<Bytes> = (0..MAX_WATCHED_BYTES / WATCHED_KEY_OVERHEAD_BYTES)
            .map(|i| Bytes::from(i.to_string()))
            .collect();
        assert!(watched.watch(many, 16).is_err());
        assert_eq!(watched.len(), 1);
        assert_eq!(watched.bytes, 1 + WATCHED_KEY_OVERHEAD_BYTES);
    }
}
