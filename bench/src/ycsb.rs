//! YCSB's core workloads A–F (Cooper et al., "Benchmarking Cloud Serving
//! Systems with YCSB", SoCC 2010, and the `workloads/workload[a-f]` files of
//! YCSB), drawn on the bench's own keys.
//!
//! | workload | operations | request distribution |
//! |---|---|---|
//! | A | 50% read, 50% update | zipfian |
//! | B | 95% read, 5% update | zipfian |
//! | C | 100% read | zipfian |
//! | D | 95% read, 5% insert | latest |
//! | E | 95% scan (length uniform in 1..=100), 5% insert | zipfian |
//! | F | 50% read, 50% read-modify-write | zipfian |
//!
//! How this differs from YCSB, on purpose:
//! - Keys are the bench's own (`keys::present_key`: 16 decimal digits of
//!   `2 * id`), not `user` + FNV hash of the record number: the database is
//!   loaded in key order, as for every other workload of the bench. The
//!   scrambled Zipfian still spreads the popular records over the key space
//!   (it hashes the rank), but inserted records (D, E) take the ids after
//!   the loaded ones, so they sort at the end of the key space (YCSB's
//!   `insertorder=ordered`), not scattered (its default `hashed`).
//! - A record is one value (`--value-size`, or 1000 bytes with `--record
//!   1kb`) instead of 10 fields of 100 bytes, and an update writes the whole
//!   value (YCSB's `writeallfields=true`); a read reads the whole record
//!   (YCSB's default `readallfields=true`).
//! - Operation `i` draws its random numbers from a generator seeded by `i`,
//!   so every engine gets the same sequence of operations whatever thread
//!   takes it; only the keys that depend on how many inserts have completed
//!   (D's latest, the range of E) may differ between threads' interleavings.
//! - As in YCSB (its acknowledged counter), reads and scans choose among the
//!   loaded records and the inserts that have *completed* with every earlier
//!   insert, never an insert still in flight: a read of a record not yet
//!   written would be a miss that flatters or penalises one engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::args::Workload;
use crate::keys::{KEY_BYTES, Rng, present_key};
use crate::workload::Op;
use crate::zipf::{ScrambledZipfian, THETA, Zipfian};

/// YCSB's request distributions: which record an operation touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Scrambled Zipfian, θ = 0.99.
    Zipfian,
    /// Zipfian over the records by recency: the newest insert most popular.
    Latest,
    /// Every record equally likely.
    Uniform,
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Zipfian => "zipfian",
            Distribution::Latest => "latest",
            Distribution::Uniform => "uniform",
        }
    }
}

/// Longest scan of workload E (YCSB's `maxscanlength`).
pub const MAX_SCAN_LENGTH: u64 = 100;

/// A core workload: proportions of each operation (summing to 1) and the
/// default request distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    pub read: f64,
    pub update: f64,
    pub insert: f64,
    pub scan: f64,
    pub read_modify_write: f64,
    pub distribution: Distribution,
}

impl Mix {
    /// The mix of a YCSB workload, `None` for the db_bench ones.
    pub fn of(workload: Workload) -> Option<Mix> {
        let none = Mix {
            read: 0.0,
            update: 0.0,
            insert: 0.0,
            scan: 0.0,
            read_modify_write: 0.0,
            distribution: Distribution::Zipfian,
        };
        Some(match workload {
            Workload::YcsbA => Mix {
                read: 0.5,
                update: 0.5,
                ..none
            },
            Workload::YcsbB => Mix {
                read: 0.95,
                update: 0.05,
                ..none
            },
            Workload::YcsbC => Mix { read: 1.0, ..none },
            Workload::YcsbD => Mix {
                read: 0.95,
                insert: 0.05,
                distribution: Distribution::Latest,
                ..none
            },
            Workload::YcsbE => Mix {
                scan: 0.95,
                insert: 0.05,
                ..none
            },
            Workload::YcsbF => Mix {
                read: 0.5,
                read_modify_write: 0.5,
                ..none
            },
            _ => return None,
        })
    }

    /// Fraction of operations that write a record.
    pub fn write_fraction(&self) -> f64 {
        self.update + self.insert + self.read_modify_write
    }
}

/// The inserts of one run, shared by its threads: numbers handed out, and
/// how many have completed in order (every insert below that number done).
#[derive(Debug)]
pub struct Inserts {
    taken: AtomicU64,
    acknowledged: AtomicU64,
    /// `done[n % len]`: insert `n` completed and is not yet acknowledged. A
    /// slot is reused by insert `n + len`: the window is far larger than the
    /// inserts ever in flight at once.
    done: Box<[AtomicBool]>,
}

