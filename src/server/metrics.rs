//! The Prometheus endpoint (`run_server --metrics-port`): a tiny HTTP/1.x
//! responder that answers `GET /metrics` with the engine's statistics
//! ([`Db::stats`]) and two process gauges in the Prometheus text format
//! (version 0.0.4). Every metric is listed in `docs/OPERATING.md`.
//!
//! One request per connection, answered and closed; a request must arrive
//! within [`REQUEST_TIMEOUT`] and fit in [`MAX_REQUEST_BYTES`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::request_stats::{RequestStats, render_headers};
use crate::Db;

/// How long a scraper may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head read; longer ones get 400.
pub const MAX_REQUEST_BYTES: usize = 8 << 10;

/// Prefix of every metric name.
const PREFIX: &str = "naivekv_";

/// What a metric is to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Each engine statistic exported: its `Db::stats` name, kind and help.
/// Statistics not listed here are exported as `untyped`.
const METRICS: &[(&str, Kind, &str)] = &[
    (
        "writes",
        Kind::Counter,
        "Mutations applied (batch members included).",
    ),
    (
        "write_requests",
        Kind::Counter,
        "Write requests (a batch counts once).",
    ),
    ("wal_syncs", Kind::Counter, "fdatasync calls on the WAL."),
    (
        "wal_synced_requests",
        Kind::Counter,
        "Write requests made durable by WAL syncs.",
    ),
    ("wal_bytes", Kind::Counter, "Bytes appended to WALs."),
    ("flushes", Kind::Counter, "Memtables flushed to segments."),
    ("flush_bytes", Kind::Counter, "Bytes written by flushes."),
    ("compactions", Kind::Counter, "Compactions finished."),
    (
        "compaction_bytes",
        Kind::Counter,
        "Bytes written by compactions.",
    ),
    (
        "write_stalls",
        Kind::Counter,
        "Times writers were held back by flushing or compaction.",
    ),
    (
        "write_stall_micros",
        Kind::Counter,
        "Microseconds writers spent held back (a stall going on counts up to now).",
    ),
    ("gets", Kind::Counter, "Point reads."),
    (
        "bloom_filter_hits",
        Kind::Counter,
        "Segment lookups a bloom filter answered without a read.",
    ),
    (
        "bloom_filter_false_positives",
        Kind::Counter,
        "Lookups a bloom filter let through that found nothing.",
    ),
    ("scans", Kind::Counter, "Scans."),
    (
        "scans_on_read_pool",
        Kind::Counter,
        "Short scans read again on the read pool: a block was not in memory.",
    ),
    (
        "background_errors",
        Kind::Counter,
        "Failed flushes or compactions (retried later).",
    ),
    (
        "block_cache_hits",
        Kind::Counter,
        "Point lookups served from the block cache.",
    ),
    (
        "block_cache_misses",
        Kind::Counter,
        "Point lookups that read their block.",
    ),
    (
        "writes_per_sync",
        Kind::Gauge,
        "Write requests per WAL sync since start (group commit).",
    ),
    (
        "memtable_bytes",
        Kind::Gauge,
        "Bytes held by the memtables.",
    ),
    (
        "frozen_memtables",
        Kind::Gauge,
        "Frozen memtables waiting to be flushed.",
    ),
    (
        "live_segments",
        Kind::Gauge,
        "Segments (SSTables) in the current set.",
    ),
    ("segment_bytes", Kind::Gauge, "Bytes of all live segments."),
    (
        "bytes_on_disk",
        Kind::Gauge,
        "Bytes of live segments and WALs.",
    ),
    (
        "last_sequence",
        Kind::Gauge,
        "Sequence number of the last write.",
    ),
    (
        "block_cache_bytes",
        Kind::Gauge,
        "Bytes held by the block cache.",
    ),
    (
        "compaction_debt_bytes",
        Kind::Gauge,
        "Bytes compaction must still move before no level is over its trigger.",
    ),
    (
        "compaction_waiting_for_space",
        Kind::Gauge,
        "1 while compaction waits for free disk space (writes fail while level 0 is full).",
    ),
    (
        "compactions_refused_for_space",
        Kind::Counter,
        "Compactions not started for lack of free disk space.",
    ),
    (
        "write_conflicts",
        Kind::Counter,
        "Conditional writes refused because a key they read had changed.",
    ),
];

/// Serves scrapes from `listener` until the task is dropped (with the
/// actix system). Must run inside a tokio runtime.
/// `requests` are the listeners' connection and per-command statistics.
pub async fn serve(listener: TcpListener, db: Db, requests: Vec<Arc<RequestStats>>) {
    let requests: Arc<[Arc<RequestStats>]> = requests.into();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::task::spawn_local(answer(stream, db.clone(), requests.clone()));
            }
            Err(e) => {
                log::warn!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request from `stream` and answers it.
async fn answer(mut stream: TcpStream, db: Db, requests: Arc<[Arc<RequestStats>]>) {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    let response = match head {
        Ok(Ok(head)) => respond(&head, &db, &requests).await,
        Ok(Err(e)) => return log::debug!("metrics request not read: {e}"),
        Err(_) => return log::debug!("metrics request not sent within {REQUEST_TIMEOUT:?}"),
    };
    if let Err(e) = stream.write_all(&response).await {
        log::debug!("metrics response not sent: {e}");
    }
    let _ = stream.shutdown().await;
}

/// The request head (up to the blank line), at most [`MAX_REQUEST_BYTES`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_BYTES {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buffer.get(..n).unwrap_or_default());
    }
    Ok(head)
}

