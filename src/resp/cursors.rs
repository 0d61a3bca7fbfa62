//! SCAN cursors. Clients parse a cursor as a 64-bit integer (redis-cli
//! `--scan`, redis-rs) or an integer (redis-py), but a scan goes on at a
//! key of any length. So the server keeps a table from cursor numbers to
//! the key where each scan goes on; `0` starts and ends an iteration.
//!
//! The table is bounded: past [`MAX_CURSORS`] entries or [`MAX_KEY_BYTES`]
//! bytes of keys the oldest cursors are forgotten, and a forgotten cursor
//! answers `ERR invalid cursor`. A cursor can be used again (a client may
//! retry a page) until it is forgotten.
//!
//! The table is owned by one actor, [`CursorTable`], shared by every RESP
//! session of a server; [`Cursors`] is the handle sessions hold.

use std::collections::{HashMap, VecDeque};

use actix::prelude::*;
use bytes::Bytes;

/// Most cursors remembered.
pub const MAX_CURSORS: usize = 100_000;
/// Most bytes of keys remembered.
pub const MAX_KEY_BYTES: usize = 64 << 20;

/// The handle on the server's cursor table.
#[derive(Debug, Clone)]
pub struct Cursors(Addr<CursorTable>);

impl Cursors {
    /// Starts the table's actor on the current arbiter.
    pub fn start() -> Self {
        Cursors(CursorTable::default().start())
    }

    /// A new cursor for a scan that goes on at `key`; 0 if the table is gone.
    pub async fn issue(&self, key: Bytes) -> u64 {
        self.0.send(Issue(key)).await.unwrap_or(0)
    }

    /// The key cursor `id` goes on at, if it is remembered.
    pub async fn resolve(&self, id: u64) -> Option<Bytes> {
        self.0.send(Resolve(id)).await.ok().flatten()
    }
}

/// The actor that owns the table.
#[derive(Debug, Default)]
pub struct CursorTable(Table);

impl Actor for CursorTable {
    type Context = Context<Self>;
}

/// Remember where a scan goes on; answered with the new cursor.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Issue(pub Bytes);

/// Where cursor `.0` goes on.
#[derive(Message)]
#[rtype(result = "Option<Bytes>")]
pub struct Resolve(pub u64);

impl Handler<Issue> for CursorTable {
    type Result = u64;
    fn handle(&mut self, msg: Issue, _: &mut Context<Self>) -> u64 {
        self.0.issue(msg.0)
    }
}

impl Handler<Resolve> for CursorTable {
    type Result = Option<Bytes>;
    fn handle(&mut self, msg: Resolve, _: &mut Context<Self>) -> Option<Bytes> {
        self.0.resolve(msg.0)
    }
}

#[derive(Debug, Default)]
struct Table {
    last: u64,
    keys: HashMap<u64, Bytes>,
    /// Cursor numbers, oldest first, for forgetting.
    order: VecDeque<u64>,
    bytes: usize,
}

impl Table {
    /// A new cursor for a scan that goes on at `key`.
    fn issue(&mut self, key: Bytes) -> u64 {
        self.last += 1;
        let id = self.last;
        self.bytes += key.len();
        self.keys.insert(id, key);
        self.order.push_back(id);
        while self.order.len() > MAX_CURSORS || self.bytes > MAX_KEY_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(key) = self.keys.remove(&old) {
                self.bytes -= key.len();
            }
        }
        id
    }

    /// The key cursor `id` goes on at, if it is remembered.
    fn resolve(&self, id: u64) -> Option<Bytes> {
        self.keys.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_resolve_and_forget_the_oldest() {
        let mut cursors = Table::default();
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
