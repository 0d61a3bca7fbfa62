//! Every served command through the `redis` crate (redis-rs), RESP2 and
//! RESP3, against a real server: values read back, not just "no error".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use redis::{Value, cmd};
use resp_support::{RespServer, engine_counter, fails, q};

#[test]
fn strings() {
    let server = RespServer::start();
    let mut con = server.redis();
    assert_eq!(q::<String>(&mut con, &["SET", "k", "v"]), "OK");
    assert_eq!(
        q::<Option<String>>(&mut con, &["GET", "k"]).as_deref(),
        Some("v")
    );
    assert_eq!(q::<Option<String>>(&mut con, &["GET", "nope"]), None);
    assert_eq!(
        q::<Option<String>>(&mut con, &["SET", "k", "w", "NX"]),
        None
    );
    assert_eq!(
        q::<Option<String>>(&mut con, &["SET", "k", "w", "XX"]).as_deref(),
        Some("OK")
    );
    assert_eq!(
        q::<Option<String>>(&mut con, &["SET", "new", "x", "XX"]),
        None
    );
    assert_eq!(
        q::<Option<String>>(&mut con, &["SET", "k", "z", "GET"]).as_deref(),
        Some("w")
    );
    assert_eq!(q::<i64>(&mut con, &["SETNX", "k", "q"]), 0);
    assert_eq!(q::<i64>(&mut con, &["SETNX", "fresh", "q"]), 1);
    assert_eq!(q::<String>(&mut con, &["MSET", "a", "1", "b", "2"]), "OK");
    let got: Vec<Option<String>> = q(&mut con, &["MGET", "a", "nope", "b", "k"]);
    assert_eq!(
        got,
        vec![Some("1".into()), None, Some("2".into()), Some("z".into())]
    );
    assert_eq!(q::<i64>(&mut con, &["APPEND", "a", "23"]), 3);
    assert_eq!(q::<i64>(&mut con, &["APPEND", "app", "xy"]), 2);
    assert_eq!(q::<i64>(&mut con, &["STRLEN", "a"]), 3);
    assert_eq!(q::<i64>(&mut con, &["STRLEN", "nope"]), 0);
    assert_eq!(q::<i64>(&mut con, &["INCR", "a"]), 124);
    assert_eq!(q::<i64>(&mut con, &["DECR", "a"]), 123);
    assert_eq!(q::<i64>(&mut con, &["INCRBY", "n", "10"]), 10);
    assert_eq!(q::<i64>(&mut con, &["DECRBY", "n", "25"]), -15);
    assert_eq!(
        q::<Option<String>>(&mut con, &["GET", "n"]).as_deref(),
        Some("-15")
    );
    assert!(fails(&mut con, &["INCR", "k"]).contains("not an integer"));
    // A refused SET (expiry checks in tests/resp_expiry.rs) changes nothing.
    assert!(fails(&mut con, &["SET", "k", "v", "EX", "0"]).contains("invalid expire time"));
    assert_eq!(
        q::<Option<String>>(&mut con, &["GET", "k"]).as_deref(),
        Some("z")
    );
}

#[test]
fn key_space() {
    let server = RespServer::start();
    let mut con = server.redis();
    for i in 0..30 {
        let _: () = q(&mut con, &["SET", &format!("user:{i:02}"), "x"]);
    }
    let _: () = q(&mut con, &["MSET", "other", "1", "zz", "2"]);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", "other", "nope", "other"]), 2);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 32);
    let mut keys: Vec<String> = q(&mut con, &["KEYS", "user:1?"]);
    keys.sort();
    assert_eq!(keys.len(), 10);
    assert_eq!(keys[0], "user:10");
    let keys: Vec<String> = q(&mut con, &["KEYS", "*"]);
    assert_eq!(keys.len(), 32);
    // A full SCAN in pages of 7 visits every matching key once.
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let mut rounds = 0;
    loop {
        let (next, page): (String, Vec<String>) = q(
            &mut con,
            &["SCAN", &cursor, "MATCH", "user:*", "COUNT", "7"],
        );
        assert!(page.len() <= 7);
        seen.extend(page);
        rounds += 1;
        if next == "0" {
            break;
        }
        assert!(next.bytes().all(|b| b.is_ascii_digit()), "cursor {next}");
        cursor = next;
    }
    assert!(rounds >= 5);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30);
    assert_eq!(q::<i64>(&mut con, &["DEL", "other", "zz", "nope", "zz"]), 2);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", "other", "zz"]), 0);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 30);
}

