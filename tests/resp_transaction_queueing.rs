//! What MULTI queues and what EXEC then does, byte for byte as Redis 7
//! answers (the cases Redis's own `unit/multi` checks):
//! - only an unknown command, a wrong number of arguments or a command not
//!   allowed in a transaction (SAVE, SHUTDOWN) aborts it; any other error
//!   is queued and is that command's reply inside EXEC's array;
//! - a SELECT queued in MULTI applies when EXEC runs, in order; DISCARD
//!   and an aborted EXEC drop it;
//! - a watched key that expires after WATCH makes EXEC answer nil; one
//!   already expired when watched does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::time::Duration;

use resp_support::{RespServer, exchange, request};

const QUEUED: &[u8] = b"+QUEUED\r\n";
const OK: &[u8] = b"+OK\r\n";

#[test]
fn a_runtime_error_is_queued_and_answered_inside_exec() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(&mut s, &request(&[b"MULTI"]), OK);
    exchange(&mut s, &request(&[b"SET", b"foo", b"bar"]), QUEUED);
    exchange(
        &mut s,
        &request(&[b"CONFIG", b"SET", b"maxmemory", b"bla"]),
        QUEUED,
    );
    exchange(
        &mut s,
        &request(&[b"SET", b"k", b"v", b"NX", b"XX"]),
        QUEUED,
    );
    let config_error = b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory')";
    let mut expected = b"*3\r\n+OK\r\n".to_vec();
    expected.extend_from_slice(config_error);
    exchange(&mut s, &request(&[b"EXEC"]), &expected);
    let mut rest = Vec::new();
    // The rest of the CONFIG error's line, then the syntax error.
    let mut byte = [0u8; 1];
    while !rest.ends_with(b"\r\n") {
        std::io::Read::read_exact(&mut s, &mut byte).unwrap();
        rest.push(byte[0]);
    }
    exchange(&mut s, b"", b"-ERR syntax error\r\n");
    exchange(&mut s, &request(&[b"GET", b"foo"]), b"$3\r\nbar\r\n");
    server.stop().unwrap();
}

#[test]
fn unknown_commands_bad_arity_save_and_shutdown_abort_the_transaction() {
    let server = RespServer::start();
    let mut s = server.connect();
    let refused: [(&[&[u8]], &[u8]); 4] = [
        (
            &[b"NOSUCH", b"x"],
            b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n",
        ),
        (
            &[b"GET"],
            b"-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &[b"SAVE"],
            b"-ERR Command not allowed inside a transaction\r\n",
        ),
        (
            &[b"SHUTDOWN"],
            b"-ERR Command not allowed inside a transaction\r\n",
        ),
    ];
    for (command, error) in refused {
        exchange(&mut s, &request(&[b"MULTI"]), OK);
        exchange(&mut s, &request(&[b"SET", b"foo", b"bar"]), QUEUED);
        exchange(&mut s, &request(command), error);
        exchange(
            &mut s,
            &request(&[b"EXEC"]),
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        );
        exchange(&mut s, &request(&[b"GET", b"foo"]), b"$-1\r\n");
    }
    server.stop().unwrap();
}

#[test]
fn select_inside_multi_applies_at_exec_in_order() {
    let server = RespServer::start();
    let mut s = server.connect();
    exchange(&mut s, &request(&[b"MULTI"]), OK);
    exchange(&mut s, &request(&[b"SET", b"k", b"zero"]), QUEUED);
    exchange(&mut s, &request(&[b"SELECT", b"1"]), QUEUED);
    exchange(&mut s, &request(&[b"SET", b"k", b"one"]), QUEUED);
    exchange(&mut s, &request(&[b"SELECT", b"99"]), QUEUED);
    exchange(
        &mut s,
        &request(&[b"EXEC"]),
        b"*4\r\n+OK\r\n+OK\r\n+OK\r\n-ERR DB index is out of range\r\n",
    );
    // After EXEC the connection is on database 1.
    exchange(&mut s, &request(&[b"GET", b"k"]), b"$3\r\none\r\n");
    exchange(&mut s, &request(&[b"SELECT", b"0"]), OK);
    exchange(&mut s, &request(&[b"GET", b"k"]), b"$4\r\nzero\r\n");

    // DISCARD, and an EXEC aborted by a queueing error, drop the SELECT.
    exchange(&mut s, &request(&[b"MULTI"]), OK);
    exchange(&mut s, &request(&[b"SELECT", b"1"]), QUEUED);
    exchange(&mut s, &request(&[b"DISCARD"]), OK);
    exchange(&mut s, &request(&[b"GET", b"k"]), b"$4\r\nzero\r\n");
    exchange(&mut s, &request(&[b"MULTI"]), OK);
    exchange(&mut s, &request(&[b"SELECT", b"1"]), QUEUED);
    exchange(
        &mut s,
        &request(&[b"GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    exchange(
        &mut s,
        &request(&[b"EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    exchange(&mut s, &request(&[b"GET", b"k"]), b"$4\r\nzero\r\n");
    server.stop().unwrap();
}

#[test]
fn a_watched_key_that_expires_after_watch_aborts_exec() {
    let server = RespServer::start();
    let mut s = server.connect();
    // Long enough to be watched before it expires on a loaded machine.
    exchange(&mut s, &request(&[b"SET", b"x", b"foo", b"PX", b"600"]), OK);
    exchange(&mut s, &request(&[b"WATCH", b"x"]), OK);
    std::thread::sleep(Duration::from_millis(800));
    exchange(&mut s, &request(&[b"MULTI"]), OK);
    exchange(&mut s, &request(&[b"PING"]), QUEUED);
    exchange(&mut s, &request(&[b"EXEC"]), b"*-1\r\n");

    // Expired before WATCH: absent at WATCH and at EXEC, unchanged.
    exchange(&mut s, &request(&[b"SET", b"y", b"foo", b"PX", b"1"]), OK);
    std::thread::sleep(Duration::from_millis(20));
    exchange(&mut s, &request(&[b"WATCH", b"y"]), OK);
    exchange(&mut s, &request(&[b"MULTI"]), OK);
    exchange(&mut s, &request(&[b"PING"]), QUEUED);
    exchange(&mut s, &request(&[b"EXEC"]), b"*1\r\n+PONG\r\n");
    server.stop().unwrap();
}