impl Default for Inserts {
    fn default() -> Self {
        Inserts {
            taken: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            done: (0..1 << 16).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

impl Inserts {
    /// The number of the next insert.
    fn take(&self) -> u64 {
        self.taken.fetch_add(1, Ordering::Relaxed)
    }

    /// Inserts `0..n` have all completed.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Acquire)
    }

    /// Insert `n` has completed.
    pub fn acknowledge(&self, n: u64) {
        let slot = |n: u64| &self.done[(n % self.done.len() as u64) as usize];
        slot(n).store(true, Ordering::Release);
        loop {
            let next = self.acknowledged.load(Ordering::Acquire);
            if !slot(next).load(Ordering::Acquire) {
                return;
            }
            let advance = self.acknowledged.compare_exchange(
                next,
                next + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if advance.is_ok() {
                slot(next).store(false, Ordering::Release);
            }
        }
    }
}

/// Draws the operations of one YCSB run for one driver thread.
#[derive(Debug, Clone)]
pub struct Chooser {
    mix: Mix,
    distribution: Distribution,
    /// Records loaded before the run.
    loaded: u64,
    /// Scrambled Zipfian over the loaded records plus the inserts expected
    /// (twice the expected count, as YCSB sizes it); draws beyond the
    /// records inserted so far are drawn again.
    zipfian: ScrambledZipfian,
    /// Ranks by recency for "latest", grown as records are inserted.
    latest: Zipfian,
    inserts: Arc<Inserts>,
}

impl Chooser {
    /// For `workload` (a YCSB one) over `loaded` records and `ops`
    /// operations; `distribution` overrides the workload's own.
    pub fn new(
        mix: Mix,
        distribution: Option<Distribution>,
        loaded: u64,
        ops: u64,
        inserts: Arc<Inserts>,
    ) -> Chooser {
        let loaded = loaded.max(1);
        let expected_inserts = (ops as f64 * mix.insert * 2.0) as u64;
        Chooser {
            mix,
            distribution: distribution.unwrap_or(mix.distribution),
            loaded,
            zipfian: ScrambledZipfian::new(loaded + expected_inserts),
            latest: Zipfian::new(loaded, THETA),
            inserts,
        }
    }

    /// Operation number `i` of the run.
    pub fn op(&mut self, i: u64) -> Op {
        let mut rng = Rng::new(i);
        let pick = unit(&mut rng);
        let mix = self.mix;
        if pick < mix.read {
            Op::Get(self.existing_key(&mut rng))
        } else if pick < mix.read + mix.update {
            Op::Put(self.existing_key(&mut rng), i)
        } else if pick < mix.read + mix.update + mix.scan {
            let length = 1 + rng.below(MAX_SCAN_LENGTH);
            Op::Scan(self.existing_key(&mut rng), length as usize)
        } else if pick < mix.read + mix.update + mix.scan + mix.read_modify_write {
            Op::ReadModifyWrite(self.existing_key(&mut rng), i)
        } else {
            let n = self.inserts.take();
            Op::Insert(present_key(self.loaded + n), i, n)
        }
    }

    /// A record loaded or inserted before this operation.
    fn existing_key(&mut self, rng: &mut Rng) -> [u8; KEY_BYTES] {
        present_key(self.existing_id(rng))
    }

    fn existing_id(&mut self, rng: &mut Rng) -> u64 {
        let records = self.loaded + self.inserts.acknowledged();
        match self.distribution {
            Distribution::Uniform => rng.below(records),
            Distribution::Zipfian => loop {
                let id = self.zipfian.record(unit(rng));
                if id < records {
                    return id;
                }
            },
            Distribution::Latest => {
                self.latest.grow_to(records);
                records - 1 - self.latest.rank(unit(rng))
            }
        }
    }
}

/// Uniform in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chooser(workload: Workload, distribution: Option<Distribution>) -> Chooser {
        let mix = Mix::of(workload).unwrap();
        Chooser::new(
            mix,
            distribution,
            10_000,
            20_000,
            Arc::new(Inserts::default()),
        )
    }

    fn id_of(key: &[u8; KEY_BYTES]) -> u64 {
        std::str::from_utf8(key).unwrap().parse::<u64>().unwrap() / 2
    }

    #[derive(Default, Debug)]
    struct Counts {
        gets: u64,
        puts: u64,
        scans: u64,
        rmws: u64,
    }

    fn count(workload: Workload, ops: u64) -> Counts {
        let mut c = chooser(workload, None);
        let mut counts = Counts::default();
        for i in 0..ops {
            match c.op(i) {
                Op::Get(_) => counts.gets += 1,
                Op::Put(..) => counts.puts += 1,
                Op::Insert(_, _, n) => {
                    counts.puts += 1;
                    c.inserts.acknowledge(n);
                }
                Op::Scan(_, length) => {
                    assert!((1..=MAX_SCAN_LENGTH as usize).contains(&length));
                    counts.scans += 1;
                }
                Op::ReadModifyWrite(..) => counts.rmws += 1,
                Op::Delete(_) => panic!("YCSB never deletes"),
            }
        }
        counts
    }

    fn near(got: u64, expected: f64) -> bool {
        (got as f64 - expected).abs() < 0.02 * 20_000.0
    }

    #[test]
    fn each_workload_has_its_operation_mix() {
        let a = count(Workload::YcsbA, 20_000);
        assert!(near(a.gets, 10_000.0) && near(a.puts, 10_000.0), "{a:?}");
        let b = count(Workload::YcsbB, 20_000);
        assert!(near(b.gets, 19_000.0) && near(b.puts, 1_000.0), "{b:?}");
        let c = count(Workload::YcsbC, 20_000);
        assert_eq!(c.gets, 20_000);
        let d = count(Workload::YcsbD, 20_000);
        assert!(near(d.gets, 19_000.0) && near(d.puts, 1_000.0), "{d:?}");
        let e = count(Workload::YcsbE, 20_000);
        assert!(near(e.scans, 19_000.0) && near(e.puts, 1_000.0), "{e:?}");
        let f = count(Workload::YcsbF, 20_000);
        assert!(near(f.gets, 10_000.0) && near(f.rmws, 10_000.0), "{f:?}");
    }

    #[test]
    fn operation_i_is_the_same_whoever_draws_it() {
        let (mut one, mut two) = (
            chooser(Workload::YcsbA, None),
            chooser(Workload::YcsbA, None),
        );
        let forward: Vec<String> = (0..100).map(|i| format!("{:?}", one.op(i))).collect();
        let backward: Vec<String> = (0..100).rev().map(|i| format!("{:?}", two.op(i))).collect();
        assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
    }

    #[test]
    fn inserts_take_new_ids_and_latest_reads_favour_them() {
        let mut d = chooser(Workload::YcsbD, None);
        let (mut inserted, mut recent_reads, mut reads) = (Vec::new(), 0u64, 0u64);
        for i in 0..20_000 {
            match d.op(i) {
                Op::Insert(key, _, n) => {
                    inserted.push(id_of(&key));
                    d.inserts.acknowledge(n);
                }
                Op::Get(key) => {
                    let id = id_of(&key);
                    let records = 10_000 + inserted.len() as u64;
                    assert!(id < records, "read of {id}, not yet inserted");
                    reads += 1;
                    recent_reads += u64::from(id + 100 >= records);
                }
                other => panic!("D does not {other:?}"),
            }
        }
        let expected: Vec<u64> = (10_000..10_000 + inserted.len() as u64).collect();
        assert_eq!(inserted, expected);
        // Under Zipf(0.99) the 100 newest of ~10,500 records take about half
        // of the reads; uniform would give them 1%.
        assert!(recent_reads * 3 > reads, "{recent_reads} of {reads}");
    }

    #[test]
    fn reads_see_only_inserts_completed_in_order() {
        let inserts = Arc::new(Inserts::default());
        let mix = Mix::of(Workload::YcsbD).unwrap();
        let mut d = Chooser::new(mix, None, 100, 1000, inserts.clone());
        let mut taken = Vec::new();
        for i in 0.. {
            if let Op::Insert(_, _, n) = d.op(i) {
                taken.push(n);
                if taken.len() == 3 {
                    break;
                }
            }
        }
        assert_eq!(taken, [0, 1, 2]);
        inserts.acknowledge(2);
        inserts.acknowledge(1);
        assert_eq!(inserts.acknowledged(), 0, "insert 0 is still in flight");
        for i in 0..2000 {
            if let Op::Get(key) = d.op(10_000 + i) {
                assert!(id_of(&key) < 100, "read of an unacknowledged insert");
            }
        }
        inserts.acknowledge(0);
        assert_eq!(inserts.acknowledged(), 3);
    }

    #[test]
    fn zipfian_is_skewed_and_uniform_is_not() {
        let hottest_share = |distribution| {
            let mut c = chooser(Workload::YcsbC, Some(distribution));
            let mut counts = std::collections::HashMap::new();
            for i in 0..20_000 {
                if let Op::Get(key) = c.op(i) {
                    *counts.entry(id_of(&key)).or_insert(0u64) += 1;
                }
            }
            counts.values().copied().max().unwrap_or(0)
        };
        assert!(hottest_share(Distribution::Zipfian) > 500);
        assert!(hottest_share(Distribution::Uniform) < 20);
    }
}
