//! Transactions and read-modify-writes on the Redis port, as a Redis user
//! relies on them: WATCH aborts an EXEC when a watched key changed (by
//! anyone, the watcher included), an EXEC's commands are isolated from
//! other connections, optimistic-locking loops and INCRs lose no update,
//! and concurrent read-modify-writes share WAL syncs under `--sync always`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use naive_kv::SyncPolicy;
use resp_support::{RespServer, fails, q};

fn exec(con: &mut redis::Connection) -> redis::Value {
    redis::cmd("EXEC").query(con).unwrap()
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changed() {
    let server = RespServer::start();
    let (mut con, mut other) = (server.redis(), server.redis());
    q::<String>(&mut con, &["SET", "w", "1"]);

    // Changed by another connection: EXEC answers nil and writes nothing.
    assert_eq!(q::<String>(&mut con, &["WATCH", "w", "absent"]), "OK");
    q::<String>(&mut other, &["SET", "w", "1"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "x", "from-exec"]);
    assert_eq!(exec(&mut con), redis::Value::Nil);
    assert_eq!(q::<Option<String>>(&mut con, &["GET", "x"]), None);

    // Unchanged: EXEC runs (the watch ended with the last EXEC).
    q::<String>(&mut con, &["WATCH", "w"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "x", "1"]);
    assert_ne!(exec(&mut con), redis::Value::Nil);
    assert_eq!(q::<String>(&mut con, &["GET", "x"]), "1");

    // A key created after WATCH counts as changed; so does the watcher's
    // own write after WATCH.
    q::<String>(&mut con, &["WATCH", "absent"]);
    q::<String>(&mut other, &["SET", "absent", "now"]);
    q::<String>(&mut con, &["MULTI"]);
    assert_eq!(exec(&mut con), redis::Value::Nil);
    q::<String>(&mut con, &["WATCH", "w"]);
    q::<String>(&mut con, &["SET", "w", "2"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "x", "2"]);
    assert_eq!(exec(&mut con), redis::Value::Nil);
    assert_eq!(q::<String>(&mut con, &["GET", "x"]), "1");

    // UNWATCH and DISCARD forget the watched keys.
    q::<String>(&mut con, &["WATCH", "w"]);
    q::<String>(&mut other, &["SET", "w", "3"]);
    assert_eq!(q::<String>(&mut con, &["UNWATCH"]), "OK");
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "x", "3"]);
    assert_ne!(exec(&mut con), redis::Value::Nil);
    q::<String>(&mut con, &["WATCH", "w"]);
    q::<String>(&mut other, &["SET", "w", "4"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["DISCARD"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "x", "4"]);
    assert_ne!(exec(&mut con), redis::Value::Nil);
    assert_eq!(q::<String>(&mut con, &["GET", "x"]), "4");

    // FLUSHALL touches a watched key that exists, not one that does not.
    q::<String>(&mut con, &["WATCH", "w"]);
    q::<String>(&mut other, &["FLUSHALL"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "x", "5"]);
    assert_eq!(exec(&mut con), redis::Value::Nil);
    q::<String>(&mut con, &["WATCH", "w"]);
    q::<String>(&mut other, &["FLUSHDB"]);
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "x", "6"]);
    assert_ne!(exec(&mut con), redis::Value::Nil);
    assert_eq!(q::<String>(&mut con, &["GET", "x"]), "6");

    assert!(fails(&mut con, &["WATCH"]).contains("wrong number of arguments"));
    q::<String>(&mut con, &["MULTI"]);
    assert!(fails(&mut con, &["WATCH", "w"]).contains("inside MULTI is not allowed"));
    q::<String>(&mut con, &["DISCARD"]);
    server.stop().unwrap();
}

/// The classic optimistic-locking loop: GET, MULTI, SET, EXEC, retried
/// while EXEC answers nil. Four clients, no increment lost.
#[test]
fn optimistic_increments_through_watch_lose_nothing() {
    let server = RespServer::start();
    let (clients, each) = (4, 40);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let mut con = server.redis();
            std::thread::spawn(move || {
                let mut retries = 0;
                for _ in 0..each {
                    loop {
                        q::<String>(&mut con, &["WATCH", "n"]);
                        let n: i64 = q::<Option<i64>>(&mut con, &["GET", "n"]).unwrap_or(0);
                        q::<String>(&mut con, &["MULTI"]);
                        q::<String>(&mut con, &["SET", "n", &(n + 1).to_string()]);
                        if exec(&mut con) != redis::Value::Nil {
                            break;
                        }
                        retries += 1;
                    }
                }
                retries
            })
        })
        .collect();
    let retries: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut con = server.redis();
    assert_eq!(q::<i64>(&mut con, &["GET", "n"]), (clients * each) as i64);
    eprintln!("{retries} EXECs aborted by WATCH and retried");
    server.stop().unwrap();
}

