//! The string and keyspace commands added for Redis's own test suite
//! (GETSET, GETDEL, INCRBYFLOAT, GETRANGE/SUBSTR, SETRANGE, GETBIT, SETBIT,
//! MSETNX, RENAME, RENAMENX, COPY, TOUCH, TIME) through redis-rs, values
//! read back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use resp_support::{RespServer, fails, q};

fn get(con: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    q(con, &["GET", key])
}

#[test]
fn string_read_modify_writes() {
    let server = RespServer::start();
    let mut con = server.redis();
    assert_eq!(q::<Option<String>>(&mut con, &["GETSET", "k", "a"]), None);
    assert_eq!(q::<String>(&mut con, &["GETSET", "k", "b"]), "a");
    assert_eq!(q::<String>(&mut con, &["GETDEL", "k"]), "b");
    assert_eq!(get(&mut con, "k"), None);
    assert_eq!(q::<Option<String>>(&mut con, &["GETDEL", "k"]), None);

    assert_eq!(q::<String>(&mut con, &["INCRBYFLOAT", "f", "10.5"]), "10.5");
    assert_eq!(q::<String>(&mut con, &["INCRBYFLOAT", "f", "0.1"]), "10.6");
    assert!(fails(&mut con, &["INCRBYFLOAT", "f", "x"]).contains("not a valid float"));

    q::<String>(&mut con, &["SET", "s", "Hello World"]);
    assert_eq!(q::<i64>(&mut con, &["SETRANGE", "s", "6", "Redis"]), 11);
    assert_eq!(q::<String>(&mut con, &["GET", "s"]), "Hello Redis");
    assert_eq!(
        q::<String>(&mut con, &["GETRANGE", "s", "-5", "-1"]),
        "Redis"
    );
    assert_eq!(q::<String>(&mut con, &["SUBSTR", "s", "0", "4"]), "Hello");
    assert_eq!(q::<i64>(&mut con, &["SETRANGE", "pad", "3", "x"]), 4);
    assert_eq!(get(&mut con, "pad"), Some(b"\0\0\0x".to_vec()));
    assert!(fails(&mut con, &["SETRANGE", "s", "-1", "x"]).contains("out of range"));

    assert_eq!(q::<i64>(&mut con, &["SETBIT", "bits", "7", "1"]), 0);
    assert_eq!(q::<i64>(&mut con, &["SETBIT", "bits", "7", "0"]), 1);
    assert_eq!(q::<i64>(&mut con, &["SETBIT", "bits", "1", "1"]), 0);
    assert_eq!(q::<i64>(&mut con, &["GETBIT", "bits", "1"]), 1);
    assert_eq!(q::<i64>(&mut con, &["GETBIT", "bits", "100"]), 0);
    assert_eq!(get(&mut con, "bits"), Some(vec![0x40]));
    assert!(fails(&mut con, &["SETBIT", "bits", "1", "2"]).contains("out of range"));

    assert_eq!(q::<i64>(&mut con, &["MSETNX", "m1", "1", "m2", "2"]), 1);
    assert_eq!(q::<i64>(&mut con, &["MSETNX", "m2", "x", "m3", "3"]), 0);
    assert_eq!(get(&mut con, "m3"), None);
    assert_eq!(get(&mut con, "m2"), Some(b"2".to_vec()));
}

#[test]
fn keyspace_commands() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["MSET", "a", "1", "b", "2"]);
    assert_eq!(q::<String>(&mut con, &["RENAME", "a", "c"]), "OK");
    assert_eq!(get(&mut con, "a"), None);
    assert_eq!(get(&mut con, "c"), Some(b"1".to_vec()));
    assert!(fails(&mut con, &["RENAME", "nope", "x"]).contains("no such key"));
    assert_eq!(q::<i64>(&mut con, &["RENAMENX", "c", "b"]), 0);
    assert_eq!(q::<i64>(&mut con, &["RENAMENX", "c", "d"]), 1);

    assert_eq!(q::<i64>(&mut con, &["COPY", "d", "b"]), 0);
    assert_eq!(q::<i64>(&mut con, &["COPY", "d", "b", "REPLACE"]), 1);
    assert_eq!(get(&mut con, "b"), Some(b"1".to_vec()));
    assert_eq!(get(&mut con, "d"), Some(b"1".to_vec()));
    assert!(fails(&mut con, &["COPY", "d", "e", "DB", "16"]).contains("DB index is out of range"));

    assert_eq!(q::<i64>(&mut con, &["TOUCH", "b", "d", "zzz"]), 2);
    let time: Vec<String> = q(&mut con, &["TIME"]);
    assert!(time[0].parse::<u64>().unwrap() > 1_700_000_000, "{time:?}");
    assert!(time[1].parse::<u64>().unwrap() < 1_000_000, "{time:?}");
}

