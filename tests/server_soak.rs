//! Crash soak of the real server: several connections write with
//! `--sync always` (puts and batches, values from 1 byte to 100 KiB) to a
//! `run_server` process with a tiny memtable (so flushes and compactions
//! run), which is killed with SIGKILL at a random moment and restarted on
//! the same directory. After every restart each key must hold its last
//! acknowledged value or a later one that was sent. In odd cycles one
//! connection writes alone, so that its writes are synced on the worker's
//! thread (`Options::inline_durable_writes`) when the kill comes.
//!
//! `cargo test --test server_soak` runs 3 cycles;
//! `NAIVEKV_SOAK_CYCLES=200 cargo test --test server_soak -- --nocapture`
//! the long soak (figures in docs/RELIABILITY.md, "Crash soak (server)").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::WriteBatch;
use naive_kv::client::{Client, ClientError};

/// Writing connections.
const WRITERS: u64 = 6;
/// Keys per writer; each key is written by one writer only, so the order
/// of its versions is the order that writer sent them.
const KEYS_PER_WRITER: u64 = 64;

/// What one writer knows of one key.
#[derive(Debug, Clone, Copy, Default)]
struct KeyModel {
    /// Highest version sent (acknowledged or not).
    sent: u64,
    /// Highest version acknowledged; 0 if none.
    acked: u64,
}

/// One writer's keys, by key.
type Model = HashMap<String, KeyModel>;

/// A tiny xorshift generator: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `KEY VERSION ` and padding to a size from 1 byte to 100 KiB, skewed
/// small: the version can be read back from any value.
fn value(key: &str, version: u64, rng: &mut Rng) -> Bytes {
    let size = match rng.below(10) {
        0..=5 => 1 + rng.below(100),
        6..=8 => 100 + rng.below(10_000),
        _ => 10_000 + rng.below(100 << 10),
    } as usize;
    let mut out = format!("{key} {version} ").into_bytes();
    out.resize(out.len().max(size), b'.');
    Bytes::from(out)
}

fn version_of(key: &str, value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value.get(..value.len().min(64))?).ok()?;
    let mut words = text.split(' ');
    (words.next()? == key).then_some(())?;
    words.next()?.parse().ok()
}

/// The server process and the address it listens on.
struct Server {
    child: Child,
    addr: SocketAddr,
}

