//! A Redis client that pipelines large GETs and MGETs and never reads its
//! replies keeps the server's memory within the documented bound
//! (docs/PROTOCOL.md, "Limits"), as on the native port: per connection, the
//! byte budget plus one reply larger than it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod non_reading;
mod resp_support;

use std::io::Write;
use std::time::Duration;

use naive_kv::SyncPolicy;
use non_reading::{flood, rss_kib};
use resp_support::{RespServer, exchange, expect, request};

const VALUE_BYTES: usize = 512 << 10;

fn command(i: usize) -> Vec<u8> {
    if i.is_multiple_of(2) {
        request(&[b"GET", format!("big{}", i % 8).as_bytes()])
    } else {
        request(&[b"MGET", b"big0", b"big1", b"big2", b"big3"])
    }
}

#[test]
fn never_reading_clients_of_large_gets_stay_within_the_budget() {
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| c.max_reply_bytes = 1 << 20);
    let mut setter = server.redis();
    for k in 0..8u8 {
        let value = vec![b'a' + k; VALUE_BYTES];
        redis::cmd("SET")
            .arg(format!("big{k}"))
            .arg(value)
            .exec(&mut setter)
            .unwrap();
    }
    let before = rss_kib();
    // 400 requests of 1.25 MiB of replies on average: 500 MiB per
    // connection if the server queued them all.
    let (mut greedy, sent) = flood(|| server.connect(), command, 4, 400);
    std::thread::sleep(Duration::from_millis(500));
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!("non-reading clients: {sent} requests sent, server RSS grew {grown_mib} MiB");
    assert!(grown_mib < 48, "RSS grew {grown_mib} MiB");

    // The replies were only delayed: the first ones come whole, in order.
    let mut stream = greedy.remove(0);
    let bulk = |k: u8| {
        let mut out = format!("${VALUE_BYTES}\r\n").into_bytes();
        out.extend(vec![b'a' + k; VALUE_BYTES]);
        out.extend_from_slice(b"\r\n");
        out
    };
    expect(&mut stream, &bulk(0));
    expect(&mut stream, b"*4\r\n");
    for k in 0..4 {
        expect(&mut stream, &bulk(k));
    }
    expect(&mut stream, &bulk(2));
}

#[test]
fn a_large_reply_behind_a_held_read_does_not_stall_it() {
    // Durable writes: the GET is held until the SET is acknowledged, and
    // meanwhile the ECHO (answered at once) fills the budget behind it.
    let server = RespServer::start_tuned(SyncPolicy::Always, None, |c| {
        c.max_reply_bytes = 64 << 10;
    });
    let mut s = server.connect();
    let echo = vec![b'e'; 512 << 10];
    let mut pipeline = request(&[b"SET", b"k", b"v"]);
    pipeline.extend(request(&[b"GET", b"k"]));
    pipeline.extend(request(&[b"ECHO", &echo]));
    s.write_all(&pipeline).unwrap();
    expect(&mut s, b"+OK\r\n$1\r\nv\r\n");
    let mut bulk = format!("${}\r\n", echo.len()).into_bytes();
    bulk.extend_from_slice(&echo);
    bulk.extend_from_slice(b"\r\n");
    expect(&mut s, &bulk);
    exchange(&mut s, &request(&[b"PING"]), b"+PONG\r\n");
}
