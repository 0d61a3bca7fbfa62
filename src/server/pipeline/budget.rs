//! The server-wide byte budget: what every connection's unanswered
//! requests and unsent replies hold, together, in one atomic counter.
//!
//! Each connection adds its own bytes (the same ones its per-connection
//! budget counts) and takes them back as they drain; no lock, no message.
//! It reports them rounded up to [`GRANULE`] bytes, so that a pipeline of
//! small requests touches the shared counter when the connection starts and
//! stops being busy, not at every request (an atomic add on a cache line
//! two worker threads share costs about as much as the rest of the
//! server's work on a small request). The counter therefore overstates
//! what is held by less than one granule per busy connection.
//! While the total is at the cap (`--max-server-reply-bytes`) a connection
//! reads no request and starts no read, except that a connection's own
//! replies kept behind one of its held reads never block that read (they
//! cannot drain before it). Connections blocked only by the server-wide
//! cap look again every [`RECHECK_INTERVAL`] (nothing wakes them: another
//! connection's bytes drain on another thread).
//!
//! The cap is checked before a request is read and before a read is
//! started, with the reply's size not yet known: replies of reads already
//! started still arrive. docs/PROTOCOL.md ("Limits") gives the worst case.
//!
//! A request still being received counts too, once it holds more than
//! [`UNCHARGED_PARTIAL_BYTES`] (so small requests, the fast path, never
//! touch the counter for it): its connection then asks for
//! [`PARTIAL_STEP_BYTES`] more at a time ([`ServerReplyBudget::try_reserve`])
//! and reads no further byte until it gets them. A request in progress may
//! only take the counter to half the cap (a connection alone on the server
//! may always take what its request needs), so requests being received
//! never stop the others' reads, which stop only at the full cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Default cap of all connections' unanswered requests and unsent replies
/// together (`--max-server-reply-bytes`): 1 GiB.
pub const DEFAULT_MAX_SERVER_REPLY_BYTES: usize = 1 << 30;
/// The unit connections report their bytes in.
pub const GRANULE: usize = 16 << 10;

/// `bytes` rounded up to whole granules: what a connection holding them
/// reports.
pub fn granules(bytes: usize) -> usize {
    bytes.div_ceil(GRANULE).saturating_mul(GRANULE)
}

/// Bytes a request still being received may hold before they count against
/// the server-wide budget: more than any request before authentication
/// (64 KiB and its framing), so that no unauthenticated connection is ever
/// charged for one.
pub const UNCHARGED_PARTIAL_BYTES: usize = 128 << 10;
/// Past [`UNCHARGED_PARTIAL_BYTES`], the bytes a request being received
/// asks the budget for at a time (an atomic update every this many bytes).
pub const PARTIAL_STEP_BYTES: usize = 1 << 20;

/// How often a connection blocked only by the server-wide cap looks again.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(5);

/// The bytes all connections of a server hold, against a cap; shared by
/// both listeners.
#[derive(Debug)]
pub struct ServerReplyBudget {
    held: AtomicUsize,
    max: usize,
}

impl Default for ServerReplyBudget {
    fn default() -> Self {
        ServerReplyBudget::new(DEFAULT_MAX_SERVER_REPLY_BYTES)
    }
}

impl ServerReplyBudget {
    /// An empty budget of `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        ServerReplyBudget {
            held: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes held now by all connections, as each last reported them.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Moves a connection's share from `was` to `now` bytes.
    pub(super) fn settle(&self, was: usize, now: usize) {
        if now > was {
            self.held.fetch_add(now - was, Ordering::Relaxed);
        } else if was > now {
            self.held.fetch_sub(was - now, Ordering::Relaxed);
        }
    }

    /// Moves a connection's share from `was` to `now` bytes, to hold more
    /// of a request it is receiving, if what all connections hold then is
    /// at most half the cap, or if no other connection holds anything.
    /// False (and nothing moved) if not.
    pub(super) fn try_reserve(&self, was: usize, now: usize) -> bool {
        let line = self.max / 2;
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                let others = held.saturating_sub(was);
                let total = others.saturating_add(now);
                (others == 0 || total <= line).then_some(total)
            })
            .is_ok()
    }

    /// True if bytes `own` added to what the others hold (`charged` is the
    /// caller's reported share) reach the cap.
    pub(super) fn full_with(&self, charged: usize, own: usize) -> bool {
        self.held().saturating_sub(charged).saturating_add(own) >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_reported_in_whole_granules() {
        assert_eq!(granules(0), 0);
        assert_eq!(granules(1), GRANULE);
        assert_eq!(granules(GRANULE), GRANULE);
        assert_eq!(granules(GRANULE + 1), 2 * GRANULE);
    }

    #[test]
    fn shares_add_up_and_release() {
        let budget = ServerReplyBudget::new(100);
        budget.settle(0, 60);
        budget.settle(0, 30);
        assert_eq!(budget.held(), 90);
        // The first connection, at 60, with 10 more of its own: full.
        assert!(budget.full_with(60, 70));
        assert!(!budget.full_with(60, 69));
        budget.settle(60, 0);
        assert_eq!(budget.held(), 30);
        assert!(!budget.full_with(0, 69));
        assert!(budget.full_with(0, 70));
    }

    #[test]
    fn requests_being_received_take_at_most_half_the_cap() {
        let budget = ServerReplyBudget::new(100);
        // Alone, a connection gets what its request needs.
        assert!(budget.try_reserve(0, 80));
        assert_eq!(budget.held(), 80);
        // With others holding bytes, only up to half the cap.
        assert!(!budget.try_reserve(0, 10));
        budget.settle(80, 20);
        assert!(budget.try_reserve(0, 30));
        assert!(!budget.try_reserve(30, 31));
        assert_eq!(budget.held(), 50);
        assert!(budget.try_reserve(30, 10));
        assert_eq!(budget.held(), 30);
    }
}