#[test]
fn flushall_empties_the_database() {
    let server = RespServer::start();
    let mut con = server.redis();
    for i in 0..2500 {
        q::<String>(&mut con, &["SET", &format!("key:{i}"), "v"]);
    }
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 2500);
    assert_eq!(q::<String>(&mut con, &["FLUSHALL"]), "OK");
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0);
    q::<String>(&mut con, &["SET", "after", "1"]);
    assert_eq!(q::<String>(&mut con, &["FLUSHDB", "SYNC"]), "OK");
    assert_eq!(get(&mut con, "after"), None);
    assert!(fails(&mut con, &["FLUSHALL", "LATER"]).contains("syntax error"));
}

#[test]
fn command_introspection() {
    let server = RespServer::start();
    let mut con = server.redis();
    let keys: Vec<String> = q(
        &mut con,
        &["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
    );
    assert_eq!(keys, ["a", "b"]);
    let keys: Vec<String> = q(&mut con, &["COMMAND", "GETKEYS", "RENAME", "x", "y"]);
    assert_eq!(keys, ["x", "y"]);
    assert!(fails(&mut con, &["COMMAND", "GETKEYS", "PING"]).contains("no key arguments"));
    let names: Vec<String> = q(
        &mut con,
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "incr*"],
    );
    assert_eq!(names, ["incr", "incrby", "incrbyfloat"]);
    let none: Vec<String> = q(&mut con, &["COMMAND", "LIST", "FILTERBY", "ACLCAT", "hash"]);
    assert!(none.is_empty());
    assert!(fails(&mut con, &["COMMAND", "LIST", "bad_arg"]).contains("syntax error"));
}

#[test]
fn multi_exec_runs_the_queue_once_and_answers_every_reply() {
    let server = RespServer::start();
    let mut con = server.redis();
    // redis-rs's atomic pipeline sends MULTI ... EXEC, as redis-py's
    // default pipeline does.
    let (set, incr, value): (String, i64, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("t")
        .arg("1")
        .cmd("INCRBY")
        .arg("t")
        .arg("5")
        .cmd("GET")
        .arg("t")
        .query(&mut con)
        .unwrap();
    assert_eq!((set.as_str(), incr, value.as_str()), ("OK", 6, "6"));
    assert_eq!(q::<i64>(&mut con, &["GET", "t"]), 6, "applied once");

    assert_eq!(q::<String>(&mut con, &["MULTI"]), "OK");
    assert_eq!(q::<String>(&mut con, &["SET", "t", "9"]), "QUEUED");
    assert!(fails(&mut con, &["NOSUCHCOMMAND"]).contains("unknown command"));
    let aborted = fails(&mut con, &["EXEC"]);
    assert!(
        aborted.contains("discarded because of previous errors"),
        "{aborted}"
    );
    assert_eq!(
        q::<i64>(&mut con, &["GET", "t"]),
        6,
        "an aborted EXEC writes nothing"
    );

    assert_eq!(q::<String>(&mut con, &["MULTI"]), "OK");
    assert_eq!(q::<String>(&mut con, &["DEL", "t"]), "QUEUED");
    assert_eq!(q::<String>(&mut con, &["DISCARD"]), "OK");
    assert_eq!(q::<i64>(&mut con, &["GET", "t"]), 6);
    assert!(fails(&mut con, &["EXEC"]).contains("without MULTI"));
}

#[test]
fn type_and_randomkey() {
    let server = RespServer::start();
    let mut con = server.redis();
    assert_eq!(q::<Option<String>>(&mut con, &["RANDOMKEY"]), None);
    q::<String>(&mut con, &["SET", "only", "1"]);
    assert_eq!(q::<String>(&mut con, &["TYPE", "only"]), "string");
    assert_eq!(q::<String>(&mut con, &["TYPE", "missing"]), "none");
    assert_eq!(q::<String>(&mut con, &["RANDOMKEY"]), "only");
    for i in 0..50 {
        q::<String>(&mut con, &["SET", &format!("k{i}"), "v"]);
    }
    let key: String = q(&mut con, &["RANDOMKEY"]);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", &key]), 1, "{key}");
    let error = fails(&mut con, &["INCRBYFLOAT", "f", "+inf"]);
    assert!(error.contains("would produce NaN or Infinity"), "{error}");
    let error = fails(&mut con, &["COPY", "only", "x", "DB", "notanumber"]);
    assert!(error.contains("not an integer"), "{error}");
}

#[test]
fn info_sections_carry_real_figures_and_commandstats_count_calls() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SET", "a", "1"]);
    q::<String>(&mut con, &["GET", "a"]);
    assert!(fails(&mut con, &["INCR", "a", "extra"]).contains("wrong number of arguments"));
    q::<String>(&mut con, &["SET", "t", "text"]);
    assert!(fails(&mut con, &["INCR", "t"]).contains("not an integer"));

    let default: String = q(&mut con, &["INFO"]);
    for field in [
        "redis_version:",
        "used_cpu_user:",
        "used_memory:",
        "connected_clients:",
        "role:master",
    ] {
        assert!(default.contains(field), "{field} missing from {default}");
    }
    assert!(!default.contains("rejected_calls"));
    let cpu: String = q(&mut con, &["INFO", "cpu", "sentinel"]);
    assert!(
        cpu.contains("used_cpu_user") && !cpu.contains("used_memory"),
        "{cpu}"
    );
    let stats: String = q(&mut con, &["INFO", "commandSTATS"]);
    assert!(stats.contains("cmdstat_get:calls=1,"), "{stats}");
    assert!(stats.contains("cmdstat_set:calls=2,"), "{stats}");
    assert!(stats.contains("rejected_calls=1,failed_calls=1"), "{stats}");
    let errors: String = q(&mut con, &["INFO", "errorstats"]);
    assert!(errors.contains("errorstat_ERR:count=2"), "{errors}");
    let memory: String = q(&mut con, &["INFO", "memory"]);
    let used: u64 = memory
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(used > 1 << 20, "{memory}");

    assert_eq!(q::<String>(&mut con, &["CONFIG", "RESETSTAT"]), "OK");
    let stats: String = q(&mut con, &["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_get"), "{stats}");
    assert_eq!(
        q::<String>(&mut con, &["CONFIG", "SET", "appendonly", "yes"]),
        "OK"
    );
    assert!(fails(&mut con, &["CONFIG", "SET", "appendonly", "no"]).contains("CONFIG SET failed"));
    assert!(fails(&mut con, &["CONFIG", "SET", "nosuch", "1"]).contains("Unknown option"));
    server.stop().unwrap();
}

