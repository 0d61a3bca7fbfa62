//! `--read-consistency local`: a follower cut off from the cluster still
//! answers reads from its own engine (stale: it misses the writes made
//! since), while a node with the default (linearizable) reads answers
//! UNAVAILABLE once it cannot reach a leader that confirms a read index.
//! Both through the native protocol, as a client sees them.

mod cluster_support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cluster_support::{TestCluster, serve};
use naive_kv::client::{Client, ClientError};
use naive_kv::cluster::{ClusterRequest, ReadConsistency};
use naive_kv::proto::ErrorCode;

fn put(key: &str, value: &str) -> ClusterRequest {
    ClusterRequest::of(vec![(
        key.as_bytes().to_vec(),
        Some(value.as_bytes().to_vec()),
    )])
}

async fn client(port: u16) -> Client {
    Client::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_partitioned_follower_reads_locally_only_with_local_consistency() {
    let cluster = TestCluster::start(3, 57, None).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let (local, linearizable) = (others[0], others[1]);
    // The follower that reads locally restarts with that setting.
    cluster.stop_node(local).await;
    cluster
        .start_node_with(local, |config| {
            config.read_consistency = ReadConsistency::Local
        })
        .await;
    cluster.node(leader).write(put("k", "v1")).await.unwrap();
    cluster.caught_up(local, Duration::from_secs(10)).await;
    cluster
        .caught_up(linearizable, Duration::from_secs(10))
        .await;
    let local_client = client(serve(&cluster.node(local))).await;
    let linearizable_client = client(serve(&cluster.node(linearizable))).await;
    assert_eq!(
        local_client.get("k").await.unwrap(),
        Some(Bytes::from("v1"))
    );

    // Cut off, the local follower still answers, with what it has.
    cluster.faults.partition(&[local], &[leader, linearizable]);
    cluster.node(leader).write(put("k", "v2")).await.unwrap();
    assert_eq!(
        local_client.get("k").await.unwrap(),
        Some(Bytes::from("v1"))
    );
    assert_eq!(
        linearizable_client.get("k").await.unwrap(),
        Some(Bytes::from("v2"))
    );

    // Cut off too, the linearizable follower refuses to answer.
    cluster.faults.partition(&[linearizable], &[leader]);
    match linearizable_client.get("k").await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::Unavailable),
        other => panic!("a cut-off linearizable node answered {other:?}"),
    }
    assert_eq!(
        local_client.get("k").await.unwrap(),
        Some(Bytes::from("v1"))
    );
    cluster.shutdown().await;
}
