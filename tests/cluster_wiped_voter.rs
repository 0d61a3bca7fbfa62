//! A voter restarted empty under its old id (its directory lost) must not
//! hand a stale node the election: the scenario of an outside probe
//! (2026-12-01) that lost an acknowledged write, on three in-process nodes
//! (`naive_kv::cluster::abstention`).

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{TestCluster, read};
use naive_kv::cluster::{ClusterError, ClusterRequest};

fn put(key: &str, value: &str) -> ClusterRequest {
    ClusterRequest::of(vec![(key.as_bytes().to_vec(), Some(value.into()))])
}

/// Reads `key` through node `id` until a read succeeds (within `within`).
async fn read_when_served(cluster: &TestCluster, id: u64, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = read(&cluster.node(id), "k").await {
            return value;
        }
        assert!(Instant::now() < deadline, "node {id} served no read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Node `stale` misses write W, which the leader and `holder` commit and
/// acknowledge. The leader goes down; `holder` is wiped and restarted
/// empty with its old id; `stale` asks for votes. Before abstention,
/// `holder` granted its vote, `stale` led without W and W was lost for
/// good. Now the two answer UNAVAILABLE (never a value without W) until
/// the leader returns, and then W is read on every node.
#[actix_rt::test]
async fn a_wiped_voter_does_not_elect_a_stale_node() {
    let mut cluster = TestCluster::start(3, 31, None).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster
        .node(leader)
        .write(put("k", "before"))
        .await
        .unwrap();
    let followers: Vec<_> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let (holder, stale) = (followers[0], followers[1]);
    cluster.caught_up(stale, Duration::from_secs(10)).await;
    cluster.faults.partition(&[stale], &[leader, holder]);
    cluster.node(leader).write(put("k", "W")).await.unwrap();
    cluster.stop_node(leader).await;
    cluster.stop_node(holder).await;
    cluster.wipe_node(holder);
    cluster.start_node(holder).await;
    cluster.faults.heal();

    // Several election timeouts (0.5 to 1 s here): no leader, no stale read.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for id in [stale, holder] {
            let status = cluster.node(id).status();
            assert_ne!(status.role, "leader", "node {id} leads without W");
            if let Some(value) = read(&cluster.node(id), "k").await {
                assert_eq!(value.as_deref(), Some("W"), "node {id} read without W");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match cluster.node(stale).write(put("other", "x")).await {
        Err(ClusterError::Unavailable { .. }) => {}
        other => panic!("a write with no leader: expected UNAVAILABLE, got {other:?}"),
    }

    cluster.start_node(leader).await;
    cluster.leader_after(0, Duration::from_secs(20)).await;
    for id in [leader, holder, stale] {
        let value = read_when_served(&cluster, id, Duration::from_secs(20)).await;
        assert_eq!(value.as_deref(), Some("W"), "node {id} lost W");
    }
    cluster.shutdown().await;
}
