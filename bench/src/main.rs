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
//! - [`measure`]: histograms, /proc readings, directory sizes, progress;
//!   [`settle`]: waiting for an engine's background compaction to finish.
//! - [`machine`]: the load average and one raw fdatasync, measured in the
//!   same run.
//! - [`table`]: the Markdown results table.
//! - [`ycsb`]: YCSB's core workloads A–F; [`zipf`]: its Zipfian request
//!   distributions.
//! - [`sweep`]: runs every workload at several data sizes (each loaded once
//!   per engine) and writes CSV; [`chart`]: its SVG charts.

mod args;
mod chart;
mod child;
mod driver;
mod engines;
mod keys;
mod machine;
mod measure;
mod parent;
mod settle;
mod sweep;
mod table;
mod values;
mod workload;
mod ycsb;
mod zipf;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use args::Args;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(record) = args.record {
        args.value_size = record.value_size();
    }
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
    if let Some(json) = &args.charts_from {
        let results: Vec<sweep::SizedReport> = serde_json::from_slice(&std::fs::read(json)?)?;
        let out = args.out.clone().unwrap_or_else(|| ".".into());
        let name = args.out_name.as_deref().unwrap_or("sweep");
        for path in sweep::write_outputs(&results, &out, name)? {
            eprintln!("wrote {}", path.display());
        }
        return Ok(());
    }
    let load_before = machine::load_average();
    if sweep::wanted(args) {
        return run_sweep(args, &load_before);
    }
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

/// A sweep (`--sizes`, `--out` or YCSB workloads): one table per size, then
/// the CSV and charts.
fn run_sweep(args: &Args, load_before: &str) -> workload::BenchResult<()> {
    let results = sweep::run(args)?;
    let mut sizes: Vec<u64> = results.iter().map(|r| r.keys).collect();
    sizes.dedup();
    let load_after = machine::load_average();
    for &keys in &sizes {
        let distribution = match args.distribution {
            _ if !args.workloads.iter().any(|w| w.is_ycsb()) => String::new(),
            Some(d) => format!(", distribution {}", d.name()),
            None => ", each workload's own distribution".to_string(),
        };
        println!(
            "\n### {} keys, value {} bytes, threads {}, sync {:?}{distribution}\n",
            sweep::size_label(keys),
            args.value_size,
            args.threads,
            args.sync,
        );
        print!("{}", table::render(&sweep::at_size(&results, keys)));
    }
    eprintln!("load average: {load_before} before, {load_after} after");
    if let Some(out) = &args.out {
        let name = args.out_name.as_deref().unwrap_or("sweep");
        for path in sweep::write_outputs(&results, out, name)? {
            eprintln!("wrote {}", path.display());
        }
    }
    match args.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            println!("{}", serde_json::to_string_pretty(&results)?)
        }
        Some(path) => std::fs::File::create(path)?
            .write_all(serde_json::to_string_pretty(&results)?.as_bytes())?,
        None => {}
    }
    Ok(())
}
