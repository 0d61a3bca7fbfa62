//! Redis's `INFO commandstats` and `INFO errorstats`: per served command the
//! calls, the microseconds spent, the calls refused before running
//! (`rejected_calls`: wrong arity) and those that answered an error
//! (`failed_calls`); per error prefix (`ERR`, `WRONGTYPE` ...) how many
//! errors were answered. Lock-free counters shared by every RESP connection
//! of a server, indexed like [`table::COMMANDS`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::commands::table;

/// One command's tallies.
#[derive(Debug, Default)]
struct Calls {
    calls: AtomicU64,
    micros: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// The error prefixes counted one by one; any other counts as `ERR`.
const ERROR_PREFIXES: &[&str] = &[
    "ERR",
    "WRONGTYPE",
    "EXECABORT",
    "NOAUTH",
    "WRONGPASS",
    "NOPROTO",
    "LOADING",
    "BUSY",
    "NOSCRIPT",
    "NOPERM",
];

/// The server's command and error tallies. See the module doc.
#[derive(Debug)]
pub struct CommandStats {
    commands: Vec<Calls>,
    errors: Vec<AtomicU64>,
}

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            commands: table::COMMANDS.iter().map(|_| Calls::default()).collect(),
            errors: ERROR_PREFIXES.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl CommandStats {
    /// Command `index` ran for `elapsed`; `error` is the error it answered.
    pub fn record(&self, index: usize, elapsed: Duration, error: Option<&str>) {
        let Some(calls) = self.commands.get(index) else {
            return;
        };
        add(&calls.calls, 1);
        add(
            &calls.micros,
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
        if let Some(error) = error {
            add(&calls.failed, 1);
            self.record_error(error);
        }
    }

    /// Command `index` was refused before it ran (wrong arity).
    pub fn record_rejected(&self, index: usize, error: &str) {
        if let Some(calls) = self.commands.get(index) {
            add(&calls.rejected, 1);
        }
        self.record_error(error);
    }

    /// An error was answered (also for unknown commands, which have no
    /// command entry).
    pub fn record_error(&self, error: &str) {
        let prefix = error.split(' ').next().unwrap_or_default();
        let slot = ERROR_PREFIXES
            .iter()
            .position(|p| *p == prefix)
            .unwrap_or(0);
        if let Some(counter) = self.errors.get(slot) {
            add(counter, 1);
        }
    }

    /// Every call counted so far (`total_commands_processed`).
    pub fn total_calls(&self) -> u64 {
        self.commands
            .iter()
            .map(|c| c.calls.load(Ordering::Relaxed) + c.rejected.load(Ordering::Relaxed))
            .sum()
    }

    /// Every error answered so far (`total_error_replies`).
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// `CONFIG RESETSTAT`: every tally back to zero.
    pub fn reset(&self) {
        for calls in &self.commands {
            for counter in [&calls.calls, &calls.micros, &calls.rejected, &calls.failed] {
                counter.store(0, Ordering::Relaxed);
            }
        }
        for counter in &self.errors {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// The `# Commandstats` section's lines, for commands called at least
    /// once.
    pub fn render_commands(&self, out: &mut String) {
        for (spec, calls) in table::COMMANDS.iter().zip(&self.commands) {
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let (n, micros) = (load(&calls.calls), load(&calls.micros));
            let (rejected, failed) = (load(&calls.rejected), load(&calls.failed));
            if n + rejected == 0 {
                continue;
            }
            let per_call = if n == 0 {
                0.0
            } else {
                micros as f64 / n as f64
            };
            let _ = write!(
                out,
                "cmdstat_{}:calls={n},usec={micros},usec_per_call={per_call:.2},\
                 rejected_calls={rejected},failed_calls={failed}\r\n",
                spec.name
            );
        }
    }

    /// The `# Errorstats` section's lines.
    pub fn render_errors(&self, out: &mut String) {
        for (prefix, count) in ERROR_PREFIXES.iter().zip(&self.errors) {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let _ = write!(out, "errorstat_{prefix}:count={count}\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str) -> usize {
        table::COMMANDS.iter().position(|s| s.name == name).unwrap()
    }

    #[test]
    fn calls_failures_and_rejections_are_counted_per_command() {
        let stats = CommandStats::default();
        stats.record(index("get"), Duration::from_micros(10), None);
        stats.record(index("get"), Duration::from_micros(30), None);
        stats.record(
            index("incr"),
            Duration::from_micros(5),
            Some("ERR not an integer"),
        );
        stats.record_rejected(index("set"), "ERR wrong number of arguments");
        stats.record_error("WRONGTYPE Operation against a key");
        let mut text = String::new();
        stats.render_commands(&mut text);
        assert!(text.contains("cmdstat_get:calls=2,usec=40,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\n"), "{text}");
        assert!(
            text.contains(
                "cmdstat_incr:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "cmdstat_set:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
            ),
            "{text}"
        );
        assert!(!text.contains("cmdstat_del"));
        let mut errors = String::new();
        stats.render_errors(&mut errors);
        assert_eq!(
            errors,
            "errorstat_ERR:count=2\r\nerrorstat_WRONGTYPE:count=1\r\n"
        );
        assert_eq!(stats.total_calls(), 4);
        stats.reset();
        assert_eq!(stats.total_calls(), 0);
        assert_eq!(stats.total_errors(), 0);
    }
}
