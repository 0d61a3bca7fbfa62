//! A client that pipelines large gets and scans and never reads its replies
//! keeps the server's memory within the documented bound
//! (docs/PROTOCOL.md, "Limits"): per connection, the byte budget
//! (`max_reply_bytes`) plus one reply larger than it. Without the bound the
//! requests sent here would queue gigabytes of replies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod non_reading;
mod server_support;

use std::time::Duration;

use bytes::Bytes;
use naive_kv::client::Client;
use naive_kv::proto::{self, request::Command, response::Reply};
use naive_kv::server::ServerConfig;
use non_reading::{flood, rss_kib};
use server_support::{TestServer, read_response, request, runtime};

const VALUE_BYTES: usize = 512 << 10;
const KEYS: usize = 8;

fn command(i: u64) -> Command {
    if i.is_multiple_of(2) {
        let key = format!("big{}", i as usize % KEYS);
        Command::Get(proto::Get { key: key.into() })
    } else {
        // The whole range: one page of about 4 MiB.
        Command::Scan(proto::Scan::default())
    }
}

#[test]
fn never_reading_clients_of_large_gets_and_scans_stay_within_the_budget() {
    let server = TestServer::start_with(ServerConfig {
        workers: 2,
        max_reply_bytes: 1 << 20,
        ..ServerConfig::default()
    });
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        for k in 0..KEYS {
            let value = vec![b'a' + k as u8; VALUE_BYTES];
            client.put(format!("big{k}"), value).await.unwrap();
        }
    });
    let before = rss_kib();
    // 400 requests of 2.25 MiB of replies on average: 900 MiB per
    // connection if the server queued them all.
    let send = |i: usize| request(i as u64, command(i as u64));
    let (mut greedy, sent) = flood(|| server.connect(), send, 4, 400);
    std::thread::sleep(Duration::from_millis(500));
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    println!("non-reading clients: {sent} requests sent, server RSS grew {grown_mib} MiB");
    // Four connections, each within 1 MiB + one 4 MiB page + what is being
    // read and encoded: well under 48 MiB.
    assert!(grown_mib < 48, "RSS grew {grown_mib} MiB");

    // The replies were only delayed: they come, in order and whole.
    let mut stream = greedy.remove(0);
    for i in 0..20 {
        let response = read_response(&mut stream).expect("a reply");
        assert_eq!(response.id, i);
        match (command(i), response.reply) {
            (Command::Get(_), Some(Reply::Value(v))) => assert_eq!(v.value.len(), VALUE_BYTES),
            (Command::Scan(_), Some(Reply::Scan(page))) => {
                assert_eq!(page.entries.len(), KEYS);
                assert_eq!(page.entries[0].value, Bytes::from(vec![b'a'; VALUE_BYTES]));
            }
            (_, other) => panic!("unexpected reply {other:?}"),
        }
    }
}
