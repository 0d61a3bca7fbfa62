//! ROLE on a single node: Redis's master reply, with no replicas, byte
//! for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::{Read, Write};
use std::time::Duration;

use redis::Value;
use resp_support::{RespServer, q};

#[test]
fn a_single_node_is_a_master_with_no_replicas() {
    let server = RespServer::start();
    let mut con = server.redis();
    let role: Value = q(&mut con, &["ROLE"]);
    assert_eq!(
        role,
        Value::Array(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(0),
            Value::Array(vec![]),
        ])
    );
    // The exact bytes a Redis master with no replicas answers.
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(b"ROLE\r\n").unwrap();
    let expected = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, expected, "{}", String::from_utf8_lossy(&got));
}
