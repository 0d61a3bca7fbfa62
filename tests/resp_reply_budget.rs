//! A Redis client that pipelines large GETs and MGETs and never reads its
//! replies keeps the server's memory within the documented bound
//! (docs/PROTOCOL.md, "Limits"), as on the native port: per connection, the
//! byte budget plus one reply larger than it; an MGET whose reply would
//! pass the largest reply is refused before it is built; and many such
//! clients together stay under the server-wide budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod non_reading;
mod resp_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use naive_kv::SyncPolicy;
use naive_kv::server::pipeline::ServerReplyBudget;
use non_reading::{flood, rss_kib};
use resp_support::{RespServer, exchange, expect, request};

const VALUE_BYTES: usize = 512 << 10;

/// The tests measure the process's memory: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn command(i: usize) -> Vec<u8> {
    if i.is_multiple_of(2) {
        request(&[b"GET", format!("big{}", i % 8).as_bytes()])
    } else {
        request(&[b"MGET", b"big0", b"big1", b"big2", b"big3"])
    }
}

/// Sets `big0`..`big7`, each `VALUE_BYTES` of one letter.
fn set_big_values(server: &RespServer) {
    let mut setter = server.redis();
    for k in 0..8u8 {
        redis::cmd("SET")
            .arg(format!("big{k}"))
            .arg(vec![b'a' + k; VALUE_BYTES])
            .exec(&mut setter)
            .unwrap();
    }
}

#[test]
fn never_reading_clients_of_large_gets_stay_within_the_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // MGETs of 2 MiB are allowed: the largest value is 4 MiB here.
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.max_reply_bytes = 1 << 20;
        c.max_bulk_bytes = 4 << 20;
    });
    set_big_values(&server);
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
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// `MGET` naming `big0` `times` times.
fn mget_repeated(times: usize) -> Vec<u8> {
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(std::iter::repeat_n(&b"big0"[..], times));
    request(&args)
}

#[test]
fn an_mget_past_the_largest_reply_is_refused_before_it_is_built() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The largest reply: the 1 MiB value limit (above the 256 KiB budget).
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.max_reply_bytes = 256 << 10;
    });
    let mut setter = server.redis();
    redis::cmd("SET")
        .arg("big0")
        .arg(vec![b'a'; VALUE_BYTES])
        .exec(&mut setter)
        .unwrap();
    let before = rss_kib();
    // Each MGET would be a 32 MiB reply: 4 connections would hold 128 MiB
    // if the server built one each.
    let (mut greedy, sent) = flood(|| server.connect(), |_| mget_repeated(64), 4, 100);
    std::thread::sleep(Duration::from_millis(500));
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!("non-reading MGET clients: {sent} requests sent, server RSS grew {grown_mib} MiB");
    assert!(grown_mib < 24, "RSS grew {grown_mib} MiB");
    expect(
        &mut greedy[0],
        b"-ERR MGET reply exceeds 1048576 bytes (the server's largest reply); ask for fewer keys\r\n",
    );
    // Within the bound, MGET answers as before.
    let mut s = server.connect();
    let mut want = format!("*1\r\n${VALUE_BYTES}\r\n").into_bytes();
    want.extend(vec![b'a'; VALUE_BYTES]);
    want.extend_from_slice(b"\r\n");
    s.write_all(&mget_repeated(1)).unwrap();
    let mut got = vec![0u8; want.len()];
    std::io::Read::read_exact(&mut s, &mut got).unwrap();
    assert!(got == want, "MGET of one 512 KiB value");
}

#[test]
fn many_non_reading_clients_together_stay_under_the_server_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 8 MiB per connection, 16 connections: 128 MiB held without the
    // server-wide budget of 8 MiB. A socket that takes nothing for 0.5 s
    // is closed, which frees the budget for a client that reads.
    let budget = Arc::new(ServerReplyBudget::new(8 << 20));
    let shared = budget.clone();
    let server = RespServer::start_tuned(SyncPolicy::None, None, move |c| {
        c.max_reply_bytes = 8 << 20;
        c.server_budget = shared;
        c.idle_timeout = Duration::from_millis(500);
    });
    set_big_values(&server);
    let before = rss_kib();
    let get = |i: usize| request(&[b"GET", format!("big{}", i % 8).as_bytes()]);
    let (greedy, sent) = flood(|| server.connect(), get, 16, 200);
    std::thread::sleep(Duration::from_millis(300));
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    let held_mib = budget.held() >> 20;
    println!(
        "16 non-reading clients: {sent} requests sent, {held_mib} MiB held, server RSS grew {grown_mib} MiB"
    );
    // The cap, passed by at most the replies under way when it was reached
    // (without it: 128 MiB): one 512 KiB reply per connection, counted by
    // the capacity of the buffer it went into (which may have doubled). RSS also counts the allocator's slack (freed
    // 512 KiB buffers it keeps; 16-60 MiB seen here under load), so it is
    // checked only against what the server would hold without the cap.
    assert!(held_mib < 16, "{held_mib} MiB held");
    assert!(grown_mib < 96, "RSS grew {grown_mib} MiB");
    // The greedy clients are closed once their sockets stall for 0.5 s;
    // then a client that reads is served.
    let started = std::time::Instant::now();
    let mut s = server.connect();
    exchange(
        &mut s,
        &request(&[b"STRLEN", b"big1"]),
        format!(":{VALUE_BYTES}\r\n").as_bytes(),
    );
    println!("a reading client waited {:?}", started.elapsed());
    drop((greedy, s));
    // Every closed connection gave its share back.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while budget.held() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(budget.held(), 0);
}

