//! Command-line flags, shared by the parent (which runs every engine and
//! workload) and the child processes it starts (one engine, one workload).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use naive_kv::options::Compression;
use serde::{Deserialize, Serialize};

use crate::values::ValueKind;

/// Runs db_bench-style workloads on NaiveKV, fjall and sled, each engine and
/// workload in its own child process, and prints one table.
#[derive(Debug, Clone, Parser)]
#[command(name = "naive_kv_bench")]
pub struct Args {
    /// Keys loaded or written per workload.
    #[arg(long, default_value_t = 1_000_000)]
    pub num: u64,
    /// Operations measured (default: --num). Fill workloads always write --num keys.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Value size in bytes (keys are 16 bytes).
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// What values are made of: random bytes or JSON-like text.
    #[arg(long, value_enum, default_value_t = ValueKind::Random)]
    pub value_kind: ValueKind,
    /// NaiveKV block compression settings to run, comma-separated (none,
    /// lz4, zstd, zstd:LEVEL): one NaiveKV row per setting. Default: the
    /// engine's default only.
    #[arg(long, value_delimiter = ',')]
    pub naive_compression: Vec<Compression>,
    /// Internal: the child's NaiveKV compression.
    #[arg(long, hide = true)]
    pub compression: Option<Compression>,
    /// OS threads issuing requests, for every engine: a fjall or sled thread
    /// has one request in flight, a NaiveKV thread --naive-in-flight.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Requests each NaiveKV thread keeps in flight (each thread runs its
    /// own actix system; more than 1 is what an async caller can do, which
    /// the blocking peers cannot). NaiveKV has --threads times this many
    /// requests in flight in all.
    #[arg(long, default_value_t = 1)]
    pub naive_in_flight: usize,
    /// Durability of each acknowledged write.
    #[arg(long, value_enum, default_value_t = SyncMode::None)]
    pub sync: SyncMode,
    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Workload::all())]
    pub workloads: Vec<Workload>,
    /// Engines to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = EngineKind::all())]
    pub engines: Vec<EngineKind>,
    /// Where the databases are created (each run gets a fresh subdirectory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also write the results as JSON to this file ("-": stdout, and the
    /// table goes to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Data sizes to sweep, in keys (e.g. `200k,2M,10M`): every workload at
    /// each size for every engine, each size loaded once per engine. Without
    /// it the sweep has one size, --num.
    #[arg(long, value_delimiter = ',', value_parser = crate::sweep::parse_size)]
    pub sizes: Vec<u64>,
    /// YCSB record size: `1kb` is a 1000-byte value (YCSB's 10 fields of 100
    /// bytes, as one value); sets --value-size.
    #[arg(long, value_enum)]
    pub record: Option<Record>,
    /// YCSB request distribution for every YCSB workload (default: each
    /// workload's own, latest for D and zipfian for the others).
    #[arg(long, value_enum)]
    pub distribution: Option<crate::ycsb::Distribution>,
    /// Directory where a sweep writes its CSV and SVG charts.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// File name prefix of the sweep's CSV and charts in --out.
    #[arg(long)]
    pub out_name: Option<String>,
    /// Runs nothing: redraws the CSV and charts in --out from the JSON a
    /// sweep wrote with --json.
    #[arg(long)]
    pub charts_from: Option<PathBuf>,
    /// Longest wait, in seconds, for an engine's background flushes and
    /// compactions to finish after a load, before a measured phase and after
    /// it (see `settle`); 0: do not wait.
    #[arg(long, default_value_t = 900)]
    pub settle_secs: u64,
    /// Load the database (before every workload but the fills) in the
    /// order fillrandom writes, not in key order: the loaded state is then
    /// what a random fill leaves, level-0 segments and all.
    #[arg(long)]
    pub load_random: bool,
    /// Internal: run one engine as a child process.
    #[arg(long, hide = true)]
    pub engine: Option<EngineKind>,
    /// Internal: the workload the child runs.
    #[arg(long, hide = true)]
    pub workload: Option<Workload>,
    /// Internal: the child only loads --num keys (not measured).
    #[arg(long, hide = true)]
    pub prefill: bool,
}

impl Args {
    /// Operations the measured phase performs.
    pub fn measured_ops(&self, workload: Workload) -> u64 {
        match workload {
            Workload::Fillseq | Workload::Fillrandom | Workload::Readseq => self.num,
            _ => self.ops.unwrap_or(self.num),
        }
    }
}

