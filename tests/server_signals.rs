//! SIGINT and SIGTERM stop `run_server`: the first cleanly, a second at
//! once even while the clean stop waits for a client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli_support;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_support::{ServerProcess, wait_for};
use naive_kv::proto::{self, Request, request::Command as Call};
use prost::Message;

#[test]
fn sigint_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("db"), &["--port", "0"]);
    server.signal("INT");
    let closed = server.wait_for_log("database closed");
    assert!(closed.is_some(), "no 'database closed' after SIGINT");
}

/// A length-prefixed scan request of everything.
fn scan_frame(id: u64) -> Vec<u8> {
    let request = Request {
        id,
        command: Some(Call::Scan(proto::Scan::default())),
    };
    let body = request.encode_to_vec();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

#[test]
fn a_second_signal_exits_at_once_while_the_clean_stop_waits() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "0", "--sync", "none"];
    let mut server = ServerProcess::start(&dir.path().join("db"), &args);
    let value = "v".repeat(1024);
    let script: String = (0..2000)
        .map(|i| format!("set k{i:05} {value}\n"))
        .collect();
    let mut client = Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["-p", &server.native().port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    client
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(wait_for(&mut client).success());

    // A reader that never reads: its scan replies fill the socket, so its
    // session cannot finish and the clean stop waits (up to its grace).
    let mut stalled = TcpStream::connect(server.native()).unwrap();
    for id in 1..=64 {
        stalled.write_all(&scan_frame(id)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    server
        .wait_for_log("shutting down")
        .expect("the clean stop starts");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the clean stop did not wait for the stalled client"
    );
    server.signal("TERM");
    let status = wait_for(&mut server.child);
    assert_eq!(status.code(), Some(128 + 15));
    drop(stalled);
}

/// With the RESP port beside the native one, an idle connection on either
/// port closes at SIGTERM: the server exits at once, not after its
/// shutdown grace (10 s). An outside probe found one idle native
/// connection held the exit for the whole grace: the RESP listener waited
/// for every connection of both ports before the native one told its own
/// to close.
#[test]
fn idle_connections_on_both_ports_do_not_hold_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--port", "0", "--resp-port", "0"];
    for idle_on in ["native", "RESP", "both"] {
        let server = ServerProcess::start(&dir.path().join(idle_on), &args);
        let native = (idle_on != "RESP").then(|| TcpStream::connect(server.native()).unwrap());
        let resp = (idle_on != "native").then(|| TcpStream::connect(server.resp()).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let status = server.stop();
        assert!(status.success(), "{idle_on}: {status:?}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{idle_on}: exit took {took:?}"
        );
        drop((native, resp));
    }
}