#[test]
fn a_keys_reply_past_the_largest_reply_is_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The largest reply: 16 KiB (both the budget and the value limit).
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.max_reply_bytes = 16 << 10;
        c.max_bulk_bytes = 16 << 10;
    });
    let mut setter = server.redis();
    // 2,000 keys of 20 bytes: a KEYS * reply of about 60 KiB.
    for chunk in 0..20 {
        let mut mset = redis::cmd("MSET");
        for i in 0..100 {
            mset.arg(format!("key-{:015}", chunk * 100 + i)).arg("v");
        }
        mset.exec(&mut setter).unwrap();
    }
    let mut s = server.connect();
    exchange(
        &mut s,
        &request(&[b"KEYS", b"*"]),
        b"-ERR KEYS reply exceeds 16384 bytes (the server's largest reply); use SCAN or a narrower pattern\r\n",
    );
    // A narrower pattern within the bound is answered in full.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("key-00000000000019*")
        .query(&mut setter)
        .unwrap();
    assert_eq!(keys.len(), 10, "{keys:?}");
    // The connection goes on.
    exchange(&mut s, &request(&[b"PING"]), b"+PONG\r\n");
}

/// MULTI, `gets` GETs of `big0`, a SET of `done`, EXEC (and KEYS first
/// when `with_keys`: a transaction the counter cannot run alone).
fn big_transaction(gets: usize, with_keys: bool) -> Vec<u8> {
    let mut out = request(&[b"MULTI"]);
    if with_keys {
        out.extend(request(&[b"KEYS", b"nothing-*"]));
    }
    for _ in 0..gets {
        out.extend(request(&[b"GET", b"big0"]));
    }
    out.extend(request(&[b"SET", b"done", b"yes"]));
    out.extend(request(&[b"EXEC"]));
    out
}

const EXEC_TOO_LARGE: &[u8] = b"-ERR EXEC reply exceeds 1048576 bytes (the server's largest reply); the transaction was applied but its replies were dropped\r\n";

/// A server whose largest reply is the 1 MiB value limit (above its
/// 256 KiB reply budget), holding a 512 KiB value at `big0`.
fn exec_server() -> RespServer {
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.max_reply_bytes = 256 << 10;
        c.max_bulk_bytes = 1 << 20;
    });
    let mut setter = server.redis();
    redis::cmd("SET")
        .arg("big0")
        .arg(vec![b'a'; VALUE_BYTES])
        .exec(&mut setter)
        .unwrap();
    server
}

#[test]
fn an_exec_past_the_largest_reply_is_refused_but_applied() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = exec_server();
    let queued = |s: &mut std::net::TcpStream, n: usize| {
        expect(s, b"+OK\r\n");
        for _ in 0..n {
            expect(s, b"+QUEUED\r\n");
        }
    };
    for with_keys in [false, true] {
        let mut s = server.connect();
        // Three GETs of 512 KiB: past 1 MiB; the SET still happens.
        s.write_all(&big_transaction(3, with_keys)).unwrap();
        queued(&mut s, 4 + usize::from(with_keys));
        expect(&mut s, EXEC_TOO_LARGE);
        exchange(&mut s, &request(&[b"GET", b"done"]), b"$3\r\nyes\r\n");
        exchange(&mut s, &request(&[b"DEL", b"done"]), b":1\r\n");
        // One GET fits: the replies come as always.
        s.write_all(&big_transaction(1, with_keys)).unwrap();
        queued(&mut s, 2 + usize::from(with_keys));
        let mut want = format!("*{}\r\n", 2 + usize::from(with_keys)).into_bytes();
        if with_keys {
            want.extend_from_slice(b"*0\r\n");
        }
        want.extend(format!("${VALUE_BYTES}\r\n").into_bytes());
        want.extend(vec![b'a'; VALUE_BYTES]);
        want.extend_from_slice(b"\r\n+OK\r\n");
        let mut got = vec![0u8; want.len()];
        std::io::Read::read_exact(&mut s, &mut got).unwrap();
        assert!(
            got == want,
            "EXEC of one 512 KiB GET (with KEYS: {with_keys})"
        );
    }
}

#[test]
fn non_reading_clients_of_huge_execs_stay_within_the_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = exec_server();
    let before = rss_kib();
    // Each EXEC would be a 32 MiB reply: 4 connections would hold 128 MiB
    // if the server built one each (and gigabytes if it queued them).
    let (mut greedy, sent) = flood(|| server.connect(), |_| big_transaction(64, false), 4, 50);
    std::thread::sleep(Duration::from_millis(500));
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!("non-reading EXEC clients: {sent} transactions sent, server RSS grew {grown_mib} MiB");
    assert!(grown_mib < 24, "RSS grew {grown_mib} MiB");
    expect(&mut greedy[0], b"+OK\r\n");
    for _ in 0..65 {
        expect(&mut greedy[0], b"+QUEUED\r\n");
    }
    expect(&mut greedy[0], EXEC_TOO_LARGE);
}
