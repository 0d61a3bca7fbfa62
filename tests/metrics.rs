//! `run_server --metrics-port`: `GET /metrics` in the Prometheus text
//! format, with values that move as the server works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;
mod resp_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use cli_support::ServerProcess;

/// The raw HTTP response to `request`.
fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the sample line `name value` in a scrape.
fn sample(scrape: &str, name: &str) -> u64 {
    let line = scrape
        .lines()
        .find(|line| line.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} missing from:\n{scrape}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn scrape(addr: SocketAddr) -> String {
    let response = http(addr, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

#[test]
fn a_scrape_shows_counters_that_move() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "0", "--metrics-port", "0", "--sync", "none"];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    assert!(server.metrics().ip().is_loopback(), "loopback by default");
    let before = scrape(server.metrics());
    assert!(
        before.contains("# TYPE naivekv_writes_total counter"),
        "{before}"
    );
    assert!(
        before.contains("# TYPE naivekv_memtable_bytes gauge"),
        "{before}"
    );
    // Every engine statistic has a known type (write_conflicts was left
    // `untyped`, without `_total`).
    assert!(!before.contains(" untyped"), "{before}");
    assert!(
        before.contains("# TYPE naivekv_write_conflicts_total counter"),
        "{before}"
    );
    assert_eq!(sample(&before, "naivekv_writes_total"), 0);
    assert_eq!(sample(&before, "naivekv_gets_total"), 0);
    assert!(sample(&before, "process_resident_memory_bytes") > 0);

    let port = server.native().port().to_string();
    let script = "set a 1\nset b 2\nset c 3\nget a\n";
    let mut client = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["--port", &port])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(client.wait().unwrap().success());

    let after = scrape(server.metrics());
    assert_eq!(sample(&after, "naivekv_writes_total"), 3);
    assert_eq!(sample(&after, "naivekv_gets_total"), 1);
    assert!(sample(&after, "naivekv_memtable_bytes") > 0);
    assert_eq!(sample(&after, "naivekv_compaction_debt_bytes"), 0);
    assert_eq!(
        sample(&after, "naivekv_compactions_refused_for_space_total"),
        0
    );
    // Per-command counts and latency histograms, by protocol.
    let puts = r#"naivekv_request_duration_seconds_count{protocol="native",command="put"}"#;
    let gets = r#"naivekv_request_duration_seconds_count{protocol="native",command="get"}"#;
    assert_eq!(sample(&after, puts), 3);
    assert_eq!(sample(&after, gets), 1);
    let all_puts =
        r#"naivekv_request_duration_seconds_bucket{protocol="native",command="put",le="+Inf"}"#;
    assert_eq!(sample(&after, all_puts), 3);
    assert!(after.contains("# TYPE naivekv_request_duration_seconds histogram"));
    assert!(after.contains(r#"naivekv_connections{protocol="native"}"#));
    assert!(server.stop().success());
}

#[test]
fn other_paths_and_methods_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "0", "--metrics-port", "0", "--sync", "none"];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let response = http(server.metrics(), "GET / HTTP/1.1\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let response = http(server.metrics(), "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
}

/// Sends each command on `stream` and reads its reply before the next
/// (no pipelining); every reply here is one line.
fn one_at_a_time(stream: &mut TcpStream, commands: &[Vec<u8>]) {
    let mut reply = [0u8; 64];
    for command in commands {
        stream.write_all(command).unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n") {
            let n = stream.read(&mut reply).unwrap();
            assert!(n > 0, "the server closed the connection");
            got.extend_from_slice(&reply[..n]);
        }
        assert!(got.starts_with(b"+OK") || got.starts_with(b"$"), "{got:?}");
    }
}

/// A connection is one actor; an unpipelined request wakes it once (the
/// poll that reads the request writes its reply), and one the engine does
/// not answer at once (a durable SET waiting for its sync) once more, for
/// the answer, whose reply is written in that same poll.
/// `naivekv_connection_wakeups_total` counts them as connections close.
/// (Before, the writer was woken again for each reply: 818 here.)
#[test]
fn an_unpipelined_request_wakes_its_connection_once() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&str> = "--port 0 --resp-port 0 --metrics-port 0 --sync always --insecure"
        .split(' ')
        .collect();
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let (sets, gets) = (200u64, 200u64);
    let key = |i: u64| format!("key{i}").into_bytes();
    let mut commands: Vec<Vec<u8>> = (0..sets)
        .map(|i| resp_support::request(&[b"SET", &key(i), b"value"]))
        .collect();
    commands.extend((0..gets).map(|i| resp_support::request(&[b"GET", &key(i)])));
    let mut stream = TcpStream::connect(server.resp()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    one_at_a_time(&mut stream, &commands);
    drop(stream);

    let open = r#"naivekv_connections{protocol="resp"}"#;
    let wakeups = r#"naivekv_connection_wakeups_total{protocol="resp"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut after = scrape(server.metrics());
    while sample(&after, open) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = scrape(server.metrics());
    }
    assert_eq!(sample(&after, open), 0, "the connection closed");
    let expected = 2 * sets + gets;
    let woken = sample(&after, wakeups);
    println!("{woken} wake-ups for {sets} durable SETs and {gets} GETs");
    // A quarter of slack for the opening and closing polls and a stray
    // wake; with a wake-up for the writer after each reply it was twice
    // `expected`.
    assert!(woken >= sets + gets, "every request was read: {woken}");
    assert!(
        woken <= expected + expected / 4,
        "{woken} wake-ups for {sets} durable SETs and {gets} GETs"
    );
    assert!(after.contains("# TYPE naivekv_connection_wakeups_total counter"));
    assert!(server.stop().success());
}
