//! What each workload does, as a stream of operations the driver's threads
//! draw from.

use crate::args::Workload;
use crate::keys::{KEY_BYTES, Permutation, Rng, missing_key, present_key};
use crate::values::ValueKind;
use crate::ycsb::{Distribution, Mix};

/// Errors from any engine, boxed: the benchmark only reports them.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
pub type BenchResult<T> = Result<T, BenchError>;

/// Entries per readseq page (and per prefill batch).
pub const PAGE_ENTRIES: usize = 1000;

/// One operation of a workload.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Put the key with value number `.1` (see `keys::Values::get`).
    Put([u8; KEY_BYTES], u64),
    Get([u8; KEY_BYTES]),
    Delete([u8; KEY_BYTES]),
    /// Put a new record with value number `.1`: YCSB insert number `.2`,
    /// acknowledged to the run's `ycsb::Inserts` once done.
    Insert([u8; KEY_BYTES], u64, u64),
    /// Read up to `.1` entries from the key on (YCSB E).
    Scan([u8; KEY_BYTES], usize),
    /// Get the key, then put it with value number `.1` (YCSB F); timed as one.
    ReadModifyWrite([u8; KEY_BYTES], u64),
}

/// The parameters of one measured run.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub workload: Workload,
    /// Size of the loaded key set.
    pub num: u64,
    /// Operations measured.
    pub ops: u64,
    /// Worker threads issuing requests.
    pub threads: usize,
    pub value_size: usize,
    /// YCSB request distribution overriding the workload's own.
    pub distribution: Option<Distribution>,
    pub value_kind: ValueKind,
}

impl Spec {
    /// Operation `i`; `rng` belongs to the caller's thread.
    pub fn op(&self, permutation: &Permutation, i: u64, rng: &mut Rng) -> Op {
        let num = self.num.max(1);
        match self.workload {
            Workload::Fillseq => Op::Put(present_key(i), i),
            Workload::Fillrandom => Op::Put(present_key(permutation.at(i)), i),
            Workload::Overwrite => Op::Put(present_key(rng.below(num)), i),
            Workload::Readrandom | Workload::Readwhilewriting | Workload::Readseq => {
                Op::Get(present_key(rng.below(num)))
            }
            Workload::Readmissing => Op::Get(missing_key(rng.below(num))),
            Workload::Deleterandom => Op::Delete(present_key(permutation.at(i))),
            // Drawn by `ycsb::Chooser` (see `driver::Ops`), which keeps the
            // state a YCSB run needs; a uniform read stands in here.
            Workload::YcsbA
            | Workload::YcsbB
            | Workload::YcsbC
            | Workload::YcsbD
            | Workload::YcsbE
            | Workload::YcsbF => Op::Get(present_key(rng.below(num))),
        }
    }

    /// The permutation fill/delete workloads walk.
    pub fn permutation(&self) -> Permutation {
        Permutation::new(self.num.max(1), 0xB5AD_4ECE_DA1C_E2A9)
    }

    /// Bytes of keys and values the workload asks to write (YCSB: the
    /// expected share of writing operations).
    pub fn logical_bytes_written(&self) -> u64 {
        let entry = (KEY_BYTES + self.value_size) as u64;
        if let Some(mix) = Mix::of(self.workload) {
            return (self.ops as f64 * mix.write_fraction()) as u64 * entry;
        }
        match self.workload {
            Workload::Fillseq | Workload::Fillrandom | Workload::Overwrite => self.ops * entry,
            Workload::Deleterandom => self.ops * KEY_BYTES as u64,
            _ => 0,
        }
    }

    /// Bytes of keys and values live once the workload is done.
    pub fn logical_bytes_live(&self) -> u64 {
        let entry = (KEY_BYTES + self.value_size) as u64;
        let inserted =
            Mix::of(self.workload).map_or(0, |mix| (self.ops as f64 * mix.insert) as u64);
        match self.workload {
            Workload::Deleterandom => 0,
            _ => (self.num + inserted) * entry,
        }
    }
}

/// Seed of the random stream of reader or writer number `worker`.
pub fn worker_rng(worker: usize) -> Rng {
    Rng::new(1 + worker as u64 * 0x1000_0001)
}
