//! A sweep over data sizes (`--sizes 200k,2M,10M`, or just `--num`): for
//! each size and engine, one child loads the database once; each workload
//! then runs in its own child on a copy of that loaded directory (a fill
//! workload on an empty one), so every workload starts from the same state
//! whatever ran before it. Results go to the Markdown tables (one per size)
//! and, with `--out`, to a CSV file and SVG charts (see `chart`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::args::{Args, EngineKind};
use crate::measure::Report;
use crate::parent::run_child;
use crate::workload::BenchResult;

/// One engine's result on one workload at one data size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizedReport {
    /// Keys loaded (or written, for a fill) at this size.
    pub keys: u64,
    pub report: Report,
}

/// Parses a key count: digits with an optional `k` (thousand) or `M`
/// (million) suffix, e.g. `200k`, `2M`, `10000`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, scale) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 1_000),
        Some((at, 'm' | 'M')) => (&text[..at], 1_000_000),
        _ => (text, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a key count like 200k, 2M or 10000"))?;
    n.checked_mul(scale)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?}: key count out of range"))
}

/// A key count as the sweep's labels write it (`200k`, `2M`, `1500`).
pub fn size_label(keys: u64) -> String {
    if keys >= 1_000_000 && keys.is_multiple_of(1_000_000) {
        format!("{}M", keys / 1_000_000)
    } else if keys >= 1_000 && keys.is_multiple_of(1_000) {
        format!("{}k", keys / 1_000)
    } else {
        keys.to_string()
    }
}

/// Runs every workload at every size on every engine.
pub fn run(args: &Args) -> BenchResult<Vec<SizedReport>> {
    let sizes = if args.sizes.is_empty() {
        vec![args.num]
    } else {
        args.sizes.clone()
    };
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("naive_kv_bench"));
    let mut results = Vec::new();
    for &keys in &sizes {
        let mut sized = args.clone();
        sized.num = keys;
        for &engine in &args.engines {
            for report in run_engine(&sized, engine, &base)? {
                results.push(SizedReport { keys, report });
            }
        }
    }
    Ok(results)
}

/// One engine at one size: load once, then each workload on a copy.
fn run_engine(args: &Args, engine: EngineKind, base: &Path) -> BenchResult<Vec<Report>> {
    let label = format!("{}-{}", engine.name(), size_label(args.num));
    let loaded = base.join(format!("{label}-loaded"));
    let first_loaded = args.workloads.iter().find(|w| w.needs_prefill());
    if let Some(&workload) = first_loaded {
        fresh_dir(&loaded)?;
        eprintln!("{label}: loading {} keys", args.num);
        run_child(args, (engine, None), workload, &loaded, true)?;
    }
    let mut reports = Vec::new();
    for &workload in &args.workloads {
        let dir = base.join(format!("{label}-{}", workload.name()));
        fresh_dir(&dir)?;
        if workload.needs_prefill() {
            copy_dir(&loaded, &dir)?;
        }
        eprintln!("{label} {}: running", workload.name());
        let report = run_child(args, (engine, None), workload, &dir, false)?;
        eprintln!(
            "{label} {}: {:.0} ops/s, p99 {:.1} us",
            workload.name(),
            report.ops_per_sec,
            report.p99_us
        );
        reports.push(report);
        std::fs::remove_dir_all(&dir)?;
    }
    if loaded.exists() {
        std::fs::remove_dir_all(&loaded)?;
    }
    Ok(reports)
}

fn fresh_dir(dir: &Path) -> BenchResult<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Copies the files under `from` into `to` (which exists), recursively.
fn copy_dir(from: &Path, to: &Path) -> BenchResult<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The reports of one size, grouped by workload (the table puts each
/// workload's engines side by side), in run order within a workload.
pub fn at_size(results: &[SizedReport], keys: u64) -> Vec<Report> {
    let sized: Vec<&SizedReport> = results.iter().filter(|r| r.keys == keys).collect();
    let mut reports = Vec::new();
    for workload in workloads_of(results) {
        reports.extend(
            sized
                .iter()
                .filter(|r| r.report.workload == workload)
                .map(|r| r.report.clone()),
        );
    }
    reports
}

/// The results as CSV, one row per size, workload and engine.
pub fn csv(results: &[SizedReport]) -> String {
    let mut out = String::from(
        "keys,workload,engine,threads,ops,ops_per_sec,p50_us,p99_us,p999_us,\
         written_mb,on_disk_mb,peak_rss_mb,found\n",
    );
    for SizedReport { keys, report: r } in results {
        let _ = writeln!(
            out,
            "{keys},{},{},{},{},{:.0},{:.1},{:.1},{:.1},{:.1},{:.1},{:.0},{}",
            r.workload,
            r.engine,
            r.threads,
            r.ops,
            r.ops_per_sec,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.disk_bytes_written as f64 / 1e6,
            r.disk_bytes_used as f64 / 1e6,
            r.peak_rss_bytes as f64 / 1e6,
            r.found,
        );
    }
    out
}

/// Writes `<name>.csv` and the charts into `out`; returns the files written.
pub fn write_outputs(results: &[SizedReport], out: &Path, name: &str) -> BenchResult<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let csv_path = out.join(format!("{name}.csv"));
    std::fs::write(&csv_path, csv(results))?;
    let mut written = vec![csv_path];
    written.extend(crate::chart::draw_all(results, out, name)?);
    Ok(written)
}

/// True if the run goes through the sweep rather than `parent::run_all`:
/// sizes were given, charts asked for, or a YCSB workload chosen (loaded
/// once, run on copies).
pub fn wanted(args: &Args) -> bool {
    !args.sizes.is_empty() || args.out.is_some() || args.workloads.iter().any(|w| w.is_ycsb())
}

/// The workloads of a sweep, in the order they first appear.
pub fn workloads_of(results: &[SizedReport]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in results {
        if !names.contains(&r.report.workload) {
            names.push(r.report.workload.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("200k"), Ok(200_000));
        assert_eq!(parse_size("2M"), Ok(2_000_000));
        assert_eq!(parse_size("10m"), Ok(10_000_000));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert!(parse_size("2G").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("k").is_err());
    }

    #[test]
    fn labels_round_trip() {
        for keys in [200_000u64, 2_000_000, 10_000_000, 1500, 2_500_000] {
            assert_eq!(parse_size(&size_label(keys)), Ok(keys));
        }
    }

    #[test]
    fn csv_has_a_row_per_result() {
        let report = Report {
            engine: "fjall".into(),
            workload: "ycsb-a".into(),
            ops_per_sec: 1234.4,
            p99_us: 12.34,
            ..Report::default()
        };
        let results = vec![
            SizedReport {
                keys: 200_000,
                report: report.clone(),
            },
            SizedReport {
                keys: 2_000_000,
                report,
            },
        ];
        let text = csv(&results);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("200000,ycsb-a,fjall,0,0,1234,0.0,12.3,"));
        assert!(lines[2].starts_with("2000000,ycsb-a,"));
    }

    #[test]
    fn copy_dir_copies_nested_files() {
        let base = std::env::temp_dir().join(format!("naive_kv_bench_copy_{}", std::process::id()));
        let (from, to) = (base.join("from"), base.join("to"));
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("a"), b"one").unwrap();
        std::fs::write(from.join("sub/b"), b"two").unwrap();
        fresh_dir(&to).unwrap();
        copy_dir(&from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("a")).unwrap(), b"one");
        assert_eq!(std::fs::read(to.join("sub/b")).unwrap(), b"two");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
