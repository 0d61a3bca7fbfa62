//! `--max-frame-bytes` bounds a request on the Redis port as on the
//! native one: `run_server` with a 16 KiB limit refuses a larger SET on
//! `--resp-port` (`-ERR Protocol error: request larger than N bytes`, then
//! closes the connection, before the value is read) and takes a smaller
//! one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;
mod resp_support;

use std::time::Duration;

use cli_support::ServerProcess;
use resp_support::{closed, exchange, request};

#[test]
fn a_request_over_max_frame_bytes_is_refused_on_the_resp_port() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--port",
        "0",
        "--resp-port",
        "0",
        "--sync",
        "none",
        "--max-frame-bytes",
        "16KiB",
    ];
    let server = ServerProcess::start(&dir.path().join("db"), &args);
    let connect = || {
        let stream = std::net::TcpStream::connect(server.resp()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };
    let mut s = connect();
    exchange(
        &mut s,
        &request(&[b"SET", b"small", &[b'v'; 8 << 10]]),
        b"+OK\r\n",
    );
    // The header alone is refused: the value is never sent (a server that
    // closes with bytes unread would reset the connection).
    exchange(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$5\r\nlarge\r\n$20480\r\n",
        b"-ERR Protocol error: request larger than 16384 bytes\r\n",
    );
    assert!(closed(&mut s));
    let mut s = connect();
    exchange(
        &mut s,
        &request(&[b"EXISTS", b"small", b"large"]),
        b":1\r\n",
    );
    assert!(server.stop().success());
}
