//! The ordering rule of a pipelined connection, as a pure policy (no I/O):
//! which request may go to the engine now, and which must wait.
//!
//! The promise (docs/PROTOCOL.md, "Ordering"): a request observes every
//! write sent before it on its connection and no write sent after it.
//! The engine gives two facts to build on: requests are applied in call
//! order, a read takes its snapshot when it is called, and a read is only
//! sure to see a write whose future has completed. So:
//! - a read (or read-modify-write) goes once every earlier write on the
//!   connection that touches what it reads (its [`Footprint`]: keys, a key
//!   range, or everything) is acknowledged; writes elsewhere cannot change
//!   what it sees, so it need not wait for them;
//! - a write goes at once, in arrival order, unless an earlier request is
//!   still held (that one must not see it) or an earlier read-modify-write
//!   is unanswered (it writes later than it was called);
//! - the session may also hold reads for its own reasons (the reply budget
//!   is full, or a read that waits for the disk is in flight): `reads_blocked`.
//!
//! Held requests are released strictly from the front: every rule above
//! holds a later request whenever it holds an earlier one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

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

/// What a request reads or writes: a read waits only for earlier writes
/// whose footprint overlaps its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Footprint {
    /// Nothing in the database (a reply known in advance, a statistic).
    Nothing,
    /// One key.
    Key(Bytes),
    /// These keys.
    Keys(Vec<Bytes>),
    /// The keys from `start` (included) to `end` (excluded; `None`: to the
    /// end of the key space).
    Range(Bytes, Option<Bytes>),
    /// Anything: the whole database, or not known.
    All,
}

impl Footprint {
    /// True if a key could be in both.
    pub fn overlaps(&self, other: &Footprint) -> bool {
        use Footprint::{All, Key, Keys, Nothing, Range};
        match (self, other) {
            (Nothing, _) | (_, Nothing) => false,
            (All, _) | (_, All) => true,
            (Key(a), Key(b)) => a == b,
            (Key(k), Keys(keys)) | (Keys(keys), Key(k)) => keys.contains(k),
            (Keys(a), Keys(b)) => a.iter().any(|k| b.contains(k)),
            (Key(k), Range(start, end)) | (Range(start, end), Key(k)) => in_range(k, start, end),
            (Keys(keys), Range(start, end)) | (Range(start, end), Keys(keys)) => {
                keys.iter().any(|k| in_range(k, start, end))
            }
            (Range(a_start, a_end), Range(b_start, b_end)) => {
                below(a_start, b_end) && below(b_start, a_end)
            }
        }
    }
}

/// True if `key` is in `[start, end)`.
fn in_range(key: &Bytes, start: &Bytes, end: &Option<Bytes>) -> bool {
    key >= start && below(key, end)
}

/// True if `key` is below `end` (`None`: no end).
fn below(key: &Bytes, end: &Option<Bytes>) -> bool {
    end.as_ref().is_none_or(|end| key < end)
}

/// A request held back, with what it needs to be judged.
#[derive(Debug)]
struct Held<T> {
    seq: u64,
    access: Access,
    footprint: Footprint,
    item: T,
}

/// The requests of one connection that are unanswered or held.
#[derive(Debug)]
pub struct Order<T> {
    /// Writes and read-modify-writes sent or held, not yet answered, with
    /// what they change.
    unacked_writes: BTreeMap<u64, Footprint>,
    /// Read-modify-writes not yet answered.
    unacked_rmws: BTreeSet<u64>,
    /// Requests waiting, in arrival order.
    held: VecDeque<Held<T>>,
}

impl<T> Default for Order<T> {
    fn default() -> Self {
        Order {
            unacked_writes: BTreeMap::new(),
            unacked_rmws: BTreeSet::new(),
            held: VecDeque::new(),
        }
    }
}

impl<T> Order<T> {
    /// Takes request `seq` (sequence numbers increase with arrival), which
    /// touches `footprint`: gives it back if it may go now, else holds it.
    pub fn admit(
        &mut self,
        seq: u64,
        access: Access,
        footprint: Footprint,
        item: T,
        reads_blocked: bool,
    ) -> Option<T> {
        if access == Access::ReadWrite {
            self.unacked_rmws.insert(seq);
        }
        let ready = self.held.is_empty() && self.ready(seq, access, &footprint, reads_blocked);
        if ready && access == Access::Read {
            return Some(item);
        }
        if ready {
            self.unacked_writes.insert(seq, footprint);
            return Some(item);
        }
        if access != Access::Read {
            self.unacked_writes.insert(seq, footprint.clone());
        }
        self.held.push_back(Held {
            seq,
            access,
            footprint,
            item,
        });
        None
    }

    /// Request `seq` was answered.
    pub fn answered(&mut self, seq: u64) {
        self.unacked_rmws.remove(&seq);
        self.unacked_writes.remove(&seq);
    }

    /// The first held request, if it may go now.
    pub fn next_ready(&mut self, reads_blocked: bool) -> Option<(u64, T)> {
        let first = self.held.front()?;
        if !self.ready(first.seq, first.access, &first.footprint, reads_blocked) {
            return None;
        }
        self.held.pop_front().map(|held| (held.seq, held.item))
    }

    /// True if no write or read-modify-write is unanswered and no request
    /// is held.
    pub fn settled(&self) -> bool {
        self.unacked_writes.is_empty() && self.held.is_empty()
    }

