//! Per-protocol request statistics for `/metrics`: open connections, and
//! for each command that reaches the engine a count and a latency histogram
//! (from dispatch to the reply being ready), in lock-free counters that
//! every connection of the listener shares.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (`+Inf` follows).
pub const BUCKET_BOUNDS_MICROS: [u64; 10] =
    [25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000];

/// One command's counters.
#[derive(Debug, Default)]
struct CommandStats {
    /// `buckets[i]`: requests that took at most `BUCKET_BOUNDS_MICROS[i]`
    /// (not cumulative; the last one is past every bound).
    buckets: [AtomicU64; BUCKET_BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

/// The statistics of one listener.
#[derive(Debug)]
pub struct RequestStats {
    /// `native` or `resp`: the `protocol` label.
    protocol: &'static str,
    /// Command names, indexed by what the protocol's `command_index` says.
    names: &'static [&'static str],
    commands: Vec<CommandStats>,
    connections: AtomicU64,
    /// Wake-ups of closed connections (`add_wakeups`).
    wakeups: AtomicU64,
}

impl RequestStats {
    /// Counters for `names` on the listener of `protocol`.
    pub fn new(protocol: &'static str, names: &'static [&'static str]) -> Self {
        RequestStats {
            protocol,
            names,
            commands: names.iter().map(|_| CommandStats::default()).collect(),
            connections: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
        }
    }

    /// Records one request of command `index` that took `elapsed`.
    pub fn record(&self, index: usize, elapsed: Duration) {
        let Some(command) = self.commands.get(index) else {
            return;
        };
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(BUCKET_BOUNDS_MICROS.len());
        if let Some(slot) = command.buckets.get(bucket) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        command.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// A connection opened (`true`) or closed (`false`).
    pub fn connection(&self, opened: bool) {
        if opened {
            self.connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A connection ended, having woken `count` times to read, answer or
    /// write (added once per connection, not per wake-up: a shared counter
    /// touched per request would cost the workers a cache line each time).
    pub fn add_wakeups(&self, count: u64) {
        self.wakeups.fetch_add(count, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests of command `index` so far.
    pub fn count(&self, index: usize) -> u64 {
        self.commands.get(index).map_or(0, |c| {
            c.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
        })
    }

    /// Appends the Prometheus text for this listener's samples (the
    /// `# HELP`/`# TYPE` lines are [`render_headers`]'s).
    pub fn render_samples(&self, out: &mut String) {
        let protocol = self.protocol;
        let open = self.connections.load(Ordering::Relaxed);
        let _ = writeln!(out, "naivekv_connections{{protocol=\"{protocol}\"}} {open}");
        let wakeups = self.wakeups.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "naivekv_connection_wakeups_total{{protocol=\"{protocol}\"}} {wakeups}"
        );
        for (name, command) in self.names.iter().zip(&self.commands) {
            let labels = format!("protocol=\"{protocol}\",command=\"{name}\"");
            let mut cumulative = 0;
            for (i, bucket) in command.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKET_BOUNDS_MICROS
                    .get(i)
                    .map_or("+Inf".to_string(), |b| format!("{}", *b as f64 / 1e6));
                let _ = writeln!(
                    out,
                    "naivekv_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = command.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "naivekv_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "naivekv_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
    }
}

/// The `# HELP` and `# TYPE` lines of the metrics [`RequestStats`] renders.
pub fn render_headers(out: &mut String) {
    out.push_str("# HELP naivekv_connections Connections open, by protocol.\n");
    out.push_str("# TYPE naivekv_connections gauge\n");
    out.push_str(
        "# HELP naivekv_connection_wakeups_total Times closed connections woke to read, \
         answer or write, by protocol (counted as each connection closes); per request, \
         1 for an unpipelined request answered at once, 2 for one that waits for the engine.\n",
    );
    out.push_str("# TYPE naivekv_connection_wakeups_total counter\n");
    out.push_str(
        "# HELP naivekv_request_duration_seconds Engine requests by protocol and command: \
         time from dispatch to reply.\n",
    );
    out.push_str("# TYPE naivekv_request_duration_seconds histogram\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_cumulative_buckets() {
        let stats = RequestStats::new("resp", &["get", "set"]);
        stats.record(0, Duration::from_micros(30));
        stats.record(0, Duration::from_micros(30));
        stats.record(1, Duration::from_secs(2));
        stats.record(9, Duration::from_micros(1));
        stats.connection(true);
        stats.add_wakeups(3);
        stats.add_wakeups(4);
        assert_eq!((stats.count(0), stats.count(1)), (2, 1));
        let mut out = String::new();
        stats.render_samples(&mut out);
        assert!(
            out.contains("naivekv_connections{protocol=\"resp\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("naivekv_connection_wakeups_total{protocol=\"resp\"} 7"),
            "{out}"
        );
        let get = "protocol=\"resp\",command=\"get\"";
        assert!(
            out.contains(&format!("_bucket{{{get},le=\"0.000025\"}} 0")),
            "{out}"
        );
        assert!(
            out.contains(&format!("_bucket{{{get},le=\"0.00005\"}} 2")),
            "{out}"
        );
        assert!(out.contains(&format!("_count{{{get}}} 2")), "{out}");
        let set = "protocol=\"resp\",command=\"set\"";
        assert!(
            out.contains(&format!("_bucket{{{set},le=\"0.25\"}} 0")),
            "{out}"
        );
        assert!(
            out.contains(&format!("_bucket{{{set},le=\"+Inf\"}} 1")),
            "{out}"
        );
    }
}