fn start_server(dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_run_server"))
        .arg("--directory")
        .arg(dir)
        .args(["--port", "0", "--sync", "always", "--workers", "2"])
        .args(["--memtable-bytes", "1MiB"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.split("listening on ").nth(1) {
                let addr = addr.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server started");
    Server { child, addr }
}

/// Writes until the connection breaks: puts and batches of the writer's
/// own keys, one request at a time, recording what was sent and acked.
/// Gives the model back with the number of mutations acknowledged.
async fn write_until_killed(
    addr: SocketAddr,
    writer: u64,
    mut model: Model,
    seed: u64,
) -> (Model, u64) {
    let mut rng = Rng(seed | 1);
    let mut acked = 0;
    let Ok(client) = Client::connect(addr).await else {
        return (model, acked);
    };
    loop {
        let count = if rng.below(10) < 7 {
            1
        } else {
            2 + rng.below(4)
        };
        let mut batch = WriteBatch::new();
        let mut versions = Vec::new();
        let mut single = None;
        for _ in 0..count {
            let key = format!("w{writer}-k{}", rng.below(KEYS_PER_WRITER));
            let entry = model.entry(key.clone()).or_default();
            entry.sent += 1;
            let value = value(&key, entry.sent, &mut rng);
            batch.put(key.clone(), value.clone());
            single = Some((key.clone(), value));
            versions.push((key, entry.sent));
        }
        let result = match single {
            Some((key, value)) if count == 1 => client.put(key, value).await,
            _ => client.batch(&batch).await,
        };
        match result {
            Ok(()) => {
                acked += versions.len() as u64;
                for (key, version) in versions {
                    let entry = model.entry(key).or_default();
                    entry.acked = entry.acked.max(version);
                }
            }
            Err(ClientError::Disconnected(_)) => return (model, acked),
            Err(e) => panic!("writer {writer}: unexpected error {e}"),
        }
    }
}

/// Checks every key against its model; the number of keys checked and a
/// description of each loss.
async fn verify(addr: SocketAddr, models: &[Model]) -> (usize, Vec<String>) {
    let client = Client::connect(addr).await.unwrap();
    let mut checked = 0;
    let mut losses = Vec::new();
    for model in models {
        let keys: Vec<_> = model.iter().map(|(k, m)| (k.clone(), *m)).collect();
        let gets: Vec<_> = keys.iter().map(|(k, _)| client.get(k.clone())).collect();
        for ((key, m), get) in keys.into_iter().zip(gets) {
            let found = get.await.unwrap();
            let version = found.as_deref().map(|v| version_of(&key, v));
            let ok = match version {
                None => m.acked == 0,
                Some(Some(v)) => v >= m.acked && v <= m.sent,
                Some(None) => false,
            };
            checked += usize::from(m.acked > 0);
            if !ok {
                losses.push(format!(
                    "{key}: acked version {}, sent up to {}, found {version:?}",
                    m.acked, m.sent
                ));
            }
        }
    }
    (checked, losses)
}

/// After an accepted loss, the model must follow what the database holds.
fn resync(models: &mut [Model]) {
    for model in models {
        for m in model.values_mut() {
            m.acked = 0;
        }
    }
}

#[test]
fn sigkill_soak_keeps_every_acknowledged_write() {
    let cycles: u64 = std::env::var("NAIVEKV_SOAK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed = std::env::var("NAIVEKV_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("soak: {cycles} cycles, NAIVEKV_SOAK_SEED={seed}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng(seed | 1);
    let mut models: Vec<Model> = (0..WRITERS).map(|_| Model::new()).collect();
    let (mut acked_total, mut checked_total, mut all_losses) = (0u64, 0usize, Vec::new());
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut server = start_server(&dir);
        let (checked, losses) = runtime.block_on(verify(server.addr, &models));
        checked_total += checked;
        for loss in &losses {
            println!("LOSS after cycle {cycle}: {loss}");
        }
        if !losses.is_empty() {
            all_losses.extend(losses);
            resync(&mut models);
        }
        let kill_after = Duration::from_millis(100 + rng.below(1200));
        let seeds: Vec<u64> = (0..WRITERS).map(|_| rng.next()).collect();
        let taken = std::mem::take(&mut models);
        let alone = cycle % 2 == 1;
        models = runtime.block_on(async {
            let addr = server.addr;
            let writers: Vec<_> = taken
                .into_iter()
                .zip(seeds)
                .enumerate()
                .map(|(w, (model, seed))| match alone && w > 0 {
                    true => tokio::spawn(async move { (model, 0) }),
                    false => tokio::spawn(write_until_killed(addr, w as u64, model, seed)),
                })
                .collect();
            tokio::time::sleep(kill_after).await;
            server.child.kill().unwrap(); // SIGKILL
            let mut out = Vec::new();
            for writer in writers {
                // The server is dead: every writer must see that at once.
                let joined = tokio::time::timeout(Duration::from_secs(30), writer).await;
                let (model, acked) = joined.expect("a writer hung after SIGKILL").unwrap();
                acked_total += acked;
                out.push(model);
            }
            out
        });
        server.child.wait().unwrap();
        if (cycle + 1) % 20 == 0 {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "soak: {} cycles, {acked_total} acked writes, {secs:.0} s",
                cycle + 1
            );
        }
    }
    let mut server = start_server(&dir);
    let (checked, losses) = runtime.block_on(verify(server.addr, &models));
    checked_total += checked;
    all_losses.extend(losses);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    println!(
        "soak: {cycles} cycles, {acked_total} acknowledged writes, {checked_total} key checks, \
         {} losses, {:.1} s; directory now: {files:?}",
        all_losses.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(all_losses.is_empty(), "lost writes: {all_losses:#?}");
}
