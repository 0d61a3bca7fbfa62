//! `naivekv-check`: verifies a closed NaiveKV database, or repairs one that
//! open refuses. Argument parsing and printing only; the work is
//! `naive_kv::engine::{check_database, repair_database}`.
//!
//! Exit codes: 0 clean (or repaired), 1 problems found (or repair failed),
//! 2 bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use naive_kv::Options;
use naive_kv::engine::{
    CheckReport, LOST_DIRECTORY, RepairReport, check_database, repair_database,
};

/// Verifies every file of a closed NaiveKV database: every checksum, the
/// manifest against the segments, and the WALs against the manifest. Prints
/// one line per problem and a summary; exits 0 only when clean.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The database directory.
    directory: PathBuf,
    /// Rebuild the manifest from the readable segments and WALs, keeping the
    /// newest version of each key; unreadable files are moved to lost/.
    #[arg(long)]
    repair: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Err(problem) = looks_like_a_database(&args.directory) {
        eprintln!("{}: {problem}", args.directory.display());
        return ExitCode::from(1);
    }
    if args.repair {
        repair(&args.directory)
    } else {
        check(&args.directory)
    }
}

/// Refuses a path that is not a directory, or a directory with none of a
/// database's files (a mistyped path would otherwise check clean).
fn looks_like_a_database(directory: &std::path::Path) -> Result<(), String> {
    let names: Vec<String> = match std::fs::read_dir(directory) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) if directory.exists() => return Err("not a directory".into()),
        Err(_) => return Err("no such directory".into()),
    };
    let ours =
        |name: &String| name == "MANIFEST" || name.ends_with(".sst") || name.ends_with(".wal");
    if names.iter().any(ours) {
        Ok(())
    } else {
        Err("not a NaiveKV database: no MANIFEST, segment (.sst) or WAL (.wal) in it".into())
    }
}

fn check(directory: &std::path::Path) -> ExitCode {
    let options = Options::new(directory);
    match check_database(options.fs.as_ref(), directory) {
        Ok(report) => {
            print_check(&report);
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("naivekv-check: {error}");
            ExitCode::from(1)
        }
    }
}

fn print_check(report: &CheckReport) {
    for finding in &report.problems {
        println!("problem: {}: {}", finding.file, finding.detail);
    }
    for finding in &report.notes {
        println!("note: {}: {}", finding.file, finding.detail);
    }
    println!(
        "checked {} segment(s) ({} entries) and {} WAL(s): {} problem(s), {} note(s)",
        report.segments_checked,
        report.entries_checked,
        report.wals_checked,
        report.problems.len(),
        report.notes.len()
    );
    if !report.is_clean() {
        println!("to rebuild the database from what is readable: naivekv-check --repair DIR");
    }
}

fn repair(directory: &std::path::Path) -> ExitCode {
    match repair_database(&Options::new(directory)) {
        Ok(report) => {
            print_repair(&report);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("naivekv-check --repair: {error}");
            ExitCode::from(1)
        }
    }
}

fn print_repair(report: &RepairReport) {
    for (file, why) in &report.lost {
        println!("moved to {LOST_DIRECTORY}/: {file}: {why}");
    }
    for (file, entries) in &report.missing {
        println!(
            "missing: {file}: named by the old MANIFEST ({entries} entries) but not in the \
             directory; its writes are lost unless a WAL still held them"
        );
    }
    if let Some((closed_at, reached)) = report.acknowledged_lost {
        println!(
            "lost: the database was closed cleanly with writes up to sequence {closed_at}, but \
             the files kept hold writes only up to {reached}: up to {} acknowledged write(s) \
             are gone (a WAL was cut, emptied or removed after the close)",
            closed_at - reached
        );
    }
    println!(
        "repaired: kept {} segment(s), {} entries of damaged segments and {} WAL record(s); \
         {} keys in {} new segment(s); {} file(s) moved to {LOST_DIRECTORY}/; {} segment(s) \
         missing",
        report.segments_kept,
        report.entries_salvaged,
        report.wal_records_kept,
        report.keys,
        report.segments_written,
        report.lost.len(),
        report.missing.len()
    );
}
