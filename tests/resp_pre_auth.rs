//! Before AUTH the Redis port holds requests to 64 KiB (a declared 32 MiB
//! bulk is refused from its header, not reserved) and closes a connection
//! that has not authenticated within the auth timeout; after AUTH the full
//! limits apply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::Write;
use std::time::{Duration, Instant};

use naive_kv::SyncPolicy;
use resp_support::{RespServer, closed, exchange, expect, request};

const TOKEN: &str = "s3cret";

fn server() -> RespServer {
    RespServer::start_tuned(SyncPolicy::None, Some(TOKEN), |c| {
        c.auth_timeout = Duration::from_millis(1000);
    })
}

#[test]
fn a_large_bulk_before_auth_is_refused_from_its_header() {
    let server = server();
    let mut s = server.connect();
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$33554432\r\n")
        .unwrap();
    expect(&mut s, b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed(&mut s));

    // After AUTH a value past the pre-auth limit is taken.
    let mut s = server.connect();
    exchange(&mut s, &request(&[b"AUTH", TOKEN.as_bytes()]), b"+OK\r\n");
    let value = vec![b'v'; 200 << 10];
    exchange(&mut s, &request(&[b"SET", b"k", &value]), b"+OK\r\n");
}

#[test]
fn a_connection_that_does_not_authenticate_in_time_is_closed() {
    let server = server();
    let mut waiting = server.connect();
    let mut authed = server.connect();
    exchange(
        &mut authed,
        &request(&[b"AUTH", TOKEN.as_bytes()]),
        b"+OK\r\n",
    );
    let opened = Instant::now();
    // Busy but never authenticated: the idle timeout would not close it.
    let noauth = b"-NOAUTH Authentication required.\r\n";
    while opened.elapsed() < Duration::from_millis(300) {
        exchange(&mut waiting, &request(&[b"PING"]), noauth);
        std::thread::sleep(Duration::from_millis(50));
    }
    waiting
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Pinged for 0.3 s of the 1 s (a margin for a loaded machine), then idle.
    std::thread::sleep(Duration::from_millis(900));
    let _ = waiting.write_all(&request(&[b"PING"]));
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut waiting, &mut rest);
    assert!(
        rest.len() <= noauth.len(),
        "closed after at most one more reply"
    );
    assert!(closed(&mut waiting));
    std::thread::sleep(Duration::from_millis(300));
    exchange(&mut authed, &request(&[b"PING"]), b"+PONG\r\n");
}

/// AUTH and a large SET sent in one write: the reader decodes ahead of the
/// request it takes (to prefetch gets), but not before the client has
/// authenticated, so the SET is decoded under the raised limits.
#[test]
fn a_large_set_in_the_same_write_as_auth_is_taken() {
    let server = server();
    let mut s = server.connect();
    let value = vec![b'v'; 200 << 10];
    let mut both = request(&[b"AUTH", TOKEN.as_bytes()]);
    both.extend(request(&[b"SET", b"k", &value]));
    both.extend(request(&[b"GET", b"k"]));
    both.extend(request(&[b"GET", b"missing"]));
    s.write_all(&both).unwrap();
    let mut reply = b"+OK\r\n+OK\r\n".to_vec();
    reply.extend(format!("${}\r\n", value.len()).as_bytes());
    reply.extend(&value);
    reply.extend(b"\r\n$-1\r\n");
    expect(&mut s, &reply);
}
