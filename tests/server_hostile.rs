//! Hostile clients and load: idle connections and half-sent frames are cut
//! off, a client that never reads its replies cannot grow the server's
//! memory, and many mixed clients with compactions running get no errors.
//!
//! The load test runs for 3 s by default; `NAIVEKV_LOAD_SECS=60` runs the
//! full version (see docs/RELIABILITY.md, "Hostile clients and load").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::client::Client;
use naive_kv::proto::{self, request::Command};
use naive_kv::server::ServerConfig;
use naive_kv::{Options, SyncPolicy, WriteBatch};
use server_support::{TestServer, config, read_response, request, round_trip, runtime};

/// The memory tests read this process's RSS: they must not overlap.
static MEMORY: Mutex<()> = Mutex::new(());

fn ping(id: u64) -> Vec<u8> {
    request(id, Command::Ping(proto::Ping {}))
}

fn timeouts(idle_ms: u64, frame_ms: u64) -> TestServer {
    TestServer::start_with(ServerConfig {
        idle_timeout: Duration::from_millis(idle_ms),
        frame_timeout: Duration::from_millis(frame_ms),
        ..config()
    })
}

/// Waits for the server to close `stream`; how long that took.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    assert!(
        read_response(stream).is_none(),
        "expected the server to close"
    );
    started.elapsed()
}

#[test]
fn an_idle_connection_is_closed_and_an_active_one_is_not() {
    let server = timeouts(400, 10_000);
    let mut idle = server.connect();
    let mut active = server.connect();
    for id in 1..=8 {
        assert_eq!(round_trip(&mut active, &ping(id)).id, id);
        std::thread::sleep(Duration::from_millis(100));
    }
    // `active` was still served at 700 ms, past the idle timeout, because
    // it talked; silent now, it is closed too.
    closed_within(&mut idle, Duration::from_secs(3));
    closed_within(&mut active, Duration::from_secs(3));
}

#[test]
fn a_stalled_frame_is_cut_off() {
    let server = timeouts(60_000, 300);
    let mut stream = server.connect();
    assert_eq!(round_trip(&mut stream, &ping(1)).id, 1);
    stream.write_all(&[0, 0, 0, 40, 1, 2]).unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(3));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_trickled_frame_is_cut_off_though_bytes_keep_coming() {
    let server = timeouts(60_000, 400);
    let mut stream = server.connect();
    let frame = ping(12345);
    let mut bytes = frame.clone();
    // One frame sent a byte at a time, 100 ms apart: still in progress at
    // the frame timeout, although never idle.
    let big = request(
        1,
        Command::Get(proto::Get {
            key: Bytes::from(vec![b'k'; 30]),
        }),
    );
    bytes.extend(&big);
    let started = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for byte in bytes {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // The first frame (a ping, 7 bytes) is answered if it completes in time:
    // 700 ms at 100 ms a byte is past the timeout, so it is not.
    assert!(closed_within(&mut stream, Duration::from_secs(5)) < Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(2));
    sender.join().unwrap();
}

/// This process's resident set and its peak, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_client_that_never_reads_cannot_grow_server_memory() {
    let _serial = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let server = TestServer::start();
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        client.put("big", vec![b'x'; 1 << 20]).await.unwrap();
    });
    let before = rss_kib().0;
    let get = request(1, Command::Get(proto::Get { key: "big".into() }));
    let mut greedy = Vec::new();
    let mut sent = 0;
    for _ in 0..4 {
        let mut stream = server.connect();
        stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        // 300 gets of a 1 MiB value per connection: 1.2 GiB of replies if
        // the server queued them all.
        for _ in 0..300 {
            if stream.write_all(&get).is_err() {
                break; // the server stopped reading
            }
            sent += 1;
        }
        greedy.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib().0;
    let grown_mib = after.saturating_sub(before) / 1024;
    println!("non-reading clients: {sent} gets sent, server RSS grew {grown_mib} MiB");
    assert!(grown_mib < 64, "RSS grew {grown_mib} MiB");
    // Others are still served.
    assert_eq!(round_trip(&mut server.connect(), &ping(9)).id, 9);
    drop(greedy);
}

/// Latency percentiles and error count of one load run.
#[derive(Debug, Default)]
struct LoadReport {
    ops: usize,
    errors: usize,
    latencies_us: Vec<u64>,
}

impl LoadReport {
    fn percentile(&mut self, p: f64) -> u64 {
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us.get(i).copied().unwrap_or(0)
    }
}

/// One client's loop: a mix of gets, puts, scans and batches until
/// `until`, timing each request.
async fn client_loop(client: Client, seed: u64, until: Instant) -> LoadReport {
    let mut report = LoadReport::default();
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while Instant::now() < until {
        let key = format!("key{:05}", next() % 20_000);
        let value = Bytes::from(vec![b'v'; 16 + (next() % 2000) as usize]);
        let started = Instant::now();
        let ok = match next() % 10 {
            0..=3 => client.get(key).await.is_ok(),
            4..=6 => client.put(key, value).await.is_ok(),
            7 => {
                let scan = proto::Scan {
                    start: key.into(),
                    limit: 20,
                    ..Default::default()
                };
                client.scan(scan).await.is_ok()
            }
            _ => {
                let mut batch = WriteBatch::new();
                for _ in 0..5 {
                    let k = format!("key{:05}", next() % 20_000);
                    batch.put(k, value.clone());
                }
                batch.delete(format!("key{:05}", next() % 20_000));
                client.batch(&batch).await.is_ok()
            }
        };
        report
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        report.ops += 1;
        report.errors += usize::from(!ok);
    }
    report
}

#[test]
fn load_mixed_clients_with_compactions() {
    let _serial = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let secs: u64 = std::env::var("NAIVEKV_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let connections = 200;
    let tmp = tempfile::tempdir().unwrap();
    let mut options = Options::new(tmp.path().join("db"));
    options.sync = SyncPolicy::Always;
    options.memtable_bytes = 256 << 10;
    let server = TestServer::start_with_options(options, config());
    let started = Instant::now();
    let mut total = runtime().block_on(async {
        let until = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for seed in 0..connections {
            let client = Client::connect(server.addr).await.unwrap();
            tasks.push(tokio::spawn(client_loop(client, seed + 1, until)));
        }
        let mut total = LoadReport::default();
        for task in tasks {
            let report = task.await.unwrap();
            total.ops += report.ops;
            total.errors += report.errors;
            total.latencies_us.extend(report.latencies_us);
        }
        total
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stats = runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        client.stats().await.unwrap()
    });
    let counter = |name: &str| stats.get(name).copied().unwrap_or(0);
    let (p50, p99, max) = (
        total.percentile(0.50),
        total.percentile(0.99),
        total.percentile(1.0),
    );
    println!(
        "load: {connections} connections, {secs} s: {} ops ({:.0}/s), {} errors, \
         p50 {p50} us, p99 {p99} us, max {max} us, peak RSS {} MiB, \
         flushes {}, compactions {}",
        total.ops,
        total.ops as f64 / elapsed,
        total.errors,
        rss_kib().1 / 1024,
        counter("flushes"),
        counter("compactions"),
    );
    assert_eq!(total.errors, 0);
    assert!(total.ops > 0);
}
