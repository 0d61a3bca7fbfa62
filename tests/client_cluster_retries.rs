//! The library's retrying client against a three-node cluster whose leader
//! (the node it is connected to) is killed: its reads and idempotent
//! writes keep succeeding, with no error surfacing, on another node.

mod cluster_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cluster_support::{TestCluster, serve_until};
use naive_kv::client::{RetryPolicy, RetryingClient};
use tokio::sync::oneshot;

#[actix_rt::test]
async fn reads_and_writes_survive_the_leader_being_killed() {
    let cluster = TestCluster::start(3, 71, None).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let mut stops = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for id in cluster.ids() {
        let (stop, stopped) = oneshot::channel::<()>();
        let port = serve_until(&cluster.node(id), async move {
            let _ = stopped.await;
        });
        stops.insert(id, stop);
        addrs.insert(id, SocketAddr::from(([127, 0, 0, 1], port)));
    }
    // The leader first: the client connects to it.
    let mut nodes = vec![addrs[&leader]];
    nodes.extend(
        addrs
            .iter()
            .filter(|(id, _)| **id != leader)
            .map(|(_, a)| *a),
    );
    let client = RetryingClient::new(nodes, RetryPolicy::default());
    for i in 0..20 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    assert_eq!(client.connected_to(), Some(addrs[&leader]));

    // The leader's node stops, then its server (which drops the client's
    // connection).
    cluster.stop_node(leader).await;
    let _ = stops.remove(&leader).unwrap().send(());
    for i in 0..20 {
        let value = client.get(format!("k{i}")).await.unwrap();
        assert_eq!(value, Some(Bytes::from(format!("v{i}"))));
    }
    for i in 20..30 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    assert_ne!(client.connected_to(), Some(addrs[&leader]));
    client.delete("k0").await.unwrap();
    assert_eq!(client.get("k0").await.unwrap(), None);
    assert_eq!(client.get("k29").await.unwrap(), Some(Bytes::from("v29")));
    cluster.shutdown().await;
}
