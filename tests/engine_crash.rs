//! Crash recovery: the test re-runs its own binary as a child that writes
//! (with `sync = always`, and again with `sync = none`, where writers append
//! to the WAL themselves through its memory map: a process crash must lose
//! nothing acknowledged either way) and reports every acknowledged write on
//! stdout; the
//! parent kills it with SIGKILL at a random moment (often mid-flush or
//! mid-compaction), reopens the directory and checks that every
//! acknowledged write is there. Rounds reuse the directory, so recovery
//! of a recovered database is tested too.
//!
//! `NAIVEKV_LONG_TESTS=1` runs 60 rounds instead of 6. `NAIVEKV_CRASH_SEED`
//! replays a run.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::{Db, Error, ScanRequest, SyncPolicy, WriteBatch};

const CHILD_DIR: &str = "NAIVEKV_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "NAIVEKV_CRASH_CHILD_ROUND";
/// "none" for `SyncPolicy::None`, anything else for `Always`.
const CHILD_SYNC: &str = "NAIVEKV_CRASH_CHILD_SYNC";
const WRITERS: usize = 8;
const KEYS_PER_WRITER: usize = 40;

/// A tiny deterministic generator (xorshift64*), so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(writer: usize, i: usize) -> String {
    format!("w{writer}k{i:03}")
}

fn crash_options(dir: &Path) -> naive_kv::Options {
    let mut options = common::tiny_options(dir);
    options.sync = match std::env::var(CHILD_SYNC).as_deref() {
        Ok("none") => SyncPolicy::None,
        _ => SyncPolicy::Always,
    };
    options
}

/// One line per event, written and flushed at once: `S <writer> <key>=<value|->...`
/// before a write is sent, `A <writer>` once it is acknowledged.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "NKV {line}").unwrap();
    out.flush().unwrap();
}

/// The child: does nothing unless the parent started it.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    actix_rt::System::new().block_on(async move {
        let mut options = crash_options(Path::new(&dir));
        // Odd rounds let lone durable writes sync on the writers' thread.
        options.inline_durable_writes = round % 2 == 1;
        let db = Db::open(options).await.unwrap();
        report("OPEN");
        let writers = (0..WRITERS).map(|w| write_forever(db.clone(), w, round));
        futures_util::future::join_all(writers).await;
    });
}

/// One writer: sequential puts, deletes and small batches on its own keys,
/// so at most one of its writes is unacknowledged at any moment.
async fn write_forever(db: Db, writer: usize, round: u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((round << 8) + writer as u64 + 1));
    for n in 0u64.. {
        let mut mutations = Vec::new();
        let count = if rng.below(5) == 0 {
            2 + rng.below(4)
        } else {
            1
        };
        for _ in 0..count {
            let k = key(writer, rng.below(KEYS_PER_WRITER as u64) as usize);
            if mutations.iter().any(|(m, _): &(String, _)| *m == k) {
                continue;
            }
            let value = (rng.below(8) != 0).then(|| {
                let pad = "x".repeat(rng.below(200) as usize);
                format!("r{round}w{writer}n{n}{pad}")
            });
            mutations.push((k, value));
        }
        let line: Vec<String> = mutations
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("-")))
            .collect();
        report(&format!("S {writer} {}", line.join(" ")));
        let result = if let [(k, value)] = mutations.as_slice() {
            match value {
                Some(v) => db.put(k.clone(), v.clone()).await,
                None => db.delete(k.clone()).await,
            }
        } else {
            let mut batch = WriteBatch::new();
            for (k, v) in &mutations {
                match v {
                    Some(v) => batch.put(k.clone(), v.clone()),
                    None => batch.delete(k.clone()),
                };
            }
            db.write(batch).await
        };
        result.unwrap();
        report(&format!("A {writer}"));
    }
}

type Mutations = Vec<(String, Option<String>)>;

/// What the parent knows after a round: the acknowledged state and each
/// writer's write in flight when the child died.
#[derive(Default)]
struct Knowledge {
    acked: BTreeMap<String, Option<String>>,
    in_flight: BTreeMap<usize, Mutations>,
    acks: u64,
}

impl Knowledge {
    fn learn(&mut self, line: &str) {
        let mut words = line.split(' ');
        match words.next() {
            Some("S") => {
                let writer: usize = words.next().unwrap().parse().unwrap();
                let mutations = words
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap();
                        (k.to_string(), (v != "-").then(|| v.to_string()))
                    })
                    .collect();
                let previous = self.in_flight.insert(writer, mutations);
                assert!(
                    previous.is_none(),
                    "writer {writer} sent twice without an ack"
                );
            }
            Some("A") => {
                let writer: usize = words.next().unwrap().parse().unwrap();
                let mutations = self.in_flight.remove(&writer).unwrap();
                self.acks += 1;
                for (k, v) in mutations {
                    self.acked.insert(k, v);
                }
            }
            Some("OPEN") => {}
            other => panic!("unexpected line from the child: {other:?}"),
        }
    }
}

/// Runs the child for about `run_for`, kills it and returns what it reported.
fn run_child(dir: &Path, sync: &str, round: u64, run_for: Duration, knowledge: &mut Knowledge) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .env(CHILD_SYNC, sync)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test crash_child ... " before the first line.
            if let Some(at) = line.find("NKV ")
                && tx.send(line[at + 4..].to_string()).is_err()
            {
                break;
            }
        }
    });
    // The clock starts once the database is open.
    let opened = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(opened, "OPEN");
    let deadline = Instant::now() + run_for;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(5)) {
            knowledge.learn(&line);
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child ended by itself: {status:?}");
    for line in rx.iter() {
        knowledge.learn(&line);
    }
    reader.join().unwrap();
}

