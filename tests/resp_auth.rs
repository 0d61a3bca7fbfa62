//! AUTH on the Redis listener, byte for byte: commands wait for the token,
//! wrong tokens are refused in Redis's words, and the third one closes the
//! connection.

mod resp_support;

use naive_kv::SyncPolicy;
use resp_support::{RespServer, closed, exchange};

#[test]
fn commands_wait_for_the_right_token() {
    let server = RespServer::start_configured(SyncPolicy::None, Some("s3cret"));
    let mut stream = server.connect();
    exchange(
        &mut stream,
        b"GET k\r\n",
        b"-NOAUTH Authentication required.\r\n",
    );
    exchange(
        &mut stream,
        b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n",
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    exchange(
        &mut stream,
        b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n",
        b"+OK\r\n",
    );
    exchange(&mut stream, b"SET k v\r\n", b"+OK\r\n");
    exchange(&mut stream, b"GET k\r\n", b"$1\r\nv\r\n");
    server.stop().unwrap();
}

#[test]
fn three_wrong_tokens_close_the_connection() {
    let server = RespServer::start_configured(SyncPolicy::None, Some("s3cret"));
    let mut stream = server.connect();
    let refused = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    for _ in 0..3 {
        exchange(&mut stream, b"AUTH default nope\r\n", refused);
    }
    assert!(closed(&mut stream));
    server.stop().unwrap();
}

#[test]
fn redis_clients_authenticate_with_the_token() {
    let server = RespServer::start_configured(SyncPolicy::None, Some("s3cret"));
    let url = format!("redis://:s3cret@{}/", server.addr);
    let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
    let () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query(&mut connection)
        .unwrap();
    let value: String = redis::cmd("GET").arg("a").query(&mut connection).unwrap();
    assert_eq!(value, "1");
    server.stop().unwrap();
}
