//! Redis databases on the RESP port: SELECT isolates key spaces, FLUSHDB
//! empties only its own, FLUSHALL all of them (and not NaiveKV's other
//! reserved keys), MOVE and COPY ... DB cross them, MULTI/EXEC and
//! read-modify-writes use the selected one, RESET returns to 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use resp_support::{RespServer, fails, q};

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    q(con, &["GET", key])
}

fn keys(con: &mut redis::Connection) -> Vec<String> {
    let mut keys: Vec<String> = q(con, &["KEYS", "*"]);
    keys.sort();
    keys
}

fn scan_all(con: &mut redis::Connection) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut found = Vec::new();
    loop {
        let (next, page): (String, Vec<String>) = q(con, &["SCAN", &cursor, "COUNT", "2"]);
        found.extend(page);
        if next == "0" {
            found.sort();
            return found;
        }
        cursor = next;
    }
}

#[test]
fn select_isolates_databases() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SET", "k", "zero"]);
    q::<String>(&mut con, &["SET", "only0", "x"]);
    assert_eq!(q::<String>(&mut con, &["SELECT", "1"]), "OK");
    assert_eq!(get(&mut con, "k"), None);
    q::<String>(&mut con, &["SET", "k", "one"]);
    q::<String>(&mut con, &["MSET", "a", "1", "b", "2"]);
    assert_eq!(q::<i64>(&mut con, &["INCR", "counter"]), 1);
    assert_eq!(keys(&mut con), ["a", "b", "counter", "k"]);
    assert_eq!(scan_all(&mut con), ["a", "b", "counter", "k"]);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 4);
    let random: String = q(&mut con, &["RANDOMKEY"]);
    assert!(["a", "b", "counter", "k"].contains(&random.as_str()));
    q::<String>(&mut con, &["SELECT", "10"]);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0, "db 10 is not db 1");
    assert_eq!(q::<Option<String>>(&mut con, &["RANDOMKEY"]), None);
    q::<String>(&mut con, &["SELECT", "0"]);
    assert_eq!(get(&mut con, "k"), Some("zero".into()));
    assert_eq!(keys(&mut con), ["k", "only0"], "db 0 hides the others");
    assert_eq!(scan_all(&mut con), ["k", "only0"]);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 2);
    // Another connection starts in database 0.
    let mut other = server.redis();
    assert_eq!(get(&mut other, "k"), Some("zero".into()));
    // Errors as Redis words them.
    assert!(fails(&mut con, &["SELECT", "16"]).contains("DB index is out of range"));
    assert!(fails(&mut con, &["SELECT", "-1"]).contains("DB index is out of range"));
    assert!(fails(&mut con, &["SELECT", "x"]).contains("not an integer"));
    assert!(fails(&mut con, &["SWAPDB", "0", "1"]).contains("not supported"));
    let info: String = q(&mut con, &["INFO", "keyspace"]);
    assert!(info.contains("db0:keys=2,"), "{info}");
    assert!(info.contains("db1:keys=4,"), "{info}");
    assert!(!info.contains("db10:"), "{info}");
    let config: Vec<String> = q(&mut con, &["CONFIG", "GET", "databases"]);
    assert_eq!(config, ["databases", "16"]);
}

#[test]
fn flushdb_empties_only_its_database_and_flushall_every_one() {
    let server = RespServer::start();
    let mut con = server.redis();
    for db in ["0", "1", "2"] {
        q::<String>(&mut con, &["SELECT", db]);
        for i in 0..50 {
            q::<String>(&mut con, &["SET", &format!("key{i}"), db]);
        }
    }
    q::<String>(&mut con, &["SELECT", "1"]);
    assert_eq!(q::<String>(&mut con, &["FLUSHDB"]), "OK");
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0);
    q::<String>(&mut con, &["SET", "after", "1"]);
    assert_eq!(
        get(&mut con, "after"),
        Some("1".into()),
        "writes after FLUSHDB stay"
    );
    q::<String>(&mut con, &["SELECT", "2"]);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 50);
    q::<String>(&mut con, &["SELECT", "0"]);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 50);
    assert_eq!(q::<String>(&mut con, &["FLUSHDB", "ASYNC"]), "OK");
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0);
    q::<String>(&mut con, &["SELECT", "2"]);
    assert_eq!(
        q::<i64>(&mut con, &["DBSIZE"]),
        50,
        "FLUSHDB in 0 keeps db 2"
    );
    assert_eq!(q::<String>(&mut con, &["FLUSHALL", "SYNC"]), "OK");
    for db in ["0", "1", "2"] {
        q::<String>(&mut con, &["SELECT", db]);
        assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0, "db {db}");
    }
    assert!(fails(&mut con, &["FLUSHDB", "LATER"]).contains("syntax error"));
}

