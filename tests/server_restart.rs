//! Graceful shutdown answers what was read and closes the database; a
//! restart on the same directory finds every acknowledged write; a second
//! database on a directory in use is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use std::io::Write;

use bytes::Bytes;
use naive_kv::client::Client;
use naive_kv::proto::{self, request::Command, response::Reply};
use naive_kv::{Db, Error, Options};
use server_support::{TestServer, config, read_response, request, runtime};

#[test]
fn restart_keeps_data_and_shutdown_answers_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), config());
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        client.put("kept", "yes").await.unwrap();
        client.put("removed", "x").await.unwrap();
        client.delete("removed").await.unwrap();
    });
    let locked = actix::System::new().block_on(Db::open(Options::new(dir.path())));
    assert!(matches!(locked, Err(Error::Locked { .. })), "{locked:?}");

    let mut stream = server.connect();
    let mut bytes = Vec::new();
    for id in 1..=200u64 {
        let put = proto::Put {
            key: format!("p{id}").into(),
            value: "v".into(),
            ..Default::default()
        };
        bytes.extend(request(id, Command::Put(put)));
    }
    stream.write_all(&bytes).unwrap();
    let first = read_response(&mut stream).unwrap();
    assert_eq!(first.id, 1);
    let stopping = std::thread::spawn(move || server.stop());
    let mut acked = vec![1];
    while let Some(response) = read_response(&mut stream) {
        assert_eq!(
            response.id,
            acked.len() as u64 + 1,
            "in order, none skipped"
        );
        assert_eq!(response.reply, Some(Reply::Done(proto::Done {})));
        acked.push(response.id);
    }
    stopping.join().unwrap().unwrap();

    let server = TestServer::start_in(dir.path(), config());
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        assert_eq!(client.get("kept").await.unwrap(), Some(Bytes::from("yes")));
        assert_eq!(client.get("removed").await.unwrap(), None);
        for id in acked {
            let key = format!("p{id}");
            assert_eq!(
                client.get(key.clone()).await.unwrap(),
                Some(Bytes::from("v")),
                "{key}"
            );
        }
    });
}
