//! EXISTS, TOUCH and DEL read their keys as MGET does (64 at a time, at
//! one moment) and keep no value they read, in a transaction too, where
//! GETs' values are not kept past their command either, and an MGET stops
//! reading where its reply passes the budget: over many large
//! values on disk the server's memory does not grow with the keys they
//! name. Alone in its test binary: it measures the process's resident
//! memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use naive_kv::SyncPolicy;
use resp_support::{RespServer, engine_counter, q};

/// The kB in `field` of /proc/self/status.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

#[test]
fn exists_and_del_of_many_large_values_on_disk_hold_none_of_them() {
    const KEYS: usize = 256;
    let server = RespServer::start_tuned(SyncPolicy::None, None, |_| {});
    let mut con = server.redis();
    // 256 values of 1 MiB, then 48 MiB of others: most of the large ones
    // are flushed to segments, from which each read is a fresh copy.
    let keys: Vec<String> = (0..KEYS).map(|i| format!("large:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let value: Vec<u8> = (0..(1 << 20) - 64).map(|b| (b * 7 + i) as u8).collect();
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .exec(&mut con)
            .unwrap();
    }
    for i in 0..48 {
        redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(vec![b'f'; (1 << 20) - 64])
            .exec(&mut con)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut flushes = 0;
    loop {
        // Until no flush has come for a while.
        std::thread::sleep(Duration::from_millis(500));
        let now = engine_counter(&mut con, "flushes");
        if now >= 6 && now == flushes {
            break;
        }
        assert!(Instant::now() < deadline, "the memtables were not flushed");
        flushes = now;
    }
    let mut exists: Vec<&str> = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    let mut del = exists.clone();
    del[0] = "DEL";
    // Each may fill the block cache (32 MiB) with values read, and the
    // threads that read leave freed copies in their allocator arenas (up
    // to 32 MiB seen): the bound does not grow with the keys. Holding what
    // it read, EXISTS grew by 184 MiB over 200 values, and a transaction's
    // EXISTS by 257 MiB over these 256.
    let bound_mb = 96;
    let exists_mb = peak_growth_mb(|| assert_eq!(q::<i64>(&mut con, &exists), KEYS as i64));
    // In a transaction (the counter's view of the keys), then TYPE of a key
    // EXISTS read, and GET of one (its value read again).
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &exists);
    q::<String>(&mut con, &["TYPE", &keys[0]]);
    q::<String>(&mut con, &["STRLEN", &keys[1]]);
    let exec_mb = peak_growth_mb(|| {
        let replies: (i64, String, i64) = redis::cmd("EXEC").query(&mut con).unwrap();
        assert_eq!(replies, (KEYS as i64, "string".into(), (1 << 20) - 64));
    });
    // GETs in a transaction: each value is held while its command runs
    // and by the reply, which the EXEC drops past the reply budget; the
    // transaction's view of the keys keeps none of them.
    q::<String>(&mut con, &["MULTI"]);
    for key in &keys {
        q::<String>(&mut con, &["GET", key]);
    }
    let exec_gets_mb = peak_growth_mb(|| {
        let error = redis::cmd("EXEC")
            .query::<redis::Value>(&mut con)
            .unwrap_err();
        assert!(error.to_string().contains("EXEC reply exceeds"), "{error}");
    });
    // MGET in a transaction: its values are counted as they are read, and
    // the reading stops where the reply passes the budget (read all at
    // once, they took 257 MiB).
    let mut mget: Vec<&str> = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &mget);
    let exec_mget_mb = peak_growth_mb(|| {
        let error = redis::cmd("EXEC")
            .query::<redis::Value>(&mut con)
            .unwrap_err();
        assert!(error.to_string().contains("EXEC reply exceeds"), "{error}");
    });
    let del_mb = peak_growth_mb(|| assert_eq!(q::<i64>(&mut con, &del), KEYS as i64));
    println!(
        "{KEYS} values of 1 MiB: the peak grew {exists_mb} MiB over EXISTS, {exec_mb} over \
         EXEC of EXISTS, {exec_gets_mb} over EXEC of GETs, {exec_mget_mb} over EXEC of MGET, {del_mb} over DEL"
    );
    assert!(
        exists_mb < bound_mb,
        "EXISTS held the values it read: +{exists_mb} MiB"
    );
    assert!(
        exec_mb < bound_mb,
        "EXISTS in a transaction held the values it read: +{exec_mb} MiB"
    );
    assert!(
        exec_gets_mb < bound_mb,
        "GETs in a transaction held the values they read: +{exec_gets_mb} MiB"
    );
    assert!(
        exec_mget_mb < bound_mb,
        "MGET in a transaction held the values it read: +{exec_mget_mb} MiB"
    );
    assert!(
        del_mb < bound_mb,
        "DEL held the values it read: +{del_mb} MiB"
    );
    assert_eq!(q::<i64>(&mut con, &exists), 0);
}

/// The growth of the anonymous resident memory over `run`, at its highest
/// (sampled every millisecond: values read from segments that are mapped
/// count as file pages, not here).
fn peak_growth_mb(run: impl FnOnce()) -> u64 {
    let before = status_kb("RssAnon:");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(status_kb("RssAnon:"));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    run();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap().saturating_sub(before) / 1024
}
