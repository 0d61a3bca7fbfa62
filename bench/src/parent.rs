//! The parent process: for each workload and engine, a fresh directory, a
//! child that loads it (if the workload reads or rewrites), a child that
//! runs the workload, and its JSON report collected.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use naive_kv::options::Compression;

use crate::args::{Args, EngineKind, Workload};
use crate::measure::Report;
use crate::workload::BenchResult;

/// Runs every selected workload on every selected engine.
pub fn run_all(args: &Args) -> BenchResult<Vec<Report>> {
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("naive_kv_bench"));
    let mut reports = Vec::new();
    for &workload in &args.workloads {
        for (engine, compression) in runs(args) {
            let label = match compression {
                Some(c) => format!("{}+{c}", engine.name()),
                None => engine.name().to_string(),
            };
            let dir = base.join(format!("{}-{}", label.replace(':', "-"), workload.name()));
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::create_dir_all(&dir)?;
            if workload.needs_prefill() {
                eprintln!(
                    "{} {}: loading {} keys",
                    engine.name(),
                    workload.name(),
                    args.num
                );
                run_child(args, (engine, compression), workload, &dir, true)?;
            }
            eprintln!("{label} {}: running", workload.name());
            let report = run_child(args, (engine, compression), workload, &dir, false)?;
            eprintln!(
                "{label} {}: {:.0} ops/s, p99 {:.1} us",
                workload.name(),
                report.ops_per_sec,
                report.p99_us
            );
            reports.push(report);
            std::fs::remove_dir_all(&dir)?;
        }
    }
    Ok(reports)
}

/// Each engine once, NaiveKV once per `--naive-compression` setting.
fn runs(args: &Args) -> Vec<(EngineKind, Option<Compression>)> {
    let mut runs = Vec::new();
    for &engine in &args.engines {
        let naive = matches!(engine, EngineKind::Naivekv | EngineKind::Naivekv1sys);
        if naive && !args.naive_compression.is_empty() {
            runs.extend(args.naive_compression.iter().map(|c| (engine, Some(*c))));
        } else {
            runs.push((engine, None));
        }
    }
    runs
}

pub fn run_child(
    args: &Args,
    (engine, compression): (EngineKind, Option<Compression>),
    workload: Workload,
    dir: &Path,
    prefill: bool,
) -> BenchResult<Report> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--engine", engine.name(), "--workload", workload.name()])
        .args(["--value-kind", args.value_kind.name()])
        .args(["--num", &args.num.to_string()])
        .args(["--value-size", &args.value_size.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--naive-in-flight", &args.naive_in_flight.to_string()])
        .args([
            "--sync",
            if args.sync == crate::args::SyncMode::Always {
                "always"
            } else {
                "none"
            },
        ])
        .args(["--settle-secs", &args.settle_secs.to_string()])
        .arg("--dir")
        .arg(PathBuf::from(dir));
    if args.load_random {
        command.arg("--load-random");
    }
    if let Some(distribution) = args.distribution {
        command.args(["--distribution", distribution.name()]);
    }
    if let Some(ops) = args.ops {
        command.args(["--ops", &ops.to_string()]);
    }
    if prefill {
        command.arg("--prefill");
    }
    if let Some(compression) = compression {
        command.args(["--compression", &compression.to_string()]);
    }
    let output = command.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        return Err(format!(
            "{} {} child failed: {}",
            engine.name(),
            workload.name(),
            output.status
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
