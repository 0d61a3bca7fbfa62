//! Waiting for an engine's background work (flushes and compactions) to
//! finish, so that no measured phase runs while an engine is still paying
//! for an earlier one.
//!
//! Every engine is treated alike: the child polls whether the engine is idle
//! every [`POLL`] and calls it settled once it has been idle for [`QUIET`]
//! without a break (or gives up at `--settle-secs`, and says so). What "idle"
//! means is each engine's own answer (`BlockingEngine::idle`, and for NaiveKV
//! `engines::naive`): NaiveKV reports its compaction debt, fjall only how many
//! flushes are queued and compactions are running. The wait runs three times:
//! after a load (so the loaded copy every workload starts from owes nothing
//! its engine would do on its own), before a measured phase (a reopened
//! database may schedule work), and after it (a fill's write amplification
//! then includes the compaction it left behind).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often the engine is asked whether it is idle.
pub const POLL: Duration = Duration::from_millis(100);

/// How long the engine must stay idle to count as settled: fjall starts its
/// next compaction from a queue after the last one ends, so one idle reading
/// is not enough.
pub const QUIET: Duration = Duration::from_secs(2);

/// What one wait for background work took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Settled {
    /// From the first poll until idle for `QUIET` (the quiet time included),
    /// or until the deadline.
    pub seconds: f64,
    /// `write_bytes` of /proc/self/io during the wait.
    pub bytes_written: u64,
    /// False if the deadline passed with the engine still busy.
    pub finished: bool,
}

/// The state of one wait: feed it one idle reading per poll.
#[derive(Debug)]
pub struct Watch {
    start: Instant,
    deadline: Duration,
    idle_since: Option<Instant>,
    written_before: u64,
}

impl Watch {
    /// Starts waiting, for at most `deadline`.
    pub fn start(deadline: Duration) -> Watch {
        Watch {
            start: Instant::now(),
            deadline,
            idle_since: None,
            written_before: crate::measure::process_write_bytes(),
        }
    }

    /// Takes one reading; `Some` once the wait is over.
    pub fn observe(&mut self, idle: bool) -> Option<Settled> {
        let now = Instant::now();
        self.idle_since = match (idle, self.idle_since) {
            (false, _) => None,
            (true, None) => Some(now),
            (true, since) => since,
        };
        let quiet = self
            .idle_since
            .is_some_and(|since| now.duration_since(since) >= QUIET);
        let late = now.duration_since(self.start) >= self.deadline;
        (quiet || late).then(|| Settled {
            seconds: now.duration_since(self.start).as_secs_f64(),
            bytes_written: crate::measure::process_write_bytes()
                .saturating_sub(self.written_before),
            finished: quiet,
        })
    }
}

/// Polls `idle` on this thread until the engine is settled (see the module
/// docs). A zero `deadline` returns at once, unsettled unless idle.
pub fn wait(
    deadline: Duration,
    mut idle: impl FnMut() -> crate::workload::BenchResult<bool>,
) -> crate::workload::BenchResult<Settled> {
    if deadline.is_zero() {
        return Ok(Settled::default());
    }
    let mut watch = Watch::start(deadline);
    loop {
        if let Some(settled) = watch.observe(idle()?) {
            return Ok(settled);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_only_after_a_quiet_stretch() {
        let mut watch = Watch::start(Duration::from_secs(60));
        assert_eq!(watch.observe(true), None, "one idle reading is not enough");
        watch.idle_since = watch.idle_since.map(|t| t - QUIET);
        let settled = watch.observe(true).expect("idle for QUIET");
        assert!(settled.finished);
    }

    #[test]
    fn a_busy_reading_restarts_the_quiet_stretch() {
        let mut watch = Watch::start(Duration::from_secs(60));
        watch.observe(true);
        watch.idle_since = watch.idle_since.map(|t| t - QUIET);
        assert_eq!(watch.observe(false), None);
        assert_eq!(watch.observe(true), None, "quiet time starts again");
    }

    #[test]
    fn gives_up_at_the_deadline_and_says_so() {
        let mut watch = Watch::start(Duration::ZERO);
        let settled = watch.observe(false).expect("deadline passed");
        assert!(!settled.finished);
    }
}