/// The whole HTTP response to a request head.
async fn respond(head: &[u8], db: &Db, requests: &[Arc<RequestStats>]) -> Vec<u8> {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => match db.stats().await {
            Ok(stats) => {
                let mut body = render(&stats.counters, &process_gauges());
                if !requests.is_empty() {
                    render_headers(&mut body);
                    requests.iter().for_each(|r| r.render_samples(&mut body));
                }
                http(200, "OK", &body)
            }
            Err(e) => http(503, "Service Unavailable", &format!("{e}\n")),
        },
        ("GET", _) => http(404, "Not Found", "try /metrics\n"),
        _ if head.len() >= MAX_REQUEST_BYTES || method.is_empty() => {
            http(400, "Bad Request", "bad request\n")
        }
        _ => http(405, "Method Not Allowed", "only GET /metrics\n"),
    }
}

fn http(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The exposition text for engine `stats` and `process` gauges (name,
/// help, value).
pub fn render(stats: &BTreeMap<String, u64>, process: &[(&str, &str, u64)]) -> String {
    let mut out = String::new();
    let version = env!("CARGO_PKG_VERSION");
    family(&mut out, "build_info", "gauge", "The NaiveKV version.");
    let _ = writeln!(out, "{PREFIX}build_info{{version=\"{version}\"}} 1");
    let mut levels = Vec::new();
    for (name, value) in stats {
        if let Some(level) = level_of(name) {
            levels.push((level, *value));
            continue;
        }
        let known = METRICS.iter().find(|(stat, _, _)| stat == name);
        let (metric, kind, help) = match known {
            Some((_, Kind::Counter, help)) => (format!("{name}_total"), "counter", *help),
            Some((_, Kind::Gauge, help)) => (name.clone(), "gauge", *help),
            None => (name.clone(), "untyped", "An engine statistic."),
        };
        family(&mut out, &metric, kind, help);
        let _ = writeln!(out, "{PREFIX}{metric} {value}");
    }
    if !levels.is_empty() {
        family(
            &mut out,
            "level_segments",
            "gauge",
            "Segments in each level.",
        );
        for (level, value) in levels {
            let _ = writeln!(out, "{PREFIX}level_segments{{level=\"{level}\"}} {value}");
        }
    }
    for (name, help, value) in process {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    out
}

fn family(out: &mut String, metric: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP {PREFIX}{metric} {help}\n# TYPE {PREFIX}{metric} {kind}"
    );
}

/// `N` of a `level_N_segments` statistic.
fn level_of(name: &str) -> Option<&str> {
    let level = name.strip_prefix("level_")?.strip_suffix("_segments")?;
    (!level.is_empty() && level.bytes().all(|b| b.is_ascii_digit())).then_some(level)
}

/// Resident memory and open file descriptors (connections among them),
/// read from `/proc`; those that cannot be read are left out.
fn process_gauges() -> Vec<(&'static str, &'static str, u64)> {
    let mut gauges = Vec::new();
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
    if let Some(kib) = rss_kib {
        let help = "Resident memory size in bytes.";
        gauges.push(("process_resident_memory_bytes", help, kib * 1024));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let help = "Open file descriptors (files and connections).";
        gauges.push(("process_open_fds", help, fds.count() as u64));
    }
    gauges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_levels_and_unknown_statistics() {
        let stats: BTreeMap<String, u64> = [
            ("writes", 7),
            ("memtable_bytes", 4096),
            ("level_0_segments", 2),
            ("level_1_segments", 5),
            ("something_new", 3),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        let text = render(&stats, &[("process_open_fds", "Open fds.", 9)]);
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# TYPE naivekv_writes_total counter",
            "naivekv_writes_total 7",
            "# TYPE naivekv_memtable_bytes gauge",
            "naivekv_memtable_bytes 4096",
            "naivekv_level_segments{level=\"0\"} 2",
            "naivekv_level_segments{level=\"1\"} 5",
            "# TYPE naivekv_something_new untyped",
            "naivekv_something_new 3",
            "# TYPE process_open_fds gauge",
            "process_open_fds 9",
        ] {
            assert!(lines.contains(&want), "{want} missing from:\n{text}");
        }
        let families = lines
            .iter()
            .filter(|l| l.starts_with("# TYPE naivekv_level_segments"));
        assert_eq!(families.count(), 1);
    }

    #[test]
    fn level_names() {
        assert_eq!(level_of("level_3_segments"), Some("3"));
        assert_eq!(level_of("level__segments"), None);
        assert_eq!(level_of("level_x_segments"), None);
        assert_eq!(level_of("writes"), None);
    }
}
