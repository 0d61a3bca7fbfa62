//! The results table (Markdown), one block of rows per workload, each figure
//! followed by its ratio to the best engine on that workload.

use std::fmt::Write;

use crate::measure::Report;
use crate::settle::Settled;

/// Renders the reports as a Markdown table.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    out.push_str("| workload | engine | ops/s | p50 us | p99 us | p99.9 us | written MB (WA) | on disk MB (SA) | peak RSS MB | notes |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let mut workloads: Vec<&str> = reports.iter().map(|r| r.workload.as_str()).collect();
    workloads.dedup();
    for workload in workloads {
        let rows: Vec<&Report> = reports.iter().filter(|r| r.workload == workload).collect();
        let best = Best::of(&rows);
        for r in rows {
            let _ = writeln!(out, "{}", row(r, &best));
        }
    }
    out
}

/// The best value of each figure among the engines on one workload.
struct Best {
    ops: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    written: f64,
    used: f64,
    rss: f64,
}

impl Best {
    fn of(rows: &[&Report]) -> Best {
        let min =
            |f: &dyn Fn(&Report) -> f64| rows.iter().map(|r| f(r)).fold(f64::INFINITY, f64::min);
        Best {
            ops: rows.iter().map(|r| r.ops_per_sec).fold(0.0, f64::max),
            p50: min(&|r| r.p50_us),
            p99: min(&|r| r.p99_us),
            p999: min(&|r| r.p999_us),
            written: min(&|r| r.disk_bytes_written as f64),
            used: min(&|r| r.disk_bytes_used as f64),
            rss: min(&|r| r.peak_rss_bytes as f64),
        }
    }
}

fn row(r: &Report, best: &Best) -> String {
    const MB: f64 = 1e6;
    let written = r.disk_bytes_written as f64;
    let used = r.disk_bytes_used as f64;
    let wa = amplification(written, r.logical_bytes_written);
    let sa = amplification(used, r.logical_bytes_live);
    format!(
        "| {} | {} | {} | {} | {} | {} | {:.1}{} {} | {:.1}{} {} | {:.0} {} | {} |",
        r.workload,
        r.engine,
        with_ratio(r.ops_per_sec, best.ops, 0),
        with_ratio(r.p50_us, best.p50, 1),
        with_ratio(r.p99_us, best.p99, 1),
        with_ratio(r.p999_us, best.p999, 1),
        written / MB,
        wa,
        ratio(written, best.written),
        used / MB,
        sa,
        ratio(used, best.used),
        r.peak_rss_bytes as f64 / MB,
        ratio(r.peak_rss_bytes as f64, best.rss),
        notes(r),
    )
}

fn with_ratio(value: f64, best: f64, decimals: usize) -> String {
    format!("{value:.decimals$} {}", ratio(value, best))
}

fn ratio(value: f64, best: f64) -> String {
    if best > 0.0 {
        format!("({:.2}x)", value / best)
    } else {
        "(-)".to_string()
    }
}

fn amplification(disk: f64, logical: u64) -> String {
    if logical == 0 {
        String::new()
    } else {
        format!(" [{:.2}]", disk / logical as f64)
    }
}

fn notes(r: &Report) -> String {
    let mut notes = Vec::new();
    if r.workload.starts_with("read") || r.workload.starts_with("ycsb") {
        notes.push(format!("found {}", r.found));
    }
    if r.background_writes > 0 {
        notes.push(format!("bg writes {}", r.background_writes));
    }
    for (when, settled) in [("before", &r.settle_before), ("after", &r.settle_after)] {
        if let Some(note) = settle_note(when, settled) {
            notes.push(note);
        }
    }
    for (name, value) in &r.engine_stats {
        if matches!(
            name.as_str(),
            "writes_per_sync"
                | "wal_syncs"
                | "write_stalls"
                | "tables"
                | "l0_tables"
                | "live_segments"
                | "level_0_segments"
                | "scans_on_read_pool"
        ) && *value > 0
        {
            notes.push(format!("{name} {value}"));
        }
    }
    notes.join(", ")
}

/// "compacted 12 s, 340 MB after" if the wait for background work found
/// some (half a second longer than the quiet time alone, or a megabyte
/// written), and
/// "NOT settled" if it gave up at the deadline.
fn settle_note(when: &str, settled: &Settled) -> Option<String> {
    let busy = settled.seconds - crate::settle::QUIET.as_secs_f64();
    let worked = settled.bytes_written >= 1_000_000 || busy > 0.5;
    if settled.seconds == 0.0 || !worked {
        return None;
    }
    let unfinished = if settled.finished {
        ""
    } else {
        ", NOT settled"
    };
    Some(format!(
        "compacted {:.0} s, {:.0} MB {when}{unfinished}",
        busy.max(0.0),
        settled.bytes_written as f64 / 1e6
    ))
}
