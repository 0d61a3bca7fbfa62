//! SCAN cursors. Clients parse a cursor as a 64-bit integer (redis-cli
//! `--scan`, redis-rs) or an integer (redis-py), but a scan goes on at a
//! key of any length. So the server keeps a table from cursor numbers to
//! the key where each scan goes on; `0` starts and ends an iteration.
//!
//! The table is bounded: past [`MAX_CURSORS`] entries or [`MAX_KEY_BYTES`]
//! bytes of keys the oldest cursors are forgotten, and a forgotten cursor
//! answers `ERR invalid cursor`. A cursor can be used again (a client may
//! retry a page) until it is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

/// Most cursors remembered.
pub const MAX_CURSORS: usize = 100_000;
/// Most bytes of keys remembered.
pub const MAX_KEY_BYTES: usize = 64 << 20;

/// The server's cursor table.
#[derive(Debug, Default)]
pub struct Cursors {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    last: u64,
    keys: HashMap<u64, Bytes>,
    /// Cursor numbers, oldest first, for forgetting.
    order: VecDeque<u64>,
    bytes: usize,
}

impl Cursors {
    /// A new cursor for a scan that goes on at `key`.
    pub fn issue(&self, key: Bytes) -> u64 {
        let mut table = self.lock();
        table.last += 1;
        let id = table.last;
        table.bytes += key.len();
        table.keys.insert(id, key);
        table.order.push_back(id);
        while table.order.len() > MAX_CURSORS || table.bytes > MAX_KEY_BYTES {
            let Some(old) = table.order.pop_front() else {
                break;
            };
            if let Some(key) = table.keys.remove(&old) {
                table.bytes -= key.len();
            }
        }
        id
    }

    /// The key cursor `id` goes on at, if it is remembered.
    pub fn resolve(&self, id: u64) -> Option<Bytes> {
        self.lock().keys.get(&id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent even if a holder panicked mid-way:
        // each step leaves it valid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_resolve_and_forget_the_oldest() {
        let cursors = Cursors::default();
        let first = cursors.issue(Bytes::from_static(b"a"));
        assert_ne!(first, 0);
        assert_eq!(cursors.resolve(first), Some(Bytes::from_static(b"a")));
        assert_eq!(cursors.resolve(first), Some(Bytes::from_static(b"a")));
        for _ in 0..MAX_CURSORS {
            cursors.issue(Bytes::from_static(b"b"));
        }
        assert_eq!(cursors.resolve(first), None);
        assert_eq!(cursors.resolve(0), None);
    }
}
