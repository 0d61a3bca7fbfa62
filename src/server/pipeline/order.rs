//! The ordering rule of a pipelined connection, as a pure policy (no I/O):
//! which request may go to the engine now, and which must wait.
//!
//! The promise (docs/PROTOCOL.md, "Ordering"): a request observes every
//! write sent before it on its connection and no write sent after it.
//! The engine gives two facts to build on: requests are applied in call
//! order, a read takes its snapshot when it is called, and a read is only
//! sure to see a write whose future has completed. So:
//! - a read (or read-modify-write) goes once every earlier write on the
//!   connection is acknowledged;
//! - a write goes at once, in arrival order, unless an earlier request is
//!   still held (that one must not see it) or an earlier read-modify-write
//!   is unanswered (it writes later than it was called);
//! - the session may also hold reads for its own reasons (the reply budget
//!   is full, or a read that waits for the disk is in flight): `reads_blocked`.
//!
//! Held requests are released strictly from the front: every rule above
//! holds a later request whenever it holds an earlier one.

use std::collections::{BTreeSet, VecDeque};

/// How a request relates to the others on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Observes the database.
    Read,
    /// Changes it.
    Write,
    /// Both, in one step the engine does not order (a read-modify-write):
    /// waits like a read, and later writes wait for its answer.
    ReadWrite,
}

/// The requests of one connection that are unanswered or held.
#[derive(Debug)]
pub struct Order<T> {
    /// Writes and read-modify-writes sent or held, not yet answered.
    unacked_writes: BTreeSet<u64>,
    /// Read-modify-writes not yet answered.
    unacked_rmws: BTreeSet<u64>,
    /// Requests waiting, in arrival order.
    held: VecDeque<(u64, Access, T)>,
}

impl<T> Default for Order<T> {
    fn default() -> Self {
        Order {
            unacked_writes: BTreeSet::new(),
            unacked_rmws: BTreeSet::new(),
            held: VecDeque::new(),
        }
    }
}

impl<T> Order<T> {
    /// Takes request `seq` (sequence numbers increase with arrival): gives
    /// it back if it may go now, else holds it.
    pub fn admit(&mut self, seq: u64, access: Access, item: T, reads_blocked: bool) -> Option<T> {
        if access != Access::Read {
            self.unacked_writes.insert(seq);
        }
        if access == Access::ReadWrite {
            self.unacked_rmws.insert(seq);
        }
        if self.held.is_empty() && self.ready(seq, access, reads_blocked) {
            return Some(item);
        }
        self.held.push_back((seq, access, item));
        None
    }

    /// Request `seq` was answered.
    pub fn answered(&mut self, seq: u64) {
        self.unacked_rmws.remove(&seq);
        self.unacked_writes.remove(&seq);
    }

    /// The first held request, if it may go now.
    pub fn next_ready(&mut self, reads_blocked: bool) -> Option<(u64, T)> {
        let &(seq, access, _) = self.held.front()?;
        if !self.ready(seq, access, reads_blocked) {
            return None;
        }
        self.held.pop_front().map(|(seq, _, item)| (seq, item))
    }

    /// True if requests are held.
    pub fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }

    /// True if request `seq`, first among the held ones (or with none
    /// held), may go.
    fn ready(&self, seq: u64, access: Access, reads_blocked: bool) -> bool {
        let earlier = |set: &BTreeSet<u64>| set.first().is_some_and(|&s| s < seq);
        match access {
            Access::Read | Access::ReadWrite => !reads_blocked && !earlier(&self.unacked_writes),
            Access::Write => !earlier(&self.unacked_rmws),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_waits_for_earlier_writes_and_later_writes_wait_for_it() {
        let mut order = Order::default();
        assert_eq!(order.admit(0, Access::Write, "put 1", false), Some("put 1"));
        assert_eq!(order.admit(1, Access::Read, "get", false), None);
        // Sent now, the second put could be applied before the get runs.
        assert_eq!(order.admit(2, Access::Write, "put 2", false), None);
        assert_eq!(order.next_ready(false), None);
        order.answered(0);
        assert_eq!(order.next_ready(false), Some((1, "get")));
        assert_eq!(order.next_ready(false), Some((2, "put 2")));
        assert!(!order.holds_any());
    }

    #[test]
    fn reads_with_no_earlier_write_go_at_once_unless_blocked() {
        let mut order = Order::default();
        assert_eq!(order.admit(0, Access::Read, 'a', false), Some('a'));
        assert_eq!(order.admit(1, Access::Read, 'b', true), None);
        // Nothing overtakes a held read, not even a read no longer blocked.
        assert_eq!(order.admit(2, Access::Read, 'c', false), None);
        assert_eq!(order.next_ready(true), None);
        assert_eq!(order.next_ready(false), Some((1, 'b')));
        assert_eq!(order.next_ready(false), Some((2, 'c')));
    }

    #[test]
    fn writes_wait_for_an_earlier_read_modify_write() {
        let mut order = Order::default();
        assert_eq!(
            order.admit(0, Access::ReadWrite, "incr", false),
            Some("incr")
        );
        assert_eq!(order.admit(1, Access::Write, "set", false), None);
        order.answered(0);
        assert_eq!(order.next_ready(false), Some((1, "set")));
        // Writes go side by side: the engine applies them in call order.
        assert_eq!(order.admit(2, Access::Write, "set", false), Some("set"));
        assert_eq!(order.admit(3, Access::Write, "del", false), Some("del"));
    }
}
