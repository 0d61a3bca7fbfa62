//! Shared by the reply-budget tests of both ports: clients that send many
//! requests and never read, and the server's memory while they do.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// This process's resident set size in KiB (the server runs in it).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens `connections` connections with `connect` and on each writes
/// `request(i)` for `i` in `0..per_connection`, never reading, until the
/// server stops reading (a write times out). Returns the connections and
/// how many requests went out.
pub fn flood(
    connect: impl Fn() -> TcpStream,
    request: impl Fn(usize) -> Vec<u8>,
    connections: usize,
    per_connection: usize,
) -> (Vec<TcpStream>, usize) {
    let mut greedy = Vec::new();
    let mut sent = 0;
    for _ in 0..connections {
        let mut stream = connect();
        stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        for i in 0..per_connection {
            if stream.write_all(&request(i)).is_err() {
                break; // the server stopped reading
            }
            sent += 1;
        }
        greedy.push(stream);
    }
    (greedy, sent)
}
