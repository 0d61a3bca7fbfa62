//! At most one log line a second for errors that every request can hit.
//!
//! While the disk is full every write is refused, and logging each refusal
//! wrote tens of thousands of lines a second. A [`LogLimiter`] lets one
//! line through per second and counts the ones it held back, so the next
//! line can say how many there were. Lock-free: two atomics, shared by
//! every connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The least time between two lines, in milliseconds.
const INTERVAL_MS: u64 = 1000;

/// See the module doc.
#[derive(Debug, Default)]
pub struct LogLimiter {
    /// When the next line may be written (ms since the Unix epoch).
    next_ms: AtomicU64,
    /// Lines held back since the last one written.
    held_back: AtomicU64,
}

impl LogLimiter {
    /// A limiter that lets the first line through.
    pub const fn new() -> Self {
        LogLimiter {
            next_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be
    /// written now; `None` (and counted) otherwise.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ms())
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        // A clock stepped back by more than the interval lets a line through
        // rather than holding every line back until it catches up.
        let stepped_back = now_ms.saturating_add(INTERVAL_MS) < next;
        let won = (now_ms >= next || stepped_back)
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + INTERVAL_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !won {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

/// `" (N more like it since the last such line)"`, or nothing when none.
pub fn held_back_suffix(held_back: u64) -> String {
    match held_back {
        0 => String::new(),
        n => format!(" ({n} more like it since the last such line)"),
    }
}

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_and_the_rest_are_counted() {
        let limiter = LogLimiter::new();
        assert_eq!(limiter.admit_at(10_000), Some(0));
        assert_eq!(limiter.admit_at(10_001), None);
        assert_eq!(limiter.admit_at(10_999), None);
        assert_eq!(limiter.admit_at(11_000), Some(2));
        assert_eq!(limiter.admit_at(11_500), None);
        assert_eq!(limiter.admit_at(13_000), Some(1));
        assert_eq!(limiter.admit_at(13_000), None);
        // The clock stepped back 10 s: not silent for 10 s.
        assert_eq!(limiter.admit_at(3_000), Some(1));
    }

    #[test]
    fn the_suffix_says_how_many_were_held_back() {
        assert_eq!(held_back_suffix(0), "");
        assert!(held_back_suffix(7).contains("7 more"));
    }
}
