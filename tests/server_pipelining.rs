//! 1000 mixed requests written without waiting: replies come back in
//! request order with their ids, and every read sees exactly the writes
//! sent before it on the connection, none after (tests/server_order_model.rs
//! checks batches and whole scans too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use naive_kv::proto::{self, request::Command, response::Reply};
use server_support::{TestServer, read_response, request};

/// Request `i` of the mix: puts and deletes of 37 keys, gets, scans, pings.
fn command(i: u64) -> Command {
    let key = Bytes::from(format!("k{}", i % 37));
    match i % 5 {
        0 | 1 => Command::Put(proto::Put {
            key,
            value: Bytes::from(format!("v{i}")),
            ..Default::default()
        }),
        2 => Command::Get(proto::Get { key }),
        3 if i.is_multiple_of(3) => Command::Delete(proto::Delete { key }),
        3 => Command::Scan(proto::Scan {
            limit: 5,
            ..proto::Scan::default()
        }),
        _ => Command::Ping(proto::Ping {}),
    }
}

/// What a write does to a key: `Some(value)` or `None` for a delete.
fn effect(command: &Command) -> Option<(Bytes, Option<Bytes>)> {
    match command {
        Command::Put(p) => Some((p.key.clone(), Some(p.value.clone()))),
        Command::Delete(d) => Some((d.key.clone(), None)),
        _ => None,
    }
}

#[test]
fn thousand_pipelined_requests_keep_order_and_read_your_writes() {
    let server = TestServer::start_syncing();
    let mut stream = server.connect();
    let commands: Vec<Command> = (1..=1000).map(command).collect();
    let bytes: Vec<u8> = (1..=1000)
        .zip(&commands)
        .flat_map(|(i, c)| request(i, c.clone()))
        .collect();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&bytes).unwrap());

    let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    for (index, command) in commands.iter().enumerate() {
        let id = index as u64 + 1;
        let response = read_response(&mut stream).expect("a response");
        assert_eq!(response.id, id, "replies in request order");
        let reply = response.reply.expect("a reply");
        match command {
            Command::Put(_) | Command::Delete(_) => {
                assert_eq!(reply, Reply::Done(proto::Done {}), "request {id}");
                let (key, value) = effect(command).unwrap();
                match value {
                    Some(value) => model.insert(key, value),
                    None => model.remove(&key),
                };
            }
            Command::Get(get) => {
                let Reply::Value(v) = reply else {
                    panic!("request {id}: {reply:?}")
                };
                let seen = v.found.then_some(v.value);
                let now = model.get(&get.key).cloned();
                assert_eq!(seen, now, "request {id}: what earlier writes left");
            }
            Command::Scan(_) => {
                let Reply::Scan(page) = reply else {
                    panic!("request {id}: {reply:?}")
                };
                assert!(page.entries.len() <= 5);
                assert!(page.entries.windows(2).all(|w| w[0].key < w[1].key));
            }
            _ => assert_eq!(reply, Reply::Pong(proto::Pong {})),
        }
    }
    sender.join().unwrap();
}

/// The engine's `counter` as the Stats command reports it.
fn counter(stream: &mut std::net::TcpStream, id: u64, counter: &str) -> u64 {
    stream
        .write_all(&request(id, Command::Stats(proto::Stats {})))
        .unwrap();
    let reply = read_response(stream).expect("a response").reply;
    let Some(Reply::Stats(stats)) = reply else {
        panic!("{reply:?}")
    };
    stats.counters.get(counter).copied().expect(counter)
}

#[test]
fn pipelined_puts_share_engine_writes_and_a_refused_one_is_refused_alone() {
    let server = TestServer::start_syncing();
    let mut stream = server.connect();
    let before = counter(&mut stream, 1, "write_requests");
    // 200 puts in one send, the 100th with an empty key (refused).
    let bytes: Vec<u8> = (0..200u64)
        .flat_map(|i| {
            let key = match i {
                99 => Bytes::new(),
                _ => Bytes::from(format!("key{i}")),
            };
            let value = Bytes::from(format!("value{i}"));
            request(
                10 + i,
                Command::Put(proto::Put {
                    key,
                    value,
                    ..Default::default()
                }),
            )
        })
        .collect();
    stream.write_all(&bytes).unwrap();
    for i in 0..200u64 {
        let response = read_response(&mut stream).expect("a response");
        assert_eq!(response.id, 10 + i, "replies in request order");
        match (i, response.reply.expect("a reply")) {
            (99, Reply::Error(e)) => assert!(e.message.contains("empty"), "{e:?}"),
            (_, Reply::Done(_)) if i != 99 => {}
            (_, reply) => panic!("put {i}: {reply:?}"),
        }
    }
    let requests = counter(&mut stream, 300, "write_requests") - before;
    // Gathered per pass of the reader over what the socket had: far fewer
    // engine writes than puts (one per put before gathering).
    assert!(requests <= 50, "{requests} engine writes for 199 puts");
    for i in (0..200u64).filter(|i| *i != 99) {
        let get = Command::Get(proto::Get {
            key: Bytes::from(format!("key{i}")),
        });
        stream.write_all(&request(1000 + i, get)).unwrap();
        let Some(Reply::Value(v)) = read_response(&mut stream).expect("a response").reply else {
            panic!("get {i}")
        };
        assert_eq!((v.found, v.value), (true, Bytes::from(format!("value{i}"))));
    }
}
