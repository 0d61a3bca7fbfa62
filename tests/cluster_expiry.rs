//! Expiry is replicated: a put with a ttl, `Expire` and `Persist` through
//! one node give every node the same absolute expiry (computed once, by the
//! node that accepted the request), through the native protocol.

mod cluster_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_support::{TestCluster, serve};
use naive_kv::Ttl;
use naive_kv::client::Client;

async fn client(port: u16) -> Client {
    Client::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Every node's engine, once caught up, holds `key` with expiry `at_ms`.
async fn every_node_has(cluster: &TestCluster, key: &str, expected: Option<(&str, u64)>) {
    for id in cluster.ids() {
        cluster.caught_up(id, Duration::from_secs(10)).await;
        let found = cluster
            .node(id)
            .engine()
            .get_with_expiry(Bytes::copy_from_slice(key.as_bytes()))
            .await
            .unwrap();
        let expected = expected.map(|(v, at)| (Bytes::copy_from_slice(v.as_bytes()), at));
        assert_eq!(found, expected, "node {id}, key {key}");
    }
}

#[actix_rt::test]
async fn expiring_writes_through_a_follower_carry_one_expiry_to_every_node() {
    let cluster = TestCluster::start(3, 91, None).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let via = client(serve(&cluster.node(follower))).await;

    via.put_with_ttl("t", "v", 600_000).await.unwrap();
    let Ttl::At { at_ms, .. } = via.ttl("t").await.unwrap() else {
        panic!("no expiry after a put with a ttl");
    };
    every_node_has(&cluster, "t", Some(("v", at_ms))).await;

    // Expire and Persist read, then write conditionally.
    assert!(via.expire_at("t", at_ms + 1_000).await.unwrap());
    every_node_has(&cluster, "t", Some(("v", at_ms + 1_000))).await;
    assert!(via.persist("t").await.unwrap());
    assert!(!via.persist("t").await.unwrap(), "nothing left to persist");
    every_node_has(&cluster, "t", Some(("v", 0))).await;
    assert!(!via.expire_in("absent", 1_000).await.unwrap());

    // An expiry already past deletes the key everywhere.
    via.put("gone", "v").await.unwrap();
    assert!(via.expire_at("gone", 1).await.unwrap());
    every_node_has(&cluster, "gone", None).await;

    // A short ttl expires on every node.
    via.put_with_ttl("short", "v", 300).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while via.get("short").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    every_node_has(&cluster, "short", None).await;
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn concurrent_expire_and_put_through_two_nodes_leave_every_node_alike() {
    let cluster = TestCluster::start(3, 92, None).await;
    let ids = cluster.ids();
    let a = client(serve(&cluster.node(ids[0]))).await;
    let b = client(serve(&cluster.node(ids[1]))).await;
    for round in 0..20u64 {
        let key = format!("k{}", round % 3);
        let value = format!("v{round}");
        let (put, expired) = futures_util::join!(
            a.put(key.clone(), value.clone()),
            b.expire_in(key.clone(), 3_600_000 + round)
        );
        put.unwrap();
        expired.unwrap();
    }
    let leader = cluster.leader(Duration::from_secs(10)).await;
    for key in ["k0", "k1", "k2"] {
        let on_leader = cluster
            .node(leader)
            .engine()
            .get_with_expiry(Bytes::from(key))
            .await
            .unwrap();
        let on_leader = on_leader.map(|(v, at)| (String::from_utf8(v.to_vec()).unwrap(), at));
        let expected = on_leader.as_ref().map(|(v, at)| (v.as_str(), *at));
        every_node_has(&cluster, key, expected).await;
    }
    cluster.shutdown().await;
}
