//! The byte budget is memory, not a count of unsent bytes: a server process
//! serving clients that pipeline large GETs and never read holds, per
//! connection, about its `--max-reply-bytes` and no more. (It once held
//! twice that: a buffer the socket had half taken was released from the
//! budget while still allocated, and buffers that doubled to fit a reply
//! were counted by what they held, not by what they took.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;
mod non_reading;
mod resp_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cli_support::ServerProcess;
use non_reading::flood;
use resp_support::request as resp;

const VALUE_BYTES: usize = 1 << 20;
const CONNECTIONS: usize = 20;

#[test]
fn non_reading_connections_hold_about_their_budget_each() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--port",
        "0",
        "--resp-port",
        "0",
        "--max-reply-bytes",
        "4MiB",
    ];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let mut setter = TcpStream::connect(server.resp()).unwrap();
    setter
        .write_all(&resp(&[b"SET", b"big", &vec![b'x'; VALUE_BYTES]]))
        .unwrap();
    let mut ok = [0u8; 5];
    setter.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    let pid = server.child.id();
    let before = cli_support::rss_kib(pid);
    let get = |_| resp(&[b"GET", b"big"]);
    let (greedy, sent) = flood(
        || TcpStream::connect(server.resp()).unwrap(),
        get,
        CONNECTIONS,
        200,
    );
    std::thread::sleep(Duration::from_millis(500));
    let grown_mib = cli_support::rss_kib(pid).saturating_sub(before) / 1024;
    println!("{CONNECTIONS} non-reading connections: {sent} GETs sent, RSS grew {grown_mib} MiB");
    // 20 x 4 MiB = 80 MiB, plus what is being encoded: under 100 MiB
    // (before the budget counted memory: about 166 MiB).
    assert!(grown_mib < 100, "RSS grew {grown_mib} MiB");
    assert!(
        grown_mib > 20,
        "the flood held almost nothing ({grown_mib} MiB): not a test"
    );
    // Gone clients' buffers go back to the system (run_server sets glibc's
    // mmap threshold; before, most of the flood stayed resident).
    drop(greedy);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left_mib = u64::MAX;
    while std::time::Instant::now() < deadline {
        left_mib = cli_support::rss_kib(pid).saturating_sub(before) / 1024;
        if left_mib < 16 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        left_mib < 16,
        "{left_mib} MiB still held after the clients left"
    );
    drop(setter);
    assert!(server.stop().success());
}
