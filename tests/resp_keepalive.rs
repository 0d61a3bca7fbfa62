//! Blank lines and `*0`, which some Redis clients send as keepalives, are
//! ignored (no reply) and end a frame: a client that sends only them for
//! longer than the frame timeout stays connected, as with Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::Write;
use std::time::Duration;

use naive_kv::SyncPolicy;
use resp_support::{RespServer, exchange, request};

#[test]
fn keepalives_are_ignored_and_do_not_run_the_frame_timer() {
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.frame_timeout = Duration::from_millis(300);
    });
    let mut s = server.connect();
    // 1.2 s of keepalives, four times the frame timeout.
    for keepalive in [&b"\r\n"[..], b"*0\r\n"] {
        for _ in 0..6 {
            s.write_all(keepalive).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Still open, and nothing was answered before the PING's reply.
    exchange(&mut s, &request(&[b"PING"]), b"+PONG\r\n");
}
