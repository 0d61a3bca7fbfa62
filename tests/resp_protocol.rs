//! The RESP wire contract byte for byte: exact error texts, protocol
//! errors closing the connection, the bulk limit checked before reading,
//! RESP3 nulls after HELLO 3, inline commands, pipelining, QUIT.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::Write;

use resp_support::{RespServer, closed, exchange, expect, request};

#[test]
fn error_replies_are_worded_as_redis() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(
        &mut s,
        &request(&[b"foo", b"a", b"b"]),
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
    );
    exchange(
        &mut s,
        &request(&[b"GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    exchange(
        &mut s,
        &request(&[b"SET", b"k", b"v", b"NX", b"XX"]),
        b"-ERR syntax error\r\n",
    );
    exchange(
        &mut s,
        &request(&[b"SELECT", b"16"]),
        b"-ERR DB index is out of range\r\n",
    );
    exchange(
        &mut s,
        &request(&[b"HELLO", b"4"]),
        b"-NOPROTO unsupported protocol version\r\n",
    );
    exchange(
        &mut s,
        &request(&[b"CLIENT", b"SETINFO", b"lib-ver", b"1.0"]),
        b"+OK\r\n",
    );
    // The connection is still usable after error replies.
    exchange(&mut s, &request(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn malformed_input_gets_a_protocol_error_and_is_closed() {
    let server = RespServer::start();
    for (input, reply) in [
        (
            &b"*1\r\n$x\r\n"[..],
            &b"-ERR Protocol error: invalid bulk length\r\n"[..],
        ),
        (
            b"*1\r\n+PING\r\n",
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*z\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"GET \"k\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        // Lengths as Redis's string2ll reads them: no leading zeros.
        (
            b"*01\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$04\r\nPING\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
    ] {
        let mut s = server.connect();
        exchange(&mut s, input, reply);
        assert!(
            closed(&mut s),
            "closed after {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn oversized_bulk_is_refused_from_its_header() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(&mut s, &request(&[b"SET", b"a", b"b"]), b"+OK\r\n");
    // The server allows 1 MiB; 2 MB is declared and never sent.
    exchange(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    );
    assert!(closed(&mut s));
    // A bulk at the limit is fine.
    let mut s = server.connect();
    let value = vec![b'v'; 1 << 20];
    exchange(&mut s, &request(&[b"SET", b"big", &value]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"STRLEN", b"big"]), b":1048576\r\n");
}

#[test]
fn hello_3_switches_nulls_and_maps() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(&mut s, &request(&[b"GET", b"none"]), b"$-1\r\n");
    s.write_all(&request(&[b"HELLO", b"3"])).unwrap();
    expect(
        &mut s,
        b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n\
          $5\r\nproto\r\n:3\r\n$2\r\nid\r\n",
    );
    let mut id = Vec::new();
    let mut byte = [0u8; 1];
    while id.last() != Some(&b'\n') {
        std::io::Read::read_exact(&mut s, &mut byte).unwrap();
        id.push(byte[0]);
    }
    expect(
        &mut s,
        b"$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
          $7\r\nmodules\r\n*0\r\n",
    );
    exchange(&mut s, &request(&[b"GET", b"none"]), b"_\r\n");
    exchange(&mut s, &request(&[b"MGET", b"none"]), b"*1\r\n_\r\n");
    exchange(&mut s, &request(&[b"CLIENT", b"GETNAME"]), b"_\r\n");
    exchange(
        &mut s,
        &request(&[b"CONFIG", b"GET", b"appendonly"]),
        b"%1\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n",
    );
    s.write_all(&request(&[b"HELLO", b"2"])).unwrap();
    expect(&mut s, b"*14\r\n");
    // Skip the rest of the HELLO reply: everything up to the empty modules.
    let mut tail = Vec::new();
    while !tail.ends_with(b"$7\r\nmodules\r\n*0\r\n") {
        std::io::Read::read_exact(&mut s, &mut byte).unwrap();
        tail.push(byte[0]);
    }
    exchange(&mut s, &request(&[b"GET", b"none"]), b"$-1\r\n");
}

#[test]
fn inline_commands_and_empty_lines() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(&mut s, b"PING\r\n", b"+PONG\r\n");
    exchange(
        &mut s,
        b"\r\nSET greeting \"hello world\"\r\nGET greeting\nEXISTS greeting nope\r\n",
        b"+OK\r\n$11\r\nhello world\r\n:1\r\n",
    );
}

#[test]
fn pipelined_requests_answer_in_order_then_quit_closes() {
    let server = RespServer::start_with(naive_kv::SyncPolicy::Always);
    let mut s = server.connect();
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..200 {
        let key = format!("k{}", i % 13);
        let value = format!("v{i}");
        bytes.extend(request(&[b"SET", key.as_bytes(), value.as_bytes()]));
        bytes.extend(request(&[b"GET", key.as_bytes()]));
        bytes.extend(request(&[b"ECHO", b"m"]));
        expected.extend_from_slice(b"+OK\r\n");
        expected.extend(format!("${}\r\n{value}\r\n", value.len()).into_bytes());
        expected.extend_from_slice(b"$1\r\nm\r\n");
    }
    bytes.extend(request(&[b"QUIT"]));
    bytes.extend(request(&[b"PING"]));
    expected.extend_from_slice(b"+OK\r\n");
    exchange(&mut s, &bytes, &expected);
    assert!(
        closed(&mut s),
        "QUIT closes; the PING after it is not served"
    );
}

#[test]
fn shares_the_database_with_the_native_server() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(&mut s, &request(&[b"SET", b"shared", b"yes"]), b"+OK\r\n");
    let native = std::net::TcpStream::connect(server.native_addr);
    assert!(native.is_ok(), "the native port is served too");
    server.stop().unwrap();
}

/// INFO's sections are separated by a blank line, with none after the last,
/// as Redis writes them.
#[test]
fn info_sections_are_separated_as_in_redis() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(
        &mut s,
        &request(&[b"INFO", b"keyspace"]),
        b"$12\r\n# Keyspace\r\n\r\n",
    );
    let mut con = server.redis();
    let text: String = redis::cmd("INFO")
        .arg("server")
        .arg("keyspace")
        .query(&mut con)
        .unwrap();
    assert!(text.starts_with("# Server\r\n"), "{text:?}");
    assert!(text.ends_with("\r\n\r\n# Keyspace\r\n"), "{text:?}");
}
