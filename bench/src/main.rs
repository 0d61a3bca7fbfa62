//! naive_kv_bench: db_bench-style workloads on NaiveKV, fjall and sled.
//!
//! Module map:
//! - [`args`]: flags, engines, workloads.
//! - [`parent`]: runs each engine and workload in a child process of this
//!   same binary and collects the JSON each prints.
//! - [`child`]: one engine, one workload, in this process.
//! - [`workload`]: the operations of each workload; [`keys`]: keys, values,
//!   random numbers, permutations, all computed on the fly; [`values`]:
//!   random or JSON-like text values (`--value-kind`).
//! - [`driver`]: the threaded driver every engine runs under (`--threads` OS
//!   threads); [`engines`]: the three engines (NaiveKV with an actix system
//!   on each thread).
//! - [`measure`]: histograms, /proc readings, directory sizes, progress.
//! - [`machine`]: the load average and one raw fdatasync, measured in the
//!   same run.
//! - [`table`]: the Markdown results table.

mod args;
mod child;
mod driver;
mod engines;
mod keys;
mod machine;
mod measure;
mod parent;
mod table;
mod values;
mod workload;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("naive_kv_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> workload::BenchResult<()> {
    if let (Some(engine), Some(workload), Some(dir)) = (args.engine, args.workload, &args.dir) {
        let report = child::run(args, engine, workload, dir)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let load_before = machine::load_average();
    let reports = parent::run_all(args)?;
    let table = table::render(&reports);
    eprintln!(
        "num={} value_size={} value_kind={} threads={} naive_in_flight={} sync={:?}",
        args.num,
        args.value_size,
        args.value_kind.name(),
        args.threads,
        args.naive_in_flight,
        args.sync
    );
    eprintln!(
        "load average: {load_before} before, {} after",
        machine::load_average()
    );
    if args.sync == args::SyncMode::Always {
        let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        let (p50, p99) = machine::raw_fdatasync(&dir)?;
        eprintln!("raw 4 KiB append + fdatasync: p50 {p50:.0} us, p99 {p99:.0} us");
    }
    match args.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            eprint!("{table}");
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
        Some(path) => {
            print!("{table}");
            std::fs::File::create(path)?
                .write_all(serde_json::to_string_pretty(&reports)?.as_bytes())?;
        }
        None => print!("{table}"),
    }
    Ok(())
}
