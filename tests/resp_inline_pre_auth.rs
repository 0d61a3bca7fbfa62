//! Before AUTH an inline request (a line of words, no `*`) is held to the
//! same 16 arguments as a multibulk one: more is a protocol error and the
//! connection closes. (Inline lines were once held only to their 64 KiB
//! length: some 32 000 one-letter words, each decoded into its own
//! argument.) After AUTH the full limit applies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod resp_support;

use std::io::Write;

use naive_kv::SyncPolicy;
use resp_support::{RespServer, closed, exchange, expect};

const TOKEN: &str = "s3cret";

fn words(n: usize) -> Vec<u8> {
    let mut line = b"ECHO".to_vec();
    for _ in 1..n {
        line.extend_from_slice(b" x");
    }
    line.extend_from_slice(b"\r\n");
    line
}

#[test]
fn an_inline_request_of_many_words_before_auth_is_refused() {
    let server = RespServer::start_configured(SyncPolicy::None, Some(TOKEN));
    let mut s = server.connect();
    // Sixteen words: within the limit, answered (NOAUTH: not yet in).
    exchange(&mut s, &words(16), b"-NOAUTH Authentication required.\r\n");
    s.write_all(&words(17)).unwrap();
    expect(
        &mut s,
        b"-ERR Protocol error: too many arguments in inline request (at most 16)\r\n",
    );
    assert!(closed(&mut s));

    // After AUTH, the full limit: a 17-word inline request is taken.
    let mut s = server.connect();
    exchange(&mut s, b"AUTH s3cret\r\n", b"+OK\r\n");
    exchange(
        &mut s,
        &words(17),
        b"-ERR wrong number of arguments for 'echo' command\r\n",
    );
}
