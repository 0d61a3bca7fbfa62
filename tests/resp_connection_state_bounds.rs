//! What a Redis connection keeps between its requests is bounded
//! (docs/PROTOCOL.md, "Limits"): the commands MULTI queues (to the largest
//! request; past it the command is refused and EXEC aborts), the keys it
//! watches (each once, at most 1 MiB of them, nothing kept for a refused
//! WATCH), and its client name and SETINFO values (at most 1 KiB).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::{Read, Write};

use naive_kv::SyncPolicy;
use resp_support::{RespServer, exchange, request};

#[test]
fn a_multi_queue_past_the_largest_request_is_refused_and_exec_aborts() {
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.max_request_bytes = 1 << 20;
    });
    let mut s = server.connect();
    exchange(&mut s, &request(&[b"MULTI"]), b"+OK\r\n");
    let value = vec![b'v'; 300 << 10];
    for key in [&b"a"[..], b"b", b"c"] {
        exchange(&mut s, &request(&[b"SET", key, &value]), b"+QUEUED\r\n");
    }
    exchange(
        &mut s,
        &request(&[b"SET", b"d", &value]),
        b"-ERR MULTI queue exceeds 1048576 bytes; the transaction will be discarded at EXEC\r\n",
    );
    exchange(
        &mut s,
        &request(&[b"EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    // Nothing ran, and the connection can open a new transaction.
    exchange(&mut s, &request(&[b"EXISTS", b"a"]), b":0\r\n");
    exchange(&mut s, &request(&[b"MULTI"]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"SET", b"a", &value]), b"+QUEUED\r\n");
    exchange(&mut s, &request(&[b"EXEC"]), b"*1\r\n+OK\r\n");
}

#[test]
fn a_refused_watch_watches_nothing() {
    let server = RespServer::start();
    let mut s = server.connect();
    // Over the engine's 64 KiB key limit: refused, and not kept, so it
    // cannot break the EXEC below.
    let long_key = vec![b'k'; 70 << 10];
    s.write_all(&request(&[b"WATCH", b"a", &long_key])).unwrap();
    let reply = read_line(&mut s);
    assert!(reply.starts_with("-ERR key too large"), "{reply}");
    exchange(&mut s, &request(&[b"SET", b"a", b"changed"]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"MULTI"]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"SET", b"b", b"1"]), b"+QUEUED\r\n");
    exchange(&mut s, &request(&[b"EXEC"]), b"*1\r\n+OK\r\n");
}

#[test]
fn watched_keys_are_kept_once_and_bounded() {
    let server = RespServer::start();
    let mut s = server.connect();
    // One key named 100 000 times is one watched key.
    let mut args: Vec<&[u8]> = vec![b"WATCH"];
    args.extend(std::iter::repeat_n(&b"same"[..], 100_000));
    exchange(&mut s, &request(&args), b"+OK\r\n");
    // 20 000 distinct keys of 40 bytes, with their overhead, pass 1 MiB.
    let keys: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("{i:040}").into_bytes())
        .collect();
    let mut args: Vec<&[u8]> = vec![b"WATCH"];
    args.extend(keys.iter().map(|k| &k[..]));
    exchange(
        &mut s,
        &request(&args),
        b"-ERR WATCH would watch more than 1048576 bytes of keys on this connection; \
          EXEC, DISCARD or UNWATCH first\r\n",
    );
    // Half of them fit; once unwatched, the room is back.
    let mut half: Vec<&[u8]> = vec![b"WATCH"];
    half.extend(keys.iter().take(10_000).map(|k| &k[..]));
    exchange(&mut s, &request(&half), b"+OK\r\n");
    exchange(&mut s, &request(&[b"UNWATCH"]), b"+OK\r\n");
    exchange(&mut s, &request(&half), b"+OK\r\n");
    // A key watched again keeps its first point: a write between the two
    // WATCHes still aborts EXEC, as in Redis.
    exchange(&mut s, &request(&[b"WATCH", b"same"]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"SET", b"same", b"1"]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"WATCH", b"same"]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"MULTI"]), b"+OK\r\n");
    exchange(&mut s, &request(&[b"EXEC"]), b"*-1\r\n");
}

#[test]
fn client_names_and_setinfo_values_are_held_to_a_kibibyte() {
    let server = RespServer::start();
    let mut s = server.connect();
    let long = vec![b'n'; 1025];
    exchange(
        &mut s,
        &request(&[b"CLIENT", b"SETNAME", &long]),
        b"-ERR client name longer than 1024 bytes\r\n",
    );
    exchange(
        &mut s,
        &request(&[b"CLIENT", b"SETINFO", b"LIB-NAME", &long]),
        b"-ERR lib-name longer than 1024 bytes\r\n",
    );
    exchange(&mut s, &request(&[b"CLIENT", b"GETNAME"]), b"$-1\r\n");
    let longest = vec![b'n'; 1024];
    exchange(
        &mut s,
        &request(&[b"CLIENT", b"SETNAME", &longest]),
        b"+OK\r\n",
    );
}

/// One reply line, without its `\r\n`.
fn read_line(stream: &mut std::net::TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8_lossy(&line).into_owned()
}
