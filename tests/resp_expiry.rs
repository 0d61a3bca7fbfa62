//! Expiry over RESP, through redis-rs: SET's EX/PX/EXAT/PXAT/KEEPTTL,
//! SETEX, PSETEX, GETEX, the EXPIRE family with NX/XX/GT/LT, TTL, PTTL,
//! EXPIRETIME, PEXPIRETIME, PERSIST, and which writes keep or clear a TTL,
//! with Redis 7.0's replies and error texts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::time::Duration;

use resp_support::{RespServer, fails, q};

/// A Unix time in seconds far enough ahead for any test run.
const FAR: i64 = 4_000_000_000;

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    q(con, &["GET", key])
}

fn ttl(con: &mut redis::Connection, key: &str) -> i64 {
    q(con, &["TTL", key])
}

#[test]
fn set_options_and_ttl_replies() {
    let server = RespServer::start();
    let mut con = server.redis();
    assert_eq!(ttl(&mut con, "none"), -2);
    assert_eq!(q::<i64>(&mut con, &["PTTL", "none"]), -2);
    assert_eq!(q::<i64>(&mut con, &["EXPIRETIME", "none"]), -2);
    q::<String>(&mut con, &["SET", "k", "v"]);
    assert_eq!(ttl(&mut con, "k"), -1);
    assert_eq!(q::<i64>(&mut con, &["PEXPIRETIME", "k"]), -1);

    q::<String>(&mut con, &["SET", "k", "v", "EX", "100"]);
    assert!((99..=100).contains(&ttl(&mut con, "k")));
    let pttl: i64 = q(&mut con, &["PTTL", "k"]);
    assert!((99_000..=100_000).contains(&pttl), "{pttl}");
    q::<String>(&mut con, &["SET", "k", "v", "PX", "100000"]);
    assert!((99..=100).contains(&ttl(&mut con, "k")));
    let at = FAR.to_string();
    q::<String>(&mut con, &["SET", "k", "v", "EXAT", &at]);
    assert_eq!(q::<i64>(&mut con, &["EXPIRETIME", "k"]), FAR);
    assert_eq!(q::<i64>(&mut con, &["PEXPIRETIME", "k"]), FAR * 1000);
    let pat = (FAR * 1000 + 123).to_string();
    q::<String>(&mut con, &["SET", "k", "v", "PXAT", &pat]);
    assert_eq!(q::<i64>(&mut con, &["PEXPIRETIME", "k"]), FAR * 1000 + 123);

    // KEEPTTL keeps it, a plain SET clears it.
    q::<String>(&mut con, &["SET", "k", "w", "KEEPTTL"]);
    assert_eq!(q::<i64>(&mut con, &["PEXPIRETIME", "k"]), FAR * 1000 + 123);
    assert_eq!(get(&mut con, "k").as_deref(), Some("w"));
    q::<String>(&mut con, &["SET", "k", "x"]);
    assert_eq!(ttl(&mut con, "k"), -1);

    // With NX, XX and GET.
    assert_eq!(
        q::<Option<String>>(&mut con, &["SET", "k", "y", "XX", "GET", "EX", "100"]),
        Some("x".into())
    );
    assert!((99..=100).contains(&ttl(&mut con, "k")));
    assert_eq!(
        q::<Option<String>>(&mut con, &["SET", "k", "z", "NX", "EX", "5"]),
        None
    );
    assert!((99..=100).contains(&ttl(&mut con, "k")));

    // Errors, worded as Redis 7.0.
    let invalid = "invalid expire time in 'set' command";
    assert!(fails(&mut con, &["SET", "k", "v", "EX", "0"]).contains(invalid));
    assert!(fails(&mut con, &["SET", "k", "v", "PX", "-1"]).contains(invalid));
    assert!(fails(&mut con, &["SET", "k", "v", "EX", "10000000000000000"]).contains(invalid));
    assert!(fails(&mut con, &["SET", "k", "v", "EX", "ten"]).contains("not an integer"));
    assert!(fails(&mut con, &["SET", "k", "v", "EX", "1", "KEEPTTL"]).contains("syntax error"));
    assert!(fails(&mut con, &["SET", "k", "v", "EX", "1", "PX", "1"]).contains("syntax error"));
}

#[test]
fn keys_go_away_at_their_expiry() {
    let server = RespServer::start();
    let mut con = server.redis();
    // Long enough to be seen before they expire on a loaded machine.
    q::<String>(&mut con, &["SET", "short", "v", "PX", "500"]);
    q::<String>(&mut con, &["PSETEX", "short2", "500", "v"]);
    q::<String>(&mut con, &["SETEX", "long", "100", "v"]);
    q::<String>(&mut con, &["SET", "plain", "v"]);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", "short", "short2"]), 2);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(get(&mut con, "short"), None);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", "short", "short2"]), 0);
    let mut keys: Vec<String> = q(&mut con, &["KEYS", "*"]);
    keys.sort();
    assert_eq!(keys, vec!["long", "plain"]);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 2);
    // A time already past: the key is gone at once.
    q::<String>(&mut con, &["SET", "past", "v", "PXAT", "1"]);
    assert_eq!(get(&mut con, "past"), None);
    assert!(fails(&mut con, &["SETEX", "k", "0", "v"]).contains("invalid expire time in 'setex'"));
}