#[test]
fn help_reset_debug_lcs_and_getkeysandflags() {
    let server = RespServer::start();
    let mut con = server.redis();
    for command in ["CLIENT", "COMMAND", "CONFIG"] {
        let help: Vec<String> = q(&mut con, &[command, "HELP"]);
        assert!(
            help[0].starts_with(&format!("{command} <subcommand>")),
            "{help:?}"
        );
    }
    assert!(fails(&mut con, &["DEBUG", "SLEEP", "0"]).contains("not supported"));
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "r", "1"]);
    assert_eq!(q::<String>(&mut con, &["RESET"]), "RESET");
    assert!(fails(&mut con, &["EXEC"]).contains("without MULTI"));
    assert_eq!(get(&mut con, "r"), None);

    q::<String>(&mut con, &["MSET", "x", "ohmytext", "y", "mynewtext"]);
    assert_eq!(q::<String>(&mut con, &["LCS", "x", "y"]), "mytext");
    assert_eq!(q::<i64>(&mut con, &["LCS", "x", "y", "LEN"]), 6);
    let flags: redis::Value = q(&mut con, &["COMMAND", "GETKEYSANDFLAGS", "SET", "k1", "v1"]);
    let expected = redis::Value::Array(vec![redis::Value::Array(vec![
        redis::Value::BulkString(b"k1".to_vec()),
        redis::Value::Array(vec![
            redis::Value::SimpleString("OW".into()),
            redis::Value::SimpleString("update".into()),
        ]),
    ])]);
    assert_eq!(flags, expected);
    server.stop().unwrap();
}

/// Where a probe found answers unlike Redis 7's: a key longer than the
/// engine stores is read as absent (nil, 0, `none`), though writing it is
/// refused; `-0` is not an integer; GETEX judges its time only for a key
/// that exists.
#[test]
fn answers_redis_gives_for_long_keys_and_minus_zero() {
    let server = RespServer::start();
    let mut con = server.redis();
    let long = "k".repeat(65_537);
    assert_eq!(get(&mut con, &long), None);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", &long, &long]), 0);
    assert_eq!(q::<i64>(&mut con, &["DEL", &long]), 0);
    assert_eq!(q::<String>(&mut con, &["TYPE", &long]), "none");
    let values: Vec<Option<String>> = q(&mut con, &["MGET", &long, "absent"]);
    assert_eq!(values, vec![None, None]);
    assert!(fails(&mut con, &["SET", &long, "v"]).contains("key too large"));
    q::<String>(&mut con, &["SET", "i", "-0"]);
    assert!(fails(&mut con, &["INCR", "i"]).contains("not an integer"));
    q::<String>(&mut con, &["SET", "i", "-012"]);
    assert!(fails(&mut con, &["INCR", "i"]).contains("not an integer"));
    q::<String>(&mut con, &["SET", "i", "-10"]);
    assert_eq!(q::<i64>(&mut con, &["INCR", "i"]), -9);
    let missing: Option<String> = q(&mut con, &["GETEX", "nokey", "EX", "0"]);
    assert_eq!(missing, None);
    assert!(fails(&mut con, &["GETEX", "i", "EX", "0"]).contains("invalid expire time"));
}

