//! Group-commit gathering: after a synced group, the next group waits a
//! little for the writers just answered.
//!
//! Under `SyncPolicy::Always` with `Options::inline_durable_writes`, the
//! actor appends and fdatasyncs each group on its own thread. Writes that
//! arrive during a sync form the next group, and it used to go as soon as
//! the sync returned: the writers of the group just answered had not had
//! time to send their next writes, so with many clients writing one request
//! at a time the groups alternated between two halves of them, each paying
//! its own fdatasync (about 14 writes per sync for 50 clients, where
//! redis-server, whose loop reads every ready client between two syncs,
//! gathers about 30). An fdatasync costs tens of microseconds of CPU besides
//! its wait, which on a machine the clients share is CPU they lack.
//!
//! So after a synced group of `g` writes made on other threads, found `w`
//! more waiting when its sync returned, the actor expects `g + w` writes
//! from other threads (its own thread's cannot come while it sleeps), and
//! holds the next group until that many are pending, until no write has
//! come for [`MAX_QUIET`], or for as long as the last sync took, whichever
//! comes first. Holding sleeps the actor's thread in short naps (it
//! already blocks for each sync in this mode; a nap of [`NAP`] lasts
//! longer by the kernel's timer slack, 50 us by default); spinning took the
//! CPU from the workers that were reading the very writes it waited for. A
//! single writer expects one write and is never held; writers that do not
//! come back soon cost the group the quiet time after the last arrival. An
//! own-thread write already queued when the sync returned (possible when
//! the group was written outside the intake, after a flush or a stall)
//! counts as expected but never arrives: that hold ends by the quiet time.
//! Under mixed loads (`server_load` with 50 % to 99 % gets, one request at
//! a time per connection) the hold moved neither throughput nor p50 beyond
//! the noise, and lowered p99.
//! Measured in docs/BENCHMARKS.md, session 31.

use std::time::{Duration, Instant};

/// The longest a group is held, whatever the last sync took: a sync that
/// stalled on the device must not make every later group wait as long.
const MAX_HOLD: Duration = Duration::from_millis(1);

/// A held group goes once no write has arrived for this long: the
/// writers that come back come in a stream (one every few microseconds
/// while the workers read them), and a writer whose next request is not a
/// write (or that thinks first) should not cost the others a whole sync.
const MAX_QUIET: Duration = Duration::from_micros(100);

/// One nap while holding: short against a sync (hundreds of
/// microseconds), so a group goes soon after its last writer arrives.
const NAP: Duration = Duration::from_micros(20);

/// The actor's gathering state. See the module doc.
#[derive(Debug, Default)]
pub struct Gather {
    /// Writes expected for the next group.
    expected: usize,
    /// Until when the next group may be held; `None` when it may not.
    until: Option<Instant>,
    /// While holding: when the number of pending writes last grew, and
    /// to what.
    last_arrival: Option<(Instant, usize)>,
    /// A group is being held.
    holding: bool,
    /// A hold has just ended: the actor must form the group.
    released: bool,
}

impl Gather {
    /// A group of `written` writes has been synced, which took `sync`;
    /// `waiting` writes arrived meanwhile.
    pub fn synced(&mut self, written: usize, waiting: usize, sync: Duration) {
        self.synced_at(written, waiting, sync, Instant::now());
    }

    fn synced_at(&mut self, written: usize, waiting: usize, sync: Duration, now: Instant) {
        self.expected = written.saturating_add(waiting);
        self.until = Some(now + sync.min(MAX_HOLD));
        self.last_arrival = None;
    }

    /// With `pending()` writes from other threads taken (counted only
    /// after a synced group), how long to nap before looking again; `None`
    /// once the group should go (or nothing is pending).
    pub fn hold(&mut self, pending: impl FnOnce() -> usize) -> Option<Duration> {
        self.until?;
        self.hold_at(pending(), Instant::now())
    }

    fn hold_at(&mut self, pending: usize, now: Instant) -> Option<Duration> {
        let until = self.until?;
        if pending == 0 {
            return None; // the hold starts with the first write
        }
        let quiet_since = match self.last_arrival {
            Some((at, seen)) if seen == pending => at,
            _ => {
                self.last_arrival = Some((now, pending));
                now
            }
        };
        if pending >= self.expected || now >= until || now - quiet_since >= MAX_QUIET {
            self.until = None;
            self.last_arrival = None;
            self.released = std::mem::take(&mut self.holding);
            return None;
        }
        self.holding = true;
        Some(NAP.min(until - now))
    }

    /// True once after a hold ended: the held writes are to be written.
    pub fn take_released(&mut self) -> bool {
        std::mem::take(&mut self.released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_sync(written: usize, waiting: usize, sync_us: u64) -> (Gather, Instant) {
        let (mut gather, now) = (Gather::default(), Instant::now());
        gather.synced_at(written, waiting, Duration::from_micros(sync_us), now);
        (gather, now)
    }

    #[test]
    fn nothing_is_held_before_a_synced_group() {
        let mut gather = Gather::default();
        assert_eq!(gather.hold(|| 1), None);
        assert!(!gather.take_released());
    }

    #[test]
    fn a_lone_writer_is_never_held() {
        let (mut gather, now) = after_sync(1, 0, 400);
        assert_eq!(gather.hold_at(1, now), None);
        assert!(!gather.take_released());
    }

    #[test]
    fn the_group_is_held_until_the_expected_writes_are_pending() {
        let (mut gather, now) = after_sync(30, 20, 400);
        assert_eq!(gather.hold_at(0, now), None, "nothing to hold yet");
        assert_eq!(gather.hold_at(20, now), Some(NAP));
        assert_eq!(gather.hold_at(49, now), Some(NAP));
        assert!(!gather.take_released());
        assert_eq!(gather.hold_at(50, now), None);
        assert!(gather.take_released());
        assert!(!gather.take_released(), "released once");
        assert_eq!(gather.hold_at(1, now), None, "one hold per synced group");
    }

    #[test]
    fn a_hold_lasts_at_most_as_long_as_the_last_sync() {
        let (mut gather, now) = after_sync(30, 0, 100);
        let nap = gather.hold_at(5, now + Duration::from_micros(90));
        assert!(
            nap.is_some_and(|nap| nap <= Duration::from_micros(10)),
            "{nap:?}"
        );
        assert_eq!(gather.hold_at(5, now + Duration::from_micros(101)), None);
        assert!(gather.take_released());
    }

    #[test]
    fn the_group_goes_once_writes_stop_coming() {
        let (mut gather, now) = after_sync(40, 0, 800);
        let at = |us| now + Duration::from_micros(us);
        assert!(gather.hold_at(3, at(10)).is_some());
        assert!(gather.hold_at(9, at(100)).is_some(), "still arriving");
        assert!(gather.hold_at(9, at(150)).is_some(), "quiet for 50 us");
        assert_eq!(gather.hold_at(9, at(200)), None, "quiet for 100 us");
        assert!(gather.take_released());
    }

    #[test]
    fn a_stalled_sync_holds_the_next_group_at_most_max_hold() {
        let (mut gather, now) = after_sync(30, 0, 50_000);
        assert!(gather.hold_at(5, now + MAX_HOLD / 2).is_some());
        assert_eq!(gather.hold_at(6, now + MAX_HOLD), None);
    }
}
