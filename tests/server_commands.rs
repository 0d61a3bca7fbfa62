//! Every command through the library client against a real server: get,
//! put, delete, batch (atomic), scan, ping, stats, and the engine's limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server_support;

use bytes::Bytes;
use naive_kv::WriteBatch;
use naive_kv::client::{Client, ClientError};
use naive_kv::proto::ErrorCode;
use server_support::{TestServer, runtime};

#[test]
fn get_put_delete_ping_stats() {
    let server = TestServer::start();
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        client.ping().await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), None);
        client.put("k", "v").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), Some(Bytes::from("v")));
        client.put("empty", "").await.unwrap();
        assert_eq!(client.get("empty").await.unwrap(), Some(Bytes::new()));
        client.delete("k").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), None);
        client.delete("never-there").await.unwrap();
        let stats = client.stats().await.unwrap();
        assert!(!stats.is_empty(), "stats has counters");
    });
}

#[test]
fn batch_is_atomic() {
    let server = TestServer::start();
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        client.put("gone", "x").await.unwrap();
        let mut batch = WriteBatch::new();
        batch.put("a", "1").put("b", "2").delete("gone");
        client.batch(&batch).await.unwrap();
        assert_eq!(client.get("a").await.unwrap(), Some(Bytes::from("1")));
        assert_eq!(client.get("b").await.unwrap(), Some(Bytes::from("2")));
        assert_eq!(client.get("gone").await.unwrap(), None);

        let mut bad = WriteBatch::new();
        bad.put("c", "3")
            .put(vec![b'k'; 65 * 1024], "v")
            .delete("a");
        let err = client.batch(&bad).await.unwrap_err();
        assert!(matches!(
            err,
            ClientError::Server {
                code: ErrorCode::KeyTooLarge,
                ..
            }
        ));
        assert_eq!(
            client.get("c").await.unwrap(),
            None,
            "no part of a failed batch"
        );
        assert_eq!(client.get("a").await.unwrap(), Some(Bytes::from("1")));
    });
}

#[test]
fn oversized_key_and_value_and_empty_key_are_refused() {
    let server = TestServer::start();
    runtime().block_on(async {
        let client = Client::connect(server.addr).await.unwrap();
        let big_key = vec![b'k'; 64 * 1024 + 1];
        let err = client.put(big_key.clone(), "v").await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Server {
                    code: ErrorCode::KeyTooLarge,
                    ..
                }
            ),
            "{err}"
        );
        let err = client.get(big_key).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Server {
                    code: ErrorCode::KeyTooLarge,
                    ..
                }
            ),
            "{err}"
        );
        let big_value = vec![b'v'; 32 * 1024 * 1024 + 1];
        let err = client.put("k", big_value).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Server {
                    code: ErrorCode::ValueTooLarge,
                    ..
                }
            ),
            "{err}"
        );
        let err = client.put("", "v").await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Server {
                    code: ErrorCode::InvalidRequest,
                    ..
                }
            ),
            "{err}"
        );
        client.ping().await.unwrap();
    });
}
