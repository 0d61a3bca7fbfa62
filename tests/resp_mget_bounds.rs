//! MGET reads its keys 64 at a time (docs/PROTOCOL.md, "Limits"): one
//! whose reply would pass the server's largest reply is refused without
//! reading the groups after the one that passed it, and one of a
//! million absent keys lets the other connections of its worker thread be
//! answered while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use naive_kv::SyncPolicy;
use resp_support::{RespServer, exchange, expect, q, request};

/// The engine's `gets` counter, from `INFO engine`.
fn gets(con: &mut redis::Connection) -> u64 {
    let info: String = q(con, &["INFO", "engine"]);
    info.lines()
        .find_map(|line| line.strip_prefix("gets:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gets in {info}"))
}

#[test]
fn an_mget_past_the_largest_reply_stops_reading_there() {
    // The largest reply: the 1 MiB value limit (above the 256 KiB budget).
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.max_reply_bytes = 256 << 10;
    });
    let mut con = server.redis();
    redis::cmd("SET")
        .arg("big")
        .arg(vec![b'a'; 512 << 10])
        .exec(&mut con)
        .unwrap();
    let before = gets(&mut con);
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(std::iter::repeat_n(&b"big"[..], 1000));
    let mut s = server.connect();
    exchange(
        &mut s,
        &request(&args),
        b"-ERR MGET reply exceeds 1048576 bytes (the server's largest reply); ask for fewer keys\r\n",
    );
    // The second value passes 1 MiB: the first group of 64 keys is read
    // (together, from memory: values shared, not copied), not 1000.
    let read = gets(&mut con) - before;
    assert!(read <= 64 + 2, "{read} gets for a refused MGET");
}

#[test]
fn an_mget_of_a_million_absent_keys_does_not_hold_its_thread() {
    const KEYS: usize = 1_000_000;
    // One worker: both connections share its thread. A budget the
    // million-element reply fits in.
    let server = RespServer::start_tuned(SyncPolicy::None, None, |c| {
        c.workers = 1;
        c.max_reply_bytes = 32 << 20;
    });
    let mut pinger = server.connect();
    exchange(&mut pinger, &request(&[b"PING"]), b"+PONG\r\n");
    let done = Arc::new(AtomicBool::new(false));
    let pinging = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let sent = Instant::now();
                exchange(&mut pinger, &request(&[b"PING"]), b"+PONG\r\n");
                slowest = slowest.max(sent.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            slowest
        })
    };
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("absent{i}").into_bytes())
        .collect();
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(keys.iter().map(|k| &k[..]));
    let mut s = server.connect();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let started = Instant::now();
    s.write_all(&request(&args)).unwrap();
    expect(&mut s, format!("*{KEYS}\r\n").as_bytes());
    let mut nils = vec![0u8; KEYS * 5];
    s.read_exact(&mut nils).unwrap();
    assert!(nils.chunks(5).all(|nil| nil == b"$-1\r\n"));
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let slowest = pinging.join().unwrap();
    println!("MGET of {KEYS} absent keys: {took:?}; slowest PING beside it {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a PING waited {slowest:?} behind the MGET"
    );
}