/// BITCOUNT and BITPOS (redis.io's examples), BITOP, UNLINK and WAIT, through a
/// client, including inside MULTI, where a bit read sees the writes queued
/// before it.
#[test]
fn bit_reads_unlink_and_wait() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SET", "s", "foobar"]);
    assert_eq!(q::<i64>(&mut con, &["BITCOUNT", "s"]), 26);
    assert_eq!(q::<i64>(&mut con, &["BITCOUNT", "s", "1", "1"]), 6);
    assert_eq!(q::<i64>(&mut con, &["BITCOUNT", "s", "5", "30", "BIT"]), 17);
    assert_eq!(q::<i64>(&mut con, &["BITCOUNT", "missing", "x", "y"]), 0);
    assert!(fails(&mut con, &["BITCOUNT", "s", "0"]).contains("syntax error"));
    assert!(fails(&mut con, &["BITCOUNT", "s", "x", "1"]).contains("not an integer"));

    redis::cmd("SET")
        .arg("p")
        .arg(&b"\x00\xff\xf0"[..])
        .query::<()>(&mut con)
        .unwrap();
    assert_eq!(q::<i64>(&mut con, &["BITPOS", "p", "1"]), 8);
    assert_eq!(q::<i64>(&mut con, &["BITPOS", "p", "1", "2"]), 16);
    assert_eq!(
        q::<i64>(&mut con, &["BITPOS", "p", "1", "7", "15", "BIT"]),
        8
    );
    assert_eq!(q::<i64>(&mut con, &["BITPOS", "p", "0", "1", "1"]), -1);
    assert_eq!(q::<i64>(&mut con, &["BITPOS", "missing", "0"]), 0);
    assert_eq!(q::<i64>(&mut con, &["BITPOS", "missing", "1"]), -1);
    assert!(fails(&mut con, &["BITPOS", "p", "2"]).contains("must be 1 or 0"));

    let (count, position): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("SETBIT")
        .arg("t")
        .arg(9)
        .arg(1)
        .ignore()
        .cmd("BITCOUNT")
        .arg("t")
        .cmd("BITPOS")
        .arg("t")
        .arg(1)
        .query(&mut con)
        .unwrap();
    assert_eq!((count, position), (1, 9));

    // BITOP: shorter values padded with zeros, an empty result deletes the
    // destination, which loses its TTL like a SET.
    q::<String>(&mut con, &["MSET", "x", "\u{f0}", "y", "ab"]);
    q::<i64>(&mut con, &["EXPIRE", "dest", "100"]);
    assert_eq!(
        q::<i64>(&mut con, &["BITOP", "AND", "dest", "y", "missing"]),
        2
    );
    assert_eq!(get(&mut con, "dest"), Some(vec![0, 0]));
    assert_eq!(q::<i64>(&mut con, &["TTL", "dest"]), -1);
    assert_eq!(q::<i64>(&mut con, &["BITOP", "OR", "dest", "y", "dest"]), 2);
    assert_eq!(get(&mut con, "dest"), Some(b"ab".to_vec()));
    assert_eq!(q::<i64>(&mut con, &["BITOP", "NOT", "dest", "dest"]), 2);
    assert_eq!(get(&mut con, "dest"), Some(vec![!b'a', !b'b']));
    assert_eq!(
        q::<i64>(&mut con, &["BITOP", "XOR", "dest", "none1", "none2"]),
        0
    );
    assert_eq!(get(&mut con, "dest"), None);
    assert!(fails(&mut con, &["BITOP", "NOT", "dest", "x", "y"]).contains("single source key"));
    assert!(fails(&mut con, &["BITOP", "NAND", "dest", "x"]).contains("syntax error"));

    q::<String>(&mut con, &["MSET", "a", "1", "b", "2"]);
    assert_eq!(q::<i64>(&mut con, &["UNLINK", "a", "b", "a", "none"]), 2);
    assert_eq!(get(&mut con, "a"), None);
    assert_eq!(q::<i64>(&mut con, &["WAIT", "1", "0"]), 0);
    assert!(fails(&mut con, &["WAIT", "1", "-1"]).contains("negative"));
}

