//! A wrong token after a right one closes the gate again, and with it the
//! decoder's limits go back to the pre-authentication ones: a request over
//! 64 KiB is then refused from its header, on both ports, also when it is
//! pipelined right behind the wrong token. (They once stayed raised: the
//! connection was unauthenticated but could still make the server buffer
//! requests of up to `--max-frame-bytes`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;
mod server_support;

use std::io::Write;

use bytes::Bytes;
use naive_kv::SyncPolicy;
use naive_kv::proto::{self, ErrorCode, request::Command, response::Reply};
use naive_kv::server::ServerConfig;
use naive_kv::server::auth::AuthToken;
use resp_support::{RespServer, closed, exchange, expect};
use server_support::{TestServer, config, error_code, read_response, request, round_trip};

const TOKEN: &str = "correct horse battery staple";
/// Past the 64 KiB a request may have before authentication.
const LARGE: usize = 100 << 10;

fn auth(id: u64, token: &str) -> Vec<u8> {
    request(
        id,
        Command::Auth(proto::Auth {
            token: token.into(),
        }),
    )
}

fn large_put(id: u64) -> Vec<u8> {
    request(
        id,
        Command::Put(proto::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![b'v'; LARGE]),
            ..Default::default()
        }),
    )
}

fn native_server() -> TestServer {
    TestServer::start_with(ServerConfig {
        auth_token: AuthToken::new(TOKEN),
        ..config()
    })
}

/// A native connection that authenticated, sent a large put, and then a
/// wrong token.
fn native_deauthenticated(server: &TestServer) -> std::net::TcpStream {
    let mut stream = server.connect();
    let done = Some(Reply::Done(proto::Done {}));
    assert_eq!(round_trip(&mut stream, &auth(1, TOKEN)).reply, done);
    assert_eq!(round_trip(&mut stream, &large_put(2)).reply, done);
    stream
}

#[test]
fn native_a_large_frame_after_a_wrong_token_is_refused() {
    let server = native_server();
    let mut stream = native_deauthenticated(&server);
    let wrong = round_trip(&mut stream, &auth(3, "guess"));
    assert_eq!(error_code(&wrong), Some(ErrorCode::Unauthenticated));
    let refused = round_trip(&mut stream, &large_put(4));
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::FrameTooLarge),
        "{refused:?}"
    );
    assert!(read_response(&mut stream).is_none(), "not closed");
}

#[test]
fn native_a_large_frame_pipelined_behind_a_wrong_token_is_refused() {
    let server = native_server();
    let mut stream = native_deauthenticated(&server);
    let mut both = auth(3, "guess");
    both.extend(large_put(4));
    stream.write_all(&both).unwrap();
    let wrong = read_response(&mut stream).unwrap();
    assert_eq!(error_code(&wrong), Some(ErrorCode::Unauthenticated));
    let refused = read_response(&mut stream).unwrap();
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::FrameTooLarge),
        "{refused:?}"
    );
    assert!(read_response(&mut stream).is_none(), "not closed");
}

fn resp_deauthenticated(server: &RespServer) -> std::net::TcpStream {
    let mut s = server.connect();
    exchange(
        &mut s,
        &resp_support::request(&[b"AUTH", TOKEN.as_bytes()]),
        b"+OK\r\n",
    );
    let value = vec![b'v'; LARGE];
    exchange(
        &mut s,
        &resp_support::request(&[b"SET", b"k", &value]),
        b"+OK\r\n",
    );
    s
}

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const REFUSED: &[u8] = b"-ERR Protocol error: invalid bulk length\r\n";

#[test]
fn resp_a_large_bulk_after_a_wrong_password_is_refused() {
    let server = RespServer::start_configured(SyncPolicy::None, Some(TOKEN));
    let mut s = resp_deauthenticated(&server);
    exchange(
        &mut s,
        &resp_support::request(&[b"AUTH", b"guess"]),
        WRONGPASS,
    );
    let value = vec![b'v'; LARGE];
    s.write_all(&resp_support::request(&[b"SET", b"k", &value]))
        .unwrap();
    expect(&mut s, REFUSED);
    assert!(closed(&mut s));
}

#[test]
fn resp_a_large_bulk_pipelined_behind_a_wrong_password_is_refused() {
    let server = RespServer::start_configured(SyncPolicy::None, Some(TOKEN));
    let mut s = resp_deauthenticated(&server);
    let value = vec![b'v'; LARGE];
    let mut both = resp_support::request(&[b"AUTH", b"guess"]);
    both.extend(resp_support::request(&[b"SET", b"k", &value]));
    // The write may fail once the server has closed; the replies are read.
    let _ = s.write_all(&both);
    expect(&mut s, &[WRONGPASS, REFUSED].concat());
    assert!(closed(&mut s));
}