/// Reopens after a crash, checks every key against what the child reported,
/// and returns the state found (the next round builds on it).
async fn verify(dir: &Path, knowledge: &Knowledge, round: u64) -> BTreeMap<String, Option<String>> {
    let db = Db::open(crash_options(dir)).await.unwrap();
    let mut found = BTreeMap::new();
    for writer in 0..WRITERS {
        for i in 0..KEYS_PER_WRITER {
            let k = key(writer, i);
            let got = db.get(k.clone()).await.unwrap();
            let got = got.map(|v| String::from_utf8(v.to_vec()).unwrap());
            let acked = knowledge.acked.get(&k).cloned().flatten();
            let pending = knowledge
                .in_flight
                .get(&writer)
                .and_then(|m| m.iter().find(|(pk, _)| *pk == k))
                .map(|(_, v)| v.clone());
            assert!(
                got == acked || pending.as_ref() == Some(&got),
                "round {round}: {k} is {got:?}; last acknowledged {acked:?}, in flight {pending:?}"
            );
            found.insert(k, got);
        }
    }
    // A batch in flight is applied whole or not at all.
    for (writer, mutations) in &knowledge.in_flight {
        let applied = mutations
            .iter()
            .filter(|(k, v)| {
                found.get(k) == Some(v) && knowledge.acked.get(k).cloned().flatten() != *v
            })
            .count();
        let changed = mutations
            .iter()
            .filter(|(k, v)| knowledge.acked.get(k).cloned().flatten() != *v)
            .count();
        assert!(
            applied == 0 || applied == changed,
            "round {round}: writer {writer}'s batch {mutations:?} is half applied"
        );
    }
    // Nothing but the keys written, and the scan agrees with the gets.
    let page = db
        .scan(ScanRequest {
            limit: 0,
            ..ScanRequest::all()
        })
        .await
        .unwrap();
    let scanned: BTreeMap<String, Option<String>> = page
        .entries
        .iter()
        .map(|(k, v)| {
            let k = String::from_utf8(k.to_vec()).unwrap();
            (k, Some(String::from_utf8(v.to_vec()).unwrap()))
        })
        .collect();
    let present: BTreeMap<String, Option<String>> = found
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(scanned, present, "round {round}: scan and gets disagree");
    db.close().await.unwrap();
    found
}

fn seed() -> u64 {
    match std::env::var("NAIVEKV_CRASH_SEED") {
        Ok(seed) => seed.parse().unwrap(),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    survive_sigkill("always");
}

#[test]
fn acknowledged_unsynced_writes_survive_sigkill() {
    survive_sigkill("none");
}

/// Rounds of writing, killing and checking, with the child's sync policy.
fn survive_sigkill(sync: &str) {
    let rounds = if common::long_tests() { 60 } else { 6 };
    let seed = seed();
    eprintln!("NAIVEKV_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut state: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut total_acks = 0;
    for round in 0..rounds {
        // Mostly short runs; every third round long enough for compactions.
        let run_for = if round % 3 == 2 {
            Duration::from_millis(400 + rng.below(800))
        } else {
            Duration::from_millis(20 + rng.below(300))
        };
        let mut knowledge = Knowledge {
            acked: state.clone(),
            ..Knowledge::default()
        };
        run_child(dir.path(), sync, round, run_for, &mut knowledge);
        total_acks += knowledge.acks;
        state = actix_rt::System::new().block_on(verify(dir.path(), &knowledge, round));
    }
    assert!(
        total_acks > 100,
        "the child acknowledged only {total_acks} writes"
    );
    eprintln!("{rounds} rounds, {total_acks} acknowledged writes");
}

/// Dropping every handle without `close` must not let a new `Db` into the
/// directory while the old one's flush or compaction still writes there.
#[test]
fn reopen_after_drop_without_close() {
    actix_rt::System::new().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let options = crash_options(dir.path());
        let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        for round in 0..30u32 {
            let db = open_when_unlocked(options.clone()).await;
            for (k, v) in &model {
                assert_eq!(
                    db.get(k.clone()).await.unwrap().as_ref(),
                    Some(v),
                    "round {round}"
                );
            }
            let writes: Vec<_> = (0..200u32)
                .map(|i| {
                    let k = Bytes::from(format!("key{:03}", (i * 7 + round) % 150));
                    let v = Bytes::from(format!("round{round}-{i}-{}", "v".repeat(40)));
                    model.insert(k.clone(), v.clone());
                    db.put(k, v)
                })
                .collect();
            for result in futures_util::future::join_all(writes).await {
                result.unwrap();
            }
            drop(db);
        }
    });
}

async fn open_when_unlocked(options: naive_kv::Options) -> Db {
    for _ in 0..500 {
        match Db::open(options.clone()).await {
            Ok(db) => return db,
            Err(Error::Locked { .. }) => actix_rt::time::sleep(Duration::from_millis(10)).await,
            Err(other) => panic!("open after drop failed: {other}"),
        }
    }
    panic!("still locked 5 s after the last handle was dropped");
}