/// Answers that differed from Redis 7.0.15's, found by sending the same
/// random commands to both (session 16): each now as Redis gives it.
#[test]
fn edge_arguments_answered_as_redis_does() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SET", "k", "hello"]);
    assert_eq!(q::<String>(&mut con, &["GETRANGE", "k", "-10", "-20"]), "");
    assert_eq!(q::<String>(&mut con, &["GETRANGE", "k", "-20", "-10"]), "h");
    assert!(fails(&mut con, &["GETBIT", "k", "4294967296"]).contains("bit offset"));
    assert!(fails(&mut con, &["SETBIT", "k", "4294967296", "2"]).contains("bit offset"));
    assert!(fails(&mut con, &["SETRANGE", "k", "abc", "x"]).contains("not an integer"));
    assert!(fails(&mut con, &["SETRANGE", "k", "-1", "x"]).contains("offset is out of range"));
    assert!(fails(&mut con, &["COPY", "k", "k"]).contains("objects are the same"));
    assert!(
        fails(&mut con, &["COPY", "k", "b", "DB", "9223372036854775807"]).contains("must between")
    );
    q::<String>(&mut con, &["SET", "n", "1"]);
    assert!(
        fails(&mut con, &["DECRBY", "n", "-9223372036854775808"])
            .contains("decrement would overflow")
    );
    assert!(fails(&mut con, &["WAIT", "0", "x"]).contains("timeout is not an integer"));
    assert!(fails(&mut con, &["LCS", "a", "b", "MINMATCHLEN", "x"]).contains("not an integer"));
    assert!(
        fails(&mut con, &["EXPIRE", "k", "10", "NX", "LT", "foo"])
            .contains("Unsupported option foo")
    );
    q::<String>(&mut con, &["SET", "z", "-0"]);
    assert_eq!(q::<String>(&mut con, &["INCRBYFLOAT", "z", "-0"]), "0");

    // SET and GETEX take a repeated option; the last expiry counts, and
    // a syntax error comes before a bad amount.
    assert_eq!(q::<String>(&mut con, &["SET", "s", "v", "NX", "NX"]), "OK");
    assert_eq!(
        q::<Option<String>>(&mut con, &["SET", "t", "v", "XX", "XX"]),
        None
    );
    q::<String>(&mut con, &["SET", "s", "v", "EX", "10", "EX", "2000"]);
    assert!(q::<i64>(&mut con, &["TTL", "s"]) > 1000);
    assert_eq!(
        q::<String>(&mut con, &["GETEX", "s", "PERSIST", "PERSIST"]),
        "v"
    );
    assert_eq!(q::<i64>(&mut con, &["TTL", "s"]), -1);
    assert_eq!(
        q::<String>(&mut con, &["GETEX", "s", "PX", "5", "PX", "900000"]),
        "v"
    );
    assert!(q::<i64>(&mut con, &["TTL", "s"]) > 800);
    assert!(fails(&mut con, &["SET", "s", "v", "EX", "abc", "NX", "XX"]).contains("syntax error"));
    assert!(fails(&mut con, &["SET", "s", "v", "EX", "1", "PX", "1"]).contains("syntax error"));
    assert!(fails(&mut con, &["GETEX", "s", "EX", "1", "PERSIST"]).contains("syntax error"));

    // In MULTI, MSET's odd count and a key nothing can be stored under fail
    // only their own command.
    let failures = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("a")
        .arg("1")
        .cmd("MSET")
        .arg("b")
        .arg("2")
        .arg("c")
        .cmd("GET")
        .arg("")
        .cmd("SET")
        .arg("")
        .arg("x")
        .cmd("EXISTS")
        .arg("")
        .query::<Vec<redis::Value>>(&mut con)
        .unwrap_err()
        .to_string();
    let failed: Vec<usize> = (0..5)
        .filter(|i| failures.contains(&format!("Index {i},")))
        .collect();
    assert_eq!(failed, [1, 3], "{failures}");
    assert!(failures.contains("keys must not be empty"), "{failures}");
    assert_eq!(get(&mut con, "a"), Some(b"1".to_vec()));
    assert_eq!(q::<Option<String>>(&mut con, &["GET", ""]), None);
    assert!(fails(&mut con, &["MSET", "b", "2", "c"]).contains("wrong number of arguments"));
}