#[test]
fn expire_family_with_conditions() {
    let server = RespServer::start();
    let mut con = server.redis();
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "missing", "100"]), 0);
    q::<String>(&mut con, &["SET", "k", "v"]);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "k", "100", "XX"]), 0);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "k", "100", "GT"]), 0);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "k", "100", "NX"]), 1);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "k", "200", "NX"]), 0);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "k", "200", "GT"]), 1);
    assert!((199..=200).contains(&ttl(&mut con, "k")));
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "k", "300", "LT"]), 0);
    assert_eq!(
        q::<i64>(&mut con, &["PEXPIRE", "k", "50000", "LT", "XX"]),
        1
    );
    assert!((49..=50).contains(&ttl(&mut con, "k")));
    let at = FAR.to_string();
    assert_eq!(q::<i64>(&mut con, &["EXPIREAT", "k", &at]), 1);
    assert_eq!(q::<i64>(&mut con, &["EXPIRETIME", "k"]), FAR);
    let pat = (FAR * 1000 + 7).to_string();
    assert_eq!(q::<i64>(&mut con, &["PEXPIREAT", "k", &pat]), 1);
    assert_eq!(q::<i64>(&mut con, &["PEXPIRETIME", "k"]), FAR * 1000 + 7);
    assert_eq!(get(&mut con, "k").as_deref(), Some("v"), "the value stays");

    assert_eq!(q::<i64>(&mut con, &["PERSIST", "k"]), 1);
    assert_eq!(q::<i64>(&mut con, &["PERSIST", "k"]), 0);
    assert_eq!(ttl(&mut con, "k"), -1);
    // A time in the past deletes.
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "k", "-1"]), 1);
    assert_eq!(get(&mut con, "k"), None);

    assert!(
        fails(&mut con, &["EXPIRE", "k", "1", "NX", "XX"])
            .contains("NX and XX, GT or LT options at the same time are not compatible")
    );
    assert!(
        fails(&mut con, &["EXPIRE", "k", "1", "GT", "LT"])
            .contains("GT and LT options at the same time are not compatible")
    );
    assert!(fails(&mut con, &["EXPIRE", "k", "1", "FOO"]).contains("Unsupported option FOO"));
    assert!(
        fails(&mut con, &["EXPIRE", "k", "9223370399119966"])
            .contains("invalid expire time in 'expire' command")
    );
    q::<String>(&mut con, &["SET", "k", "v"]);
    assert!(
        fails(&mut con, &["PEXPIRE", "k", "9223372036854770000"])
            .contains("invalid expire time in 'pexpire' command")
    );
    assert_eq!(
        q::<i64>(&mut con, &["PEXPIREAT", "k", "9223372036854770000"]),
        1
    );
}

#[test]
fn getex_and_which_writes_keep_a_ttl() {
    let server = RespServer::start();
    let mut con = server.redis();
    assert_eq!(
        q::<Option<String>>(&mut con, &["GETEX", "missing", "EX", "5"]),
        None
    );
    q::<String>(&mut con, &["SET", "k", "v"]);
    assert_eq!(q::<String>(&mut con, &["GETEX", "k", "EX", "100"]), "v");
    assert!((99..=100).contains(&ttl(&mut con, "k")));
    assert_eq!(q::<String>(&mut con, &["GETEX", "k"]), "v");
    assert!((99..=100).contains(&ttl(&mut con, "k")));
    assert_eq!(q::<String>(&mut con, &["GETEX", "k", "PERSIST"]), "v");
    assert_eq!(ttl(&mut con, "k"), -1);
    assert!(fails(&mut con, &["GETEX", "k", "PX", "0"]).contains("invalid expire time in 'getex'"));
    assert!(fails(&mut con, &["GETEX", "k", "EX", "1", "PERSIST"]).contains("syntax error"));

    // INCR, APPEND, SETRANGE keep the TTL; RENAME and COPY carry it; a
    // plain SET, GETSET and MSET clear it.
    q::<String>(&mut con, &["SET", "n", "1", "EX", "100"]);
    assert_eq!(q::<i64>(&mut con, &["INCR", "n"]), 2);
    assert!((99..=100).contains(&ttl(&mut con, "n")));
    assert_eq!(q::<i64>(&mut con, &["APPEND", "n", "0"]), 2);
    assert!((99..=100).contains(&ttl(&mut con, "n")));
    assert_eq!(q::<String>(&mut con, &["RENAME", "n", "m"]), "OK");
    assert!((99..=100).contains(&ttl(&mut con, "m")));
    assert_eq!(q::<i64>(&mut con, &["COPY", "m", "c"]), 1);
    assert!((99..=100).contains(&ttl(&mut con, "c")));
    assert_eq!(q::<String>(&mut con, &["GETSET", "c", "x"]), "20");
    assert_eq!(ttl(&mut con, "c"), -1);
    q::<String>(&mut con, &["MSET", "m", "y"]);
    assert_eq!(ttl(&mut con, "m"), -1);
    // An expired key counts as absent for NX and INCR.
    q::<String>(&mut con, &["SET", "e", "41", "PX", "30"]);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(q::<i64>(&mut con, &["INCR", "e"]), 1);
    assert_eq!(ttl(&mut con, "e"), -1);
}
