//! Power loss at any I/O step loses no acknowledged write.
//!
//! Each case runs a seeded random workload (puts, deletes, batches, bursts of
//! concurrent writes that share a group commit, flushes, compactions) on a
//! [`SimFs`] with sync=always and tiny memtables, segments and blocks, so that
//! a few hundred writes go through many flushes and compactions. The power is
//! cut at mutating I/O call number K (anywhere: in a WAL append, mid-flush,
//! mid-compaction, in the manifest swap, during the first open), the disk
//! keeps only what was durable (see `naive_kv::fs::sim`), and a new `Db`
//! opens the surviving state. It must open without error, and its contents
//! must equal the state after some prefix of the writes sent that includes
//! every acknowledged one: nothing acknowledged is lost, nothing unsent
//! appears, batches are all-or-nothing, and no deleted value comes back.
//!
//! The writes come from a task on the database's own actix system (durable
//! writes share the memtable actor's group commits) or, in the plain-thread
//! test, from an OS thread with no runtime (each durable write is appended
//! and synced by that thread).
//!
//! `NAIVEKV_LONG_TESTS=1` runs many more seeds and every step of each.
//! `NAIVEKV_SEED=s NAIVEKV_STEP=k` replays one case.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use naive_kv::fs::sim::SimFs;
use naive_kv::{Db, ScanRequest, WriteBatch};

type Mutation = (Bytes, Option<Bytes>);
type Model = BTreeMap<Bytes, Bytes>;

/// SplitMix64: small, seeded, good enough to pick workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One step of a workload.
#[derive(Debug, Clone)]
enum Action {
    /// Writes submitted together and then awaited (one group commit or a few).
    Writes(Vec<Vec<Mutation>>),
    Flush,
    Compact,
}

/// A random workload; every value written is unique, so a recovered value
/// names the write it came from.
fn workload(seed: u64, actions: usize) -> Vec<Action> {
    let mut rng = Rng(seed);
    let mut serial = 0u64;
    let mut mutation = |rng: &mut Rng| {
        serial += 1;
        let key = Bytes::from(format!("key{:03}", rng.below(60)));
        if rng.below(6) == 0 {
            return (key, None);
        }
        let pad = "x".repeat(rng.below(120) as usize);
        (key, Some(Bytes::from(format!("v{seed}-{serial}-{pad}"))))
    };
    (0..actions)
        .map(|_| match rng.below(100) {
            0..=1 => Action::Flush,
            2 => Action::Compact,
            3..=10 => {
                let burst = 2 + rng.below(6);
                Action::Writes((0..burst).map(|_| vec![mutation(&mut rng)]).collect())
            }
            11..=20 => {
                let len = 2 + rng.below(5);
                Action::Writes(vec![(0..len).map(|_| mutation(&mut rng)).collect()])
            }
            _ => Action::Writes(vec![vec![mutation(&mut rng)]]),
        })
        .collect()
}

/// What a run did before the power went.
#[derive(Debug, Default)]
struct Run {
    /// Every write request sent, in send order.
    sent: Vec<Vec<Mutation>>,
    /// How many of the first sent writes were acknowledged (a prefix: the
    /// WAL applies groups in order, so a later ack implies the earlier ones).
    acked: usize,
    /// Writes acknowledged after an earlier one failed (must not happen).
    acked_after_failure: usize,
    /// Mutating I/O calls made by the end of the workload.
    steps: u64,
}

fn db_dir() -> &'static Path {
    Path::new("/db")
}

fn options(fs: &SimFs) -> naive_kv::Options {
    let mut options = common::tiny_options(db_dir());
    options.fs = Arc::new(fs.clone());
    options
}

/// Where a workload's requests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// A task on the actix system that opened the database: durable writes
    /// go to the memtable actor and share its group commits.
    Task,
    /// A plain OS thread with no async runtime: each durable write is
    /// appended and synced by that thread itself (`memtable/direct.rs`).
    PlainThread,
}

/// Runs `actions` on a fresh Db over `fs`; stops a few actions after the
/// first failed write. The Db is dropped without closing, as in a crash.
fn run_workload(fs: &SimFs, actions: &[Action], driver: Driver) -> Run {
    let system = actix_rt::System::new();
    system.block_on(async {
        let Ok(db) = within(0, "open", Db::open(options(fs))).await else {
            return Run::default();
        };
        let mut run = match driver {
            Driver::Task => run_actions(&db, actions).await,
            Driver::PlainThread => {
                let (for_thread, actions) = (db.clone(), actions.to_vec());
                let thread = std::thread::spawn(move || {
                    common::block_on(run_actions(&for_thread, &actions))
                });
                let joined = actix_rt::task::spawn_blocking(move || thread.join());
                match tokio::time::timeout(std::time::Duration::from_secs(120), joined).await {
                    Ok(Ok(Ok(run))) => run,
                    Ok(Ok(Err(panic))) => std::panic::resume_unwind(panic),
                    Ok(Err(error)) => panic!("joining the workload thread: {error}"),
                    Err(_) => panic!(
                        "{}: the plain thread's workload hung",
                        CASE.with_borrow(Clone::clone)
                    ),
                }
            }
        };
        run.steps = fs.steps().unwrap_or(0);
        drop(db);
        run
    })
}

