//! The parent process: for each workload and engine, a fresh directory, a
//! child that loads it (if the workload reads or rewrites), a child that
//! runs the workload, and its JSON report collected.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
        for &engine in &args.engines {
            let dir = base.join(format!("{}-{}", engine.name(), workload.name()));
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
                run_child(args, engine, workload, &dir, true)?;
            }
            eprintln!("{} {}: running", engine.name(), workload.name());
            let report = run_child(args, engine, workload, &dir, false)?;
            eprintln!(
                "{} {}: {:.0} ops/s, p99 {:.1} us",
                engine.name(),
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

pub fn run_child(
    args: &Args,
    engine: EngineKind,
    workload: Workload,
    dir: &Path,
    prefill: bool,
) -> BenchResult<Report> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--engine", engine.name(), "--workload", workload.name()])
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
        .arg("--dir")
        .arg(PathBuf::from(dir));
    if let Some(distribution) = args.distribution {
        command.args(["--distribution", distribution.name()]);
    }
    if let Some(ops) = args.ops {
        command.args(["--ops", &ops.to_string()]);
    }
    if prefill {
        command.arg("--prefill");
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
