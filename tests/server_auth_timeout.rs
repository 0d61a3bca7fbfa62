//! With a token, a native connection that has not authenticated within the
//! auth timeout is closed, however busy it is; one that authenticated stays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::io::Write;
use std::time::{Duration, Instant};

use naive_kv::proto::{self, ErrorCode, request::Command};
use naive_kv::server::{ServerConfig, auth::AuthToken};
use server_support::{TestServer, error_code, read_response, request, round_trip};

#[test]
fn a_connection_that_does_not_authenticate_in_time_is_closed() {
    let server = TestServer::start_with(ServerConfig {
        workers: 2,
        auth_token: AuthToken::new("s3cret"),
        auth_timeout: Duration::from_millis(1000),
        ..ServerConfig::default()
    });
    let ping = |id| request(id, Command::Ping(proto::Ping {}));
    let auth = request(
        1,
        Command::Auth(proto::Auth {
            token: "s3cret".into(),
        }),
    );
    let mut authed = server.connect();
    assert_eq!(error_code(&round_trip(&mut authed, &auth)), None);
    let mut waiting = server.connect();
    let opened = Instant::now();
    while opened.elapsed() < Duration::from_millis(300) {
        let reply = round_trip(&mut waiting, &ping(2));
        assert_eq!(error_code(&reply), Some(ErrorCode::Unauthenticated));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Pings for 0.3 s of the 1 s (a margin for a loaded machine), then idle.
    std::thread::sleep(Duration::from_millis(900));
    let _ = waiting.write_all(&ping(3));
    assert!(read_response(&mut waiting).is_none(), "closed");
    assert_eq!(round_trip(&mut authed, &ping(4)).id, 4);
}