/// YCSB record sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Record {
    /// One 1000-byte value (YCSB's default record is 10 fields of 100 bytes).
    #[value(name = "1kb")]
    OneKb,
}

impl Record {
    /// The value size of the record.
    pub fn value_size(self) -> usize {
        match self {
            Record::OneKb => 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum SyncMode {
    /// Every acknowledged write has been fdatasync'ed.
    Always,
    /// No fsync on the write path; the OS writes back when it likes.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// NaiveKV, requests from --threads OS threads (as for the peers).
    Naivekv,
    /// NaiveKV, --threads requests in flight on the database's own actix
    /// system (one thread, where the memtable actor runs).
    #[value(name = "naivekv-1sys")]
    #[serde(rename = "naivekv-1sys")]
    Naivekv1sys,
    Fjall,
    Sled,
}

impl EngineKind {
    pub fn all() -> Vec<EngineKind> {
        vec![
            EngineKind::Naivekv,
            EngineKind::Naivekv1sys,
            EngineKind::Fjall,
            EngineKind::Sled,
        ]
    }
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Naivekv => "naivekv",
            EngineKind::Naivekv1sys => "naivekv-1sys",
            EngineKind::Fjall => "fjall",
            EngineKind::Sled => "sled",
        }
    }
}

/// The workloads, after RocksDB's db_bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// --num puts in ascending key order into an empty database.
    Fillseq,
    /// --num puts of every key once, in random order, into an empty database.
    Fillrandom,
    /// Puts of uniformly random existing keys.
    Overwrite,
    /// Gets of uniformly random existing keys (all hits).
    Readrandom,
    /// Gets of keys that sort between existing ones (all misses).
    Readmissing,
    /// One full forward scan, in pages of 1000 entries.
    Readseq,
    /// Random gets (from --threads threads) while one writer overwrites random keys.
    Readwhilewriting,
    /// Deletes of every key once, in random order.
    Deleterandom,
    /// YCSB A: 50% reads, 50% updates, zipfian.
    #[value(name = "ycsb-a")]
    #[serde(rename = "ycsb-a")]
    YcsbA,
    /// YCSB B: 95% reads, 5% updates, zipfian.
    #[value(name = "ycsb-b")]
    #[serde(rename = "ycsb-b")]
    YcsbB,
    /// YCSB C: reads only, zipfian.
    #[value(name = "ycsb-c")]
    #[serde(rename = "ycsb-c")]
    YcsbC,
    /// YCSB D: 95% reads of the latest records, 5% inserts.
    #[value(name = "ycsb-d")]
    #[serde(rename = "ycsb-d")]
    YcsbD,
    /// YCSB E: 95% short scans (1..=100 entries), 5% inserts, zipfian.
    #[value(name = "ycsb-e")]
    #[serde(rename = "ycsb-e")]
    YcsbE,
    /// YCSB F: 50% reads, 50% read-modify-writes, zipfian.
    #[value(name = "ycsb-f")]
    #[serde(rename = "ycsb-f")]
    YcsbF,
}

impl Workload {
    pub fn all() -> Vec<Workload> {
        vec![
            Workload::Fillseq,
            Workload::Fillrandom,
            Workload::Overwrite,
            Workload::Readrandom,
            Workload::Readmissing,
            Workload::Readseq,
            Workload::Readwhilewriting,
            Workload::Deleterandom,
        ]
    }
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fillseq => "fillseq",
            Workload::Fillrandom => "fillrandom",
            Workload::Overwrite => "overwrite",
            Workload::Readrandom => "readrandom",
            Workload::Readmissing => "readmissing",
            Workload::Readseq => "readseq",
            Workload::Readwhilewriting => "readwhilewriting",
            Workload::Deleterandom => "deleterandom",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbD => "ycsb-d",
            Workload::YcsbE => "ycsb-e",
            Workload::YcsbF => "ycsb-f",
        }
    }
    /// True for YCSB's core workloads.
    pub fn is_ycsb(self) -> bool {
        crate::ycsb::Mix::of(self).is_some()
    }
    /// True if the database is loaded (in another process) before the run.
    pub fn needs_prefill(self) -> bool {
        !matches!(self, Workload::Fillseq | Workload::Fillrandom)
    }
}