    /// True if requests are held.
    pub fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }

    /// True if request `seq`, first among the held ones (or with none
    /// held), may go.
    fn ready(&self, seq: u64, access: Access, footprint: &Footprint, reads_blocked: bool) -> bool {
        match access {
            Access::Read | Access::ReadWrite => {
                !reads_blocked
                    && !self
                        .unacked_writes
                        .range(..seq)
                        .any(|(_, write)| write.overlaps(footprint))
            }
            Access::Write => self.unacked_rmws.first().is_none_or(|&s| s >= seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Footprint::{All, Key, Keys, Range};

    fn k(key: &str) -> Bytes {
        Bytes::copy_from_slice(key.as_bytes())
    }

    #[test]
    fn a_read_waits_for_earlier_writes_and_later_writes_wait_for_it() {
        let mut order = Order::default();
        assert_eq!(
            order.admit(0, Access::Write, All, "put 1", false),
            Some("put 1")
        );
        assert_eq!(order.admit(1, Access::Read, All, "get", false), None);
        // Sent now, the second put could be applied before the get runs.
        assert_eq!(order.admit(2, Access::Write, All, "put 2", false), None);
        assert_eq!(order.next_ready(false), None);
        order.answered(0);
        assert_eq!(order.next_ready(false), Some((1, "get")));
        assert_eq!(order.next_ready(false), Some((2, "put 2")));
        assert!(!order.holds_any());
    }

    #[test]
    fn reads_with_no_earlier_write_go_at_once_unless_blocked() {
        let mut order = Order::default();
        assert_eq!(order.admit(0, Access::Read, All, 'a', false), Some('a'));
        assert_eq!(order.admit(1, Access::Read, All, 'b', true), None);
        // Nothing overtakes a held read, not even a read no longer blocked.
        assert_eq!(order.admit(2, Access::Read, All, 'c', false), None);
        assert_eq!(order.next_ready(true), None);
        assert_eq!(order.next_ready(false), Some((1, 'b')));
        assert_eq!(order.next_ready(false), Some((2, 'c')));
    }

    #[test]
    fn writes_wait_for_an_earlier_read_modify_write() {
        let mut order = Order::default();
        assert_eq!(
            order.admit(0, Access::ReadWrite, All, "incr", false),
            Some("incr")
        );
        assert_eq!(order.admit(1, Access::Write, All, "set", false), None);
        order.answered(0);
        assert_eq!(order.next_ready(false), Some((1, "set")));
        // Writes go side by side: the engine applies them in call order.
        assert_eq!(
            order.admit(2, Access::Write, All, "set", false),
            Some("set")
        );
        assert_eq!(
            order.admit(3, Access::Write, All, "del", false),
            Some("del")
        );
    }

    #[test]
    fn a_read_waits_only_for_earlier_writes_it_could_see() {
        let mut order = Order::default();
        assert_eq!(
            order.admit(0, Access::Write, Key(k("a")), "set a", false),
            Some("set a")
        );
        // Another key: nothing earlier changes it.
        assert_eq!(
            order.admit(1, Access::Read, Key(k("b")), "get b", false),
            Some("get b")
        );
        // The same key, as one of several, or inside a range: it waits.
        assert_eq!(
            order.admit(2, Access::Read, Keys(vec![k("b"), k("a")]), "mget", false),
            None
        );
        // Held requests go strictly in order, even a read of another key.
        assert_eq!(
            order.admit(3, Access::Read, Key(k("c")), "get c", false),
            None
        );
        assert_eq!(order.next_ready(false), None);
        order.answered(0);
        assert_eq!(order.next_ready(false), Some((2, "mget")));
        assert_eq!(order.next_ready(false), Some((3, "get c")));
        assert_eq!(
            order.admit(4, Access::Write, Key(k("m")), "set m", false),
            Some("set m")
        );
        let scan = Range(k("a"), Some(k("n")));
        assert_eq!(order.admit(5, Access::Read, scan, "scan a..n", false), None);
        order.answered(4);
        assert_eq!(order.next_ready(false), Some((5, "scan a..n")));
        assert_eq!(
            order.admit(6, Access::Write, Key(k("z")), "set z", false),
            Some("set z")
        );
        let scan = Range(k("a"), Some(k("z")));
        assert_eq!(
            order.admit(7, Access::Read, scan, "scan a..z", false),
            Some("scan a..z")
        );
        assert_eq!(order.admit(8, Access::Read, All, "dbsize", false), None);
    }

    #[test]
    fn a_read_modify_write_waits_only_for_its_keys() {
        let mut order = Order::default();
        assert_eq!(
            order.admit(0, Access::Write, Key(k("a")), "set a", false),
            Some("set a")
        );
        assert_eq!(
            order.admit(1, Access::ReadWrite, Key(k("b")), "incr b", false),
            Some("incr b")
        );
        // A read of b waits for the increment; a write of anything waits too.
        assert_eq!(
            order.admit(2, Access::Read, Key(k("b")), "get b", false),
            None
        );
        order.answered(1);
        assert_eq!(order.next_ready(false), Some((2, "get b")));
    }

    #[test]
    fn footprints_overlap_where_a_key_could_be_in_both() {
        let range = |a: &str, b: Option<&str>| Range(k(a), b.map(k));
        assert!(Key(k("a")).overlaps(&range("a", Some("b"))));
        assert!(!Key(k("b")).overlaps(&range("a", Some("b"))));
        assert!(Key(k("zzz")).overlaps(&range("b", None)));
        assert!(range("a", Some("c")).overlaps(&range("b", None)));
        assert!(!range("a", Some("b")).overlaps(&range("b", Some("c"))));
        assert!(!Footprint::Nothing.overlaps(&All));
        assert!(All.overlaps(&Key(k("x"))));
        assert!(!Keys(vec![k("a"), k("b")]).overlaps(&Keys(vec![k("c")])));
    }
}
