//! `--idle-timeout` and `--frame-timeout` apply to the Redis port as to the
//! native one: a silent connection is closed, and so is one that leaves a
//! request half-sent even while it trickles bytes; an active one stays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::Write;
use std::time::{Duration, Instant};

use naive_kv::SyncPolicy;
use resp_support::{RespServer, closed, exchange, request};

fn server() -> RespServer {
    RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.idle_timeout = Duration::from_millis(400);
        c.frame_timeout = Duration::from_millis(400);
    })
}

#[test]
fn an_idle_connection_is_closed_and_an_active_one_is_not() {
    let server = server();
    let mut idle = server.connect();
    idle.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut active = server.connect();
    let opened = Instant::now();
    for _ in 0..8 {
        exchange(&mut active, &request(&[b"PING"]), b"+PONG\r\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed(&mut idle), "the idle connection is closed");
    assert!(opened.elapsed() < Duration::from_secs(3));
    exchange(&mut active, &request(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn a_half_sent_request_is_cut_off_though_bytes_keep_coming() {
    let server = server();
    let mut slow = server.connect();
    slow.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n")
        .unwrap();
    // 20 of the value's 100 bytes over 2 s: each gap is shorter than the
    // idle timeout, the whole is far longer than the frame timeout.
    for _ in 0..20 {
        if slow.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert!(closed(&mut slow), "the trickling connection is closed");
    let mut other = server.connect();
    exchange(&mut other, &request(&[b"GET", b"k"]), b"$-1\r\n");
}