#[test]
fn exists_and_del_count_keys_in_segments_memory_and_nowhere_across_groups() {
    let server = RespServer::start();
    let mut con = server.redis();
    // 40 values of 1 MiB fill half the default 64 MiB of memtables: the
    // memtable holding them is flushed into a segment.
    let big = vec![b'v'; (1 << 20) - 64];
    for i in 0..40 {
        redis::cmd("SET")
            .arg(format!("big:{i}"))
            .arg(&big)
            .exec(&mut con)
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while engine_counter(&mut con, "flushes") == 0 {
        assert!(std::time::Instant::now() < deadline, "no flush");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for i in 0..100 {
        let _: () = q(&mut con, &["SET", &format!("small:{i}"), "x"]);
    }
    // 152 keys: three groups of reads (64 at a time), repeats counted.
    let mut keys: Vec<String> = (0..40).map(|i| format!("big:{i}")).collect();
    keys.extend((0..100).map(|i| format!("small:{i}")));
    keys.extend((0..10).map(|i| format!("absent:{i}")));
    keys.extend(["big:0".to_string(), "small:99".to_string()]);
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    assert_eq!(q::<i64>(&mut con, &exists), 142);
    let mut touch = exists.clone();
    touch[0] = "TOUCH";
    assert_eq!(q::<i64>(&mut con, &touch), 142);
    // DEL counts each key once.
    let mut del = vec!["DEL"];
    del.extend(
        keys.iter()
            .map(String::as_str)
            .filter(|k| !k.starts_with("small:5")),
    );
    assert_eq!(q::<i64>(&mut con, &del), 140 - 11);
    assert_eq!(q::<i64>(&mut con, &exists), 11);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 11);
}

#[test]
fn connection_and_server_commands() {
    let server = RespServer::start();
    let mut con = server.redis();
    assert_eq!(q::<String>(&mut con, &["PING"]), "PONG");
    assert_eq!(q::<String>(&mut con, &["PING", "hi"]), "hi");
    assert_eq!(q::<String>(&mut con, &["ECHO", "marker"]), "marker");
    assert_eq!(q::<String>(&mut con, &["SELECT", "0"]), "OK");
    assert!(fails(&mut con, &["SELECT", "16"]).contains("DB index is out of range"));
    assert_eq!(
        q::<String>(&mut con, &["CLIENT", "SETNAME", "tester"]),
        "OK"
    );
    assert_eq!(q::<String>(&mut con, &["CLIENT", "GETNAME"]), "tester");
    assert!(q::<i64>(&mut con, &["CLIENT", "ID"]) > 0);
    assert_eq!(
        q::<String>(&mut con, &["CLIENT", "SETINFO", "LIB-NAME", "x"]),
        "OK"
    );
    let config: Vec<String> = q(&mut con, &["CONFIG", "GET", "save"]);
    assert_eq!(config, vec!["save".to_string(), String::new()]);
    let config: Vec<String> = q(&mut con, &["CONFIG", "GET", "appendonly"]);
    assert_eq!(config, vec!["appendonly".to_string(), "yes".into()]);
    let _: () = q(&mut con, &["SET", "a", "1"]);
    let info: String = q(&mut con, &["INFO"]);
    assert!(info.contains("# Server\r\nredis_version:"), "{info}");
    assert!(info.contains("db0:keys=1,expires=0"), "{info}");
    assert!(info.contains("# Engine\r\n"), "{info}");
    let keyspace: String = q(&mut con, &["INFO", "keyspace"]);
    assert!(!keyspace.contains("# Server"));
    let count: i64 = q(&mut con, &["COMMAND", "COUNT"]);
    let all: Vec<Value> = q(&mut con, &["COMMAND"]);
    assert_eq!(all.len() as i64, count);
    let hello: Value = q(&mut con, &["HELLO", "2"]);
    assert!(
        matches!(hello, Value::Array(ref items) if items.len() == 14),
        "{hello:?}"
    );
}

#[test]
fn resp3_client_reads_nulls_and_maps() {
    let server = RespServer::start();
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", server.addr)).unwrap();
    let mut con = client.get_connection().unwrap();
    assert_eq!(q::<Option<String>>(&mut con, &["GET", "nope"]), None);
    assert_eq!(q::<Value>(&mut con, &["GET", "nope"]), Value::Nil);
    let _: () = q(&mut con, &["SET", "k", "v"]);
    assert_eq!(q::<String>(&mut con, &["GET", "k"]), "v");
    let config: Value = q(&mut con, &["CONFIG", "GET", "save"]);
    assert!(matches!(config, Value::Map(_)), "{config:?}");
}

#[test]
fn pipelined_mix_keeps_order_and_reads_own_writes() {
    let server = RespServer::start_with(naive_kv::SyncPolicy::Always);
    let mut con = server.redis();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        let key = format!("p{}", i % 7);
        pipe.cmd("SET").arg(&key).arg(i);
        pipe.cmd("GET").arg(&key);
        pipe.cmd("INCR").arg(&key);
        pipe.cmd("GET").arg(&key);
    }
    let replies: Vec<Value> = pipe.query(&mut con).unwrap();
    assert_eq!(replies.len(), 1200);
    for (i, chunk) in replies.chunks(4).enumerate() {
        let text = |v: &Value| redis::from_redis_value_ref::<String>(v).unwrap();
        assert_eq!(text(&chunk[1]), i.to_string(), "GET after SET {i}");
        assert_eq!(chunk[2], Value::Int(i as i64 + 1), "INCR {i}");
        assert_eq!(text(&chunk[3]), (i + 1).to_string(), "GET after INCR {i}");
    }
}

#[test]
fn concurrent_incr_loses_no_update() {
    let server = RespServer::start();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let client = server.client();
            std::thread::spawn(move || {
                let mut con = client.get_connection().unwrap();
                let mut pipe = redis::pipe();
                for _ in 0..100 {
                    pipe.cmd("INCR").arg("shared");
                }
                let _: Vec<i64> = pipe.query(&mut con).unwrap();
                for _ in 0..50 {
                    let _: i64 = cmd("INCRBY").arg("shared").arg(2).query(&mut con).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut con = server.redis();
    assert_eq!(q::<i64>(&mut con, &["GET", "shared"]), 4 * (100 + 100));
}