/// Performs `actions` in order (the writes of one action together).
async fn run_actions(db: &Db, actions: &[Action]) -> Run {
    let mut run = Run::default();
    let mut failed_at: Option<usize> = None;
    for (index, action) in actions.iter().enumerate() {
        if failed_at.is_some_and(|at| index > at + 3) {
            break;
        }
        trace(&format!("action {index}"));
        match action {
            Action::Flush => drop(within(index, "flush", db.flush()).await),
            Action::Compact => drop(within(index, "compact", db.compact()).await),
            Action::Writes(writes) => {
                let futures: Vec<_> = writes.iter().map(|w| submit(db, w)).collect();
                run.sent.extend(writes.iter().cloned());
                let all = within(index, "writes", futures_util::future::join_all(futures));
                for result in all.await {
                    match (result, failed_at) {
                        (Ok(()), None) => run.acked += 1,
                        (Ok(()), Some(_)) => run.acked_after_failure += 1,
                        (Err(error), _) => {
                            // The failed write itself, or a later one
                            // refused by the database it poisoned.
                            let io = match &error {
                                naive_kv::Error::Poisoned { cause } => cause.as_ref(),
                                other => other,
                            };
                            assert!(
                                matches!(io, naive_kv::Error::Io { .. }),
                                "a write failed with {error:?}, not Error::Io"
                            );
                            failed_at.get_or_insert(index);
                        }
                    }
                }
            }
        }
    }
    run
}

fn submit<'a>(
    db: &'a Db,
    mutations: &[Mutation],
) -> impl Future<Output = naive_kv::Result<()>> + use<'a> {
    let mut batch = WriteBatch::new();
    for (key, value) in mutations {
        match value {
            Some(value) => batch.put(key.clone(), value.clone()),
            None => batch.delete(key.clone()),
        };
    }
    db.write(batch)
}

/// Opens the surviving state and reads everything.
fn recover(fs: &SimFs) -> naive_kv::Result<Model> {
    actix_rt::System::new().block_on(async {
        let db = within(0, "reopen", Db::open(options(fs))).await?;
        let mut all = Model::new();
        let mut request = ScanRequest::all();
        loop {
            let page = within(0, "scan", db.scan(request.clone())).await?;
            all.extend(page.entries.iter().cloned());
            match page.continuation(false) {
                Some(next) => request.start = std::ops::Bound::Included(next),
                None => break,
            }
        }
        within(0, "put after recovery", db.put("after-recovery", "ok")).await?;
        within(0, "close", db.close()).await?;
        Ok(all)
    })
}

/// The prefix of `sent` whose state `recovered` equals, if one of at least
/// `acked` writes does.
fn matching_prefix(sent: &[Vec<Mutation>], acked: usize, recovered: &Model) -> Option<usize> {
    let mut model = Model::new();
    for (count, write) in sent.iter().enumerate() {
        if count >= acked && &model == recovered {
            return Some(count);
        }
        for (key, value) in write {
            match value {
                Some(value) => model.insert(key.clone(), value.clone()),
                None => model.remove(key),
            };
        }
    }
    (&model == recovered).then_some(sent.len())
}

fn state_after(writes: &[Vec<Mutation>]) -> Model {
    let mut model = Model::new();
    for (key, value) in writes.iter().flatten() {
        match value {
            Some(value) => model.insert(key.clone(), value.clone()),
            None => model.remove(key),
        };
    }
    model
}

/// Keys whose values differ: (key, expected, recovered).
fn differences(expected: &Model, recovered: &Model) -> Vec<(Bytes, Option<Bytes>, Option<Bytes>)> {
    let keys: std::collections::BTreeSet<&Bytes> =
        expected.keys().chain(recovered.keys()).collect();
    keys.into_iter()
        .filter(|k| expected.get(*k) != recovered.get(*k))
        .map(|k| {
            (
                (*k).clone(),
                expected.get(k).cloned(),
                recovered.get(k).cloned(),
            )
        })
        .collect()
}

/// Figures for one test, printed at its end.
#[derive(Debug, Default)]
struct Tally {
    crash_points: u64,
    acked_writes_checked: u64,
}