/// A reader's EXEC of two GETs never sees half of a writer's EXEC of two
/// INCRs, and plain SETs racing INCRs of the same key lose no increment
/// that was acknowledged after them.
#[test]
fn exec_is_isolated_from_other_connections() {
    let server = RespServer::start();
    let rounds = 300;
    let writer = {
        let mut con = server.redis();
        std::thread::spawn(move || {
            for _ in 0..rounds {
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg("a")
                    .ignore()
                    .cmd("INCR")
                    .arg("b")
                    .ignore()
                    .query(&mut con)
                    .unwrap();
            }
        })
    };
    let mut reader = server.redis();
    let mut seen = 0;
    let mut writer_done = false;
    while seen < rounds {
        assert!(!writer_done, "writer ended at {seen}");
        writer_done = writer.is_finished();
        let (a, b): (Option<i64>, Option<i64>) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg("a")
            .cmd("GET")
            .arg("b")
            .query(&mut reader)
            .unwrap();
        assert_eq!(a, b, "an EXEC saw half of another");
        seen = a.unwrap_or(0);
    }
    writer.join().unwrap();
    server.stop().unwrap();
}

fn info_counter(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = q(con, &["INFO", "engine"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in INFO"))
}

#[test]
fn concurrent_incrs_share_wal_syncs_and_lose_no_update_to_plain_sets() {
    let server = RespServer::start_with(SyncPolicy::Always);
    let mut con = server.redis();
    let syncs_before = info_counter(&mut con, "wal_syncs");
    let (clients, each) = (8, 40);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let mut con = server.redis();
            std::thread::spawn(move || {
                for _ in 0..each {
                    q::<i64>(&mut con, &["INCR", "hot"]);
                    // Plain writes of another key from the same clients.
                    q::<String>(&mut con, &["SET", &format!("plain{i}"), "x"]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(q::<i64>(&mut con, &["GET", "hot"]), (clients * each) as i64);
    let syncs = info_counter(&mut con, "wal_syncs") - syncs_before;
    let writes = (2 * clients * each) as u64;
    assert!(
        syncs < writes,
        "{syncs} syncs for {writes} durable writes: INCRs did not share syncs"
    );

    // An INCR racing plain SETs of its own key: every INCR reply is one more
    // than the value it saw, so the last SET plus the INCRs acknowledged
    // after it make the final value.
    let setter = {
        let mut con = server.redis();
        std::thread::spawn(move || {
            for _ in 0..100 {
                q::<String>(&mut con, &["SET", "raced", "1000"]);
            }
        })
    };
    let mut replies = Vec::new();
    for _ in 0..100 {
        replies.push(q::<i64>(&mut con, &["INCR", "raced"]));
    }
    setter.join().unwrap();
    let last = *replies.last().unwrap();
    let after_set = q::<i64>(&mut con, &["GET", "raced"]);
    assert!(
        after_set == last || after_set == 1000,
        "{after_set} after {last}"
    );
    server.stop().unwrap();
}

/// A SELECT queued in a transaction takes effect only if EXEC runs: not
/// when EXEC answers nil because a watched key changed (Redis discards the
/// whole queue). The requests pipelined behind such an EXEC are read only
/// once it has answered, so they land in the database it leaves.
#[test]
fn a_select_in_an_exec_that_a_watch_aborts_is_dropped() {
    let server = RespServer::start();
    let mut other = server.redis();
    let mut stream = server.connect();
    let pipelined = |watch_broken: bool| {
        let mut bytes = resp_support::request(&[b"WATCH", b"k"]);
        if watch_broken {
            bytes.extend(resp_support::request(&[b"SET", b"k", b"mine"]));
        }
        for args in [
            &[&b"MULTI"[..]][..],
            &[b"SELECT", b"2"],
            &[b"EXEC"],
            &[b"SET", b"z", b"1"],
            &[b"DBSIZE"],
            &[b"SELECT", b"0"],
            &[b"FLUSHALL"],
        ] {
            bytes.extend(resp_support::request(args));
        }
        bytes
    };
    q::<String>(&mut other, &["SET", "num", "1"]);
    // Broken by this connection's own write after WATCH: nil, still db 0
    // (num, k and z).
    resp_support::exchange(
        &mut stream,
        &pipelined(true),
        b"+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n+OK\r\n:3\r\n+OK\r\n+OK\r\n",
    );
    // Not broken: EXEC runs, the SELECT holds, z lands alone in db 2.
    resp_support::exchange(
        &mut stream,
        &pipelined(false),
        b"+OK\r\n+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n+OK\r\n:1\r\n+OK\r\n+OK\r\n",
    );
}

/// QUIT inside MULTI is not queued: it answers +OK and closes, as in Redis
/// 7.0. MULTI, EXEC, DISCARD and UNWATCH with arguments are arity errors;
/// inside MULTI they abort the transaction.
#[test]
fn quit_in_multi_closes_and_transaction_commands_check_their_arity() {
    let server = RespServer::start();
    let mut stream = server.connect();
    resp_support::exchange(&mut stream, b"MULTI\r\nQUIT\r\n", b"+OK\r\n+OK\r\n");
    assert!(resp_support::closed(&mut stream));

    let mut con = server.redis();
    let arity = |name: &str| format!("wrong number of arguments for '{name}' command");
    assert!(fails(&mut con, &["UNWATCH", "x"]).contains(&arity("unwatch")));
    assert!(fails(&mut con, &["EXEC", "x"]).contains(&arity("exec")));
    drop(con);
    // Raw replies: a client library renders EXECABORT in words of its own.
    let mut stream = server.connect();
    resp_support::exchange(
        &mut stream,
        b"MULTI\r\nEXEC x\r\nEXEC\r\n",
        format!(
            "+OK\r\n-EXECABORT Transaction discarded because of: {}\r\n\
             -ERR EXEC without MULTI\r\n",
            arity("exec")
        )
        .as_bytes(),
    );
    resp_support::exchange(
        &mut stream,
        b"MULTI\r\nDISCARD x\r\nMULTI x\r\nEXEC\r\n",
        format!(
            "+OK\r\n-ERR {}\r\n-ERR {}\r\n\
             -EXECABORT Transaction discarded because of previous errors.\r\n",
            arity("discard"),
            arity("multi")
        )
        .as_bytes(),
    );
}

/// A transaction keeps no value it only read (EXISTS, TYPE and DEL drop it
/// as it is read, GET after its command); a later command of the same EXEC
/// that needs the value reads it again. With
/// another connection setting and deleting the key meanwhile, each EXEC
/// still sees one state of it: a key EXISTS found is there for GET, and
/// one it did not find is absent for GET too.
#[test]
fn an_exec_that_checks_a_key_and_then_reads_it_sees_one_state_of_it() {
    let server = RespServer::start();
    let mut con = server.redis();
    q::<String>(&mut con, &["SET", "a", "alpha"]);
    q::<String>(&mut con, &["SET", "b", "beta"]);
    q::<String>(&mut con, &["MULTI"]);
    for command in [
        &["EXISTS", "a", "b", "c", "a"][..],
        &["TYPE", "a"],
        &["GET", "a"],
        &["STRLEN", "a"],
        &["APPEND", "b", "+"],
        &["DEL", "a", "c"],
        &["GET", "a"],
        &["GET", "b"],
    ] {
        assert_eq!(q::<String>(&mut con, command), "QUEUED");
    }
    let replies: (i64, String, String, i64, i64, i64, Option<String>, String) =
        redis::cmd("EXEC").query(&mut con).unwrap();
    let expected = (3, "string", "alpha", 5, 5, 1, None, "beta+");
    assert_eq!(
        replies,
        (
            expected.0,
            expected.1.into(),
            expected.2.into(),
            expected.3,
            expected.4,
            expected.5,
            expected.6,
            expected.7.into()
        )
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, mut other) = (stop.clone(), server.redis());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                q::<String>(&mut other, &["SET", "k", &flips.to_string()]);
                q::<i64>(&mut other, &["DEL", "k"]);
                flips += 1;
            }
            flips
        })
    };
    let (mut found, mut absent) = (0, 0);
    for _ in 0..300 {
        q::<String>(&mut con, &["MULTI"]);
        q::<String>(&mut con, &["EXISTS", "k"]);
        q::<String>(&mut con, &["GET", "k"]);
        let (exists, value): (i64, Option<String>) = redis::cmd("EXEC").query(&mut con).unwrap();
        assert_eq!(
            exists == 1,
            value.is_some(),
            "EXISTS {exists}, GET {value:?}"
        );
        match exists {
            1 => found += 1,
            _ => absent += 1,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(flipper.join().unwrap() > 0);
    println!("EXEC found the key {found} times, absent {absent} times");
}

#[test]
fn mget_in_exec_sees_the_writes_before_it_across_many_keys() {
    let server = RespServer::start();
    let mut con = server.redis();
    let keys: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    for key in keys.iter().step_by(2) {
        q::<String>(&mut con, &["SET", key, &format!("old-{key}")]);
    }
    // Written inside the transaction, in the first and in a later group of
    // the MGET's reads (it reads 16 keys at a time).
    q::<String>(&mut con, &["MULTI"]);
    q::<String>(&mut con, &["SET", "m1", "new-m1"]);
    q::<String>(&mut con, &["SET", "m30", "new-m30"]);
    q::<String>(&mut con, &["DEL", "m34"]);
    let mut mget: Vec<&str> = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    q::<String>(&mut con, &mget);
    let replies = match exec(&mut con) {
        redis::Value::Array(replies) => replies,
        other => panic!("EXEC answered {other:?}"),
    };
    let got: Vec<Option<String>> = redis::from_redis_value(replies[3].clone()).unwrap();
    let expected: Vec<Option<String>> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| match i {
            1 => Some("new-m1".to_string()),
            30 => Some("new-m30".to_string()),
            34 => None,
            i if i % 2 == 0 => Some(format!("old-{key}")),
            _ => None,
        })
        .collect();
    assert_eq!(got, expected);
}
