//! Many connections: 150 concurrent clients, the connection limit (BUSY),
//! idle and half-open sockets and a client that never reads must not stall
//! anyone else; a half-closed client still gets its replies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::client::Client;
use naive_kv::proto::{self, ErrorCode, request::Command};
use naive_kv::server::ServerConfig;
use server_support::{TestServer, config, error_code, read_response, request, round_trip, runtime};

fn ping(id: u64) -> Vec<u8> {
    request(id, Command::Ping(proto::Ping {}))
}

#[test]
fn hundred_fifty_concurrent_clients() {
    let server = TestServer::start();
    runtime().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..150 {
            clients.push(Client::connect(server.addr).await.unwrap());
        }
        let writes: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| c.put(format!("c{i}"), format!("{i}")))
            .collect();
        for w in writes {
            w.await.unwrap();
        }
        for (i, client) in clients.iter().enumerate() {
            let j = (i + 1) % clients.len();
            let value = client.get(format!("c{j}")).await.unwrap();
            assert_eq!(value, Some(Bytes::from(j.to_string())));
        }
    });
}

#[test]
fn past_the_limit_a_connection_gets_busy_and_is_closed() {
    let server = TestServer::start_with(ServerConfig {
        max_connections: 2,
        ..config()
    });
    let mut first = server.connect();
    let mut second = server.connect();
    assert_eq!(round_trip(&mut first, &ping(1)).id, 1);
    assert_eq!(round_trip(&mut second, &ping(1)).id, 1);
    let mut third = server.connect();
    let response = read_response(&mut third).unwrap();
    assert_eq!(error_code(&response), Some(ErrorCode::Busy));
    assert!(read_response(&mut third).is_none());
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = server.connect();
        again.write_all(&ping(7)).unwrap();
        match read_response(&mut again) {
            Some(r) if r.id == 7 => break,
            _ => assert!(Instant::now() < deadline, "slot never freed"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn idle_partial_and_unread_connections_do_not_stall_others() {
    let server = TestServer::start();
    let idle: Vec<_> = (0..1000).map(|_| server.connect()).collect();
    let mut partial = server.connect();
    partial.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
    // A client that pipelines gets of a 1 MiB value and never reads.
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        client.put("big", vec![b'x'; 1 << 20]).await.unwrap();
    });
    let mut greedy = server.connect();
    let get = request(
        1,
        Command::Get(proto::Get {
            key: Bytes::from("big"),
        }),
    );
    greedy
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for _ in 0..400 {
        if greedy.write_all(&get).is_err() {
            break; // the server stopped reading: back-pressure works
        }
    }
    let started = Instant::now();
    let mut other = server.connect();
    for id in 1..=20 {
        assert_eq!(round_trip(&mut other, &ping(id)).id, id);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "others were stalled"
    );
    drop((idle, partial, greedy));
}

#[test]
fn half_closed_client_still_gets_its_replies() {
    let server = TestServer::start();
    let mut stream = server.connect();
    let put = request(
        1,
        Command::Put(proto::Put {
            key: "h".into(),
            value: "v".into(),
            ..Default::default()
        }),
    );
    stream.write_all(&put).unwrap();
    stream
        .write_all(&request(2, Command::Get(proto::Get { key: "h".into() })))
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_response(&mut stream).unwrap().id, 1);
    let get = read_response(&mut stream).unwrap();
    assert_eq!(get.id, 2);
    let want = proto::Value {
        found: true,
        value: "v".into(),
    };
    assert_eq!(get.reply, Some(proto::response::Reply::Value(want)));
    assert!(read_response(&mut stream).is_none(), "then closed");
}