#[test]
fn flushall_keeps_reserved_keys_that_are_not_databases() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SET", "user", "1"]);
    // The native protocol sees the key space as it is: put a key of another
    // NaiveKV feature (the cluster's, say) there.
    let reserved = [naive_kv::keyspace::INTERNAL_PREFIX, b"raft/term"].concat();
    actix::System::new().block_on(async {
        let client = naive_kv::client::Client::connect(server.native_addr)
            .await
            .unwrap();
        client.put(reserved.clone(), b"7".to_vec()).await.unwrap();
        assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 1, "db 0 does not count it");
        assert_eq!(q::<String>(&mut con, &["FLUSHALL"]), "OK");
        assert_eq!(get(&mut con, "user"), None);
        let kept = client.get(reserved.clone()).await.unwrap();
        assert_eq!(kept.as_deref(), Some(&b"7"[..]));
    });
    // Database 0 does not serve reserved keys.
    let refused = redis::cmd("GET")
        .arg(&reserved[..])
        .query::<Option<Vec<u8>>>(&mut con);
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("reserved prefix"), "{error}");
}

#[test]
fn move_and_copy_cross_databases() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SET", "k", "v"]);
    assert_eq!(q::<i64>(&mut con, &["MOVE", "k", "3"]), 1);
    assert_eq!(get(&mut con, "k"), None);
    assert_eq!(q::<i64>(&mut con, &["MOVE", "k", "3"]), 0, "absent source");
    q::<String>(&mut con, &["SET", "k", "again"]);
    assert_eq!(q::<i64>(&mut con, &["MOVE", "k", "3"]), 0, "target exists");
    assert_eq!(get(&mut con, "k"), Some("again".into()));
    assert!(fails(&mut con, &["MOVE", "k", "0"]).contains("source and destination"));
    assert!(fails(&mut con, &["MOVE", "k", "16"]).contains("out of range"));
    assert_eq!(q::<i64>(&mut con, &["COPY", "k", "c", "DB", "4"]), 1);
    q::<String>(&mut con, &["SELECT", "3"]);
    assert_eq!(get(&mut con, "k"), Some("v".into()));
    q::<String>(&mut con, &["SELECT", "4"]);
    assert_eq!(get(&mut con, "c"), Some("again".into()));
    assert_eq!(q::<i64>(&mut con, &["MOVE", "c", "0"]), 1);
    q::<String>(&mut con, &["SELECT", "0"]);
    assert_eq!(get(&mut con, "c"), Some("again".into()));
}

#[test]
fn transactions_and_reset_use_the_selected_database() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SELECT", "5"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "t", "1"]);
    q::<String>(&mut con, &["INCR", "t"]);
    let replies: Vec<redis::Value> = q(&mut con, &["EXEC"]);
    assert_eq!(replies.len(), 2);
    assert_eq!(get(&mut con, "t"), Some("2".into()));
    let reset: String = q(&mut con, &["RESET"]);
    assert_eq!(reset, "RESET");
    assert_eq!(get(&mut con, "t"), None, "RESET returns to database 0");
    q::<String>(&mut con, &["SELECT", "5"]);
    assert_eq!(get(&mut con, "t"), Some("2".into()));
}

#[test]
fn the_number_of_databases_is_configurable() {
    let server = RespServer::start_tuned(naive_kv::SyncPolicy::None, None, |config| {
        config.databases = 2;
    });
    let mut con = server.redis();
    assert_eq!(q::<String>(&mut con, &["SELECT", "1"]), "OK");
    assert!(fails(&mut con, &["SELECT", "2"]).contains("DB index is out of range"));
}

/// `segment_bytes` from `INFO engine`.
fn segment_bytes(con: &mut redis::Connection) -> u64 {
    let info: String = q(con, &["INFO", "engine"]);
    info.lines()
        .find_map(|line| line.strip_prefix("segment_bytes:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no segment_bytes in {info}"))
}

/// FLUSHALL of 1M keys: one range delete, then compaction gives the space
/// back. Prints the figures; `NAIVEKV_LONG_TESTS=1` runs it (use
/// `--release` for figures worth reporting).
#[test]
fn flushall_of_a_million_keys() {
    if std::env::var_os("NAIVEKV_LONG_TESTS").is_none_or(|v| v == "0" || v.is_empty()) {
        return;
    }
    const KEYS: usize = 1_000_000;
    let server = RespServer::start();
    let mut con = server.redis();
    let loading = std::time::Instant::now();
    for chunk in 0..KEYS / 1000 {
        let mut mset = redis::cmd("MSET");
        for i in chunk * 1000..(chunk + 1) * 1000 {
            mset.arg(format!("key:{i:09}"))
                .arg(format!("value-{i:09}-{}", "x".repeat(40)));
        }
        mset.query::<()>(&mut con).unwrap();
    }
    let loaded = loading.elapsed();
    let started = std::time::Instant::now();
    while segment_bytes(&mut con) == 0 && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let before = segment_bytes(&mut con);
    let flushing = std::time::Instant::now();
    assert_eq!(q::<String>(&mut con, &["FLUSHALL"]), "OK");
    let flushed = flushing.elapsed();
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0);
    assert_eq!(
        q::<Option<String>>(&mut con, &["GET", "key:000000001"]),
        None
    );
    let reclaiming = std::time::Instant::now();
    let mut after = segment_bytes(&mut con);
    while after * 10 > before && reclaiming.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        after = segment_bytes(&mut con);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "{KEYS} keys loaded in {loaded:?}; FLUSHALL answered in {flushed:?}; segments \
         {before} B before, {after} B {:?} after it; load average {load}",
        reclaiming.elapsed()
    );
    assert!(
        after * 10 <= before,
        "space not back after 120 s: {after} of {before} B"
    );
}