/// One case: power off at `step`, crash, recover, check.
fn crash_case(seed: u64, actions: &[Action], step: u64, driver: Driver, tally: &mut Tally) {
    if std::env::var_os("NAIVEKV_TRACE").is_some() {
        eprintln!("case seed {seed} step {step}");
    }
    CASE.set(format!("NAIVEKV_SEED={seed} NAIVEKV_STEP={step}"));
    let fs = SimFs::new(seed ^ step.rotate_left(32));
    fs.power_off_at(step).unwrap();
    let run = run_workload(&fs, actions, driver);
    let context = format!(
        "seed {seed}, power off at step {step}, {driver:?} (NAIVEKV_SEED={seed} NAIVEKV_STEP={step})"
    );
    assert_eq!(
        run.acked_after_failure, 0,
        "{context}: a write was acknowledged after the WAL failed"
    );
    trace(
        &format!("workload done: {run:?}")
            .chars()
            .take(300)
            .collect::<String>(),
    );
    let rebooted = fs.crash().unwrap();
    let recovered = match recover(&rebooted) {
        Ok(model) => model,
        Err(error) => panic!("{context}: reopening after the crash failed: {error}"),
    };
    let mut recovered = recovered;
    recovered.remove(&Bytes::from_static(b"after-recovery"));
    let prefix = matching_prefix(&run.sent, run.acked, &recovered);
    assert!(
        prefix.is_some(),
        "{context}: recovered state is no prefix of the {} writes sent with the first {} \
         acknowledged; differences from the acknowledged state: {:?}",
        run.sent.len(),
        run.acked,
        differences(&state_after(&run.sent[..run.acked]), &recovered)
    );
    tally.crash_points += 1;
    tally.acked_writes_checked += run.acked as u64;
}

thread_local! {
    /// The case being run, for messages from deep inside it.
    static CASE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Awaits `future`, panicking if it hangs: a request must always be answered.
/// (On a plain thread, which has no timer, the thread as a whole is timed.)
async fn within<T>(index: usize, what: &str, future: impl Future<Output = T>) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return future.await;
    }
    match tokio::time::timeout(std::time::Duration::from_secs(10), future).await {
        Ok(output) => output,
        Err(_) => panic!(
            "{}: action {index} ({what}) was not answered within 10 s",
            CASE.with_borrow(Clone::clone)
        ),
    }
}

fn trace(what: &str) {
    if std::env::var_os("NAIVEKV_TRACE").is_some() {
        eprintln!("{what}");
    }
}

/// The steps a workload's run takes with no power cut.
fn dry_run_steps(seed: u64, actions: &[Action], driver: Driver) -> u64 {
    let run = run_workload(&SimFs::new(seed), actions, driver);
    assert_eq!(
        run.acked,
        run.sent.len(),
        "seed {seed}: a write failed with no fault"
    );
    run.steps
}

fn replay_one() -> Option<(u64, u64)> {
    let seed = std::env::var("NAIVEKV_SEED").ok()?.parse().ok()?;
    let step = std::env::var("NAIVEKV_STEP").ok()?.parse().ok()?;
    Some((seed, step))
}

/// Every step of a few short workloads: exhaustive over where the power goes.
#[test]
fn power_loss_at_every_step_of_short_workloads() {
    if let Some((seed, step)) = replay_one() {
        let _ = env_logger::builder().is_test(true).try_init();
        let repeat: u64 = std::env::var("NAIVEKV_REPEAT")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1);
        for _ in 0..repeat {
            let actions = workload(seed, if seed >= 1000 { 400 } else { 120 });
            crash_case(seed, &actions, step, Driver::Task, &mut Tally::default());
            crash_case(
                seed,
                &actions,
                step,
                Driver::PlainThread,
                &mut Tally::default(),
            );
        }
        return;
    }
    let started = Instant::now();
    let seeds = if common::long_tests() { 0..40 } else { 0..3 };
    let mut tally = Tally::default();
    for seed in seeds {
        let actions = workload(seed, 120);
        let steps = dry_run_steps(seed, &actions, Driver::Task);
        for step in 1..=steps + 2 {
            crash_case(seed, &actions, step, Driver::Task, &mut tally);
        }
    }
    eprintln!("every step: {tally:?} in {:?}", started.elapsed());
}

/// Random steps (every step, in the long run) of short workloads whose
/// writes come from a plain thread, which appends and syncs each durable
/// write itself.
#[test]
fn power_loss_while_a_plain_thread_writes() {
    let started = Instant::now();
    let (seeds, points) = if common::long_tests() {
        (100..140, None)
    } else {
        (100..104, Some(50))
    };
    let mut tally = Tally::default();
    for seed in seeds {
        let actions = workload(seed, 120);
        let steps = dry_run_steps(seed, &actions, Driver::PlainThread);
        let mut rng = Rng(seed);
        let chosen: Vec<u64> = match points {
            Some(points) => (0..points).map(|_| 1 + rng.below(steps + 2)).collect(),
            None => (1..=steps + 2).collect(),
        };
        for step in chosen {
            crash_case(seed, &actions, step, Driver::PlainThread, &mut tally);
        }
    }
    eprintln!("plain thread: {tally:?} in {:?}", started.elapsed());
}

/// Random steps of longer random workloads.
#[test]
fn power_loss_at_random_steps_of_long_workloads() {
    let started = Instant::now();
    let (seeds, points) = if common::long_tests() {
        (1000..1100, 60)
    } else {
        (1000..1012, 40)
    };
    let mut tally = Tally::default();
    for seed in seeds {
        let actions = workload(seed, 400);
        let steps = dry_run_steps(seed, &actions, Driver::Task);
        let mut rng = Rng(seed);
        for _ in 0..points {
            let step = 1 + rng.below(steps + 2);
            crash_case(seed, &actions, step, Driver::Task, &mut tally);
        }
    }
    eprintln!("random steps: {tally:?} in {:?}", started.elapsed());
}
