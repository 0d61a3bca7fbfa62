//! A three-node cluster in one process, over the real peer network on
//! loopback ports: it elects a leader, replicates writes to every node,
//! survives the leader's shutdown without losing an acknowledged write, and
//! a restarted node catches up from its directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::Options;
use naive_kv::cluster::{ClusterConfig, ClusterNode, ClusterRequest, NodeId};
use tempfile::TempDir;

mod cluster_support;

use cluster_support::free_ports;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn config(id: NodeId, members: &BTreeMap<NodeId, String>) -> ClusterConfig {
    let mut config = ClusterConfig::new(id, members[&id].clone(), members.clone());
    config.heartbeat = Duration::from_millis(100);
    config.election_timeout = Duration::from_millis(400);
    config.request_timeout = Duration::from_secs(5);
    config.secret = Some(cluster_support::test_secret());
    config
}

async fn start(id: NodeId, members: &BTreeMap<NodeId, String>, dir: &Path) -> ClusterNode {
    let options = Options::new(dir.join("unused"));
    ClusterNode::start(config(id, members), dir, options)
        .await
        .unwrap()
}

/// Waits until some running node sees itself as leader; returns its id.
async fn leader_of(nodes: &BTreeMap<NodeId, ClusterNode>, within: Duration) -> NodeId {
    let deadline = Instant::now() + within;
    loop {
        for (id, node) in nodes {
            if node.status().leader == Some(*id) && node.status().role == "leader" {
                return *id;
            }
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn put(key: &str, value: &str) -> ClusterRequest {
    ClusterRequest::of(vec![(
        key.as_bytes().to_vec(),
        Some(value.as_bytes().to_vec()),
    )])
}

/// Every acknowledged write is visible on `node` after a read barrier.
async fn check_all(node: &ClusterNode, acknowledged: &BTreeMap<String, String>) {
    node.linearizable_barrier().await.unwrap();
    for (key, value) in acknowledged {
        let got = node.engine().get(Bytes::from(key.clone())).await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "node {} key {key}",
            node.id()
        );
    }
}

#[actix_rt::test]
async fn three_nodes_replicate_fail_over_and_catch_up() -> TestResult {
    let ports = free_ports(3);
    let members: BTreeMap<NodeId, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
        .collect();
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(id, &members, dirs[id as usize - 1].path()).await);
    }
    let first_leader = leader_of(&nodes, Duration::from_secs(10)).await;

    // Writes through every node: followers forward to the leader.
    let mut acknowledged = BTreeMap::new();
    for i in 0..30 {
        let via = &nodes[&(i % 3 + 1)];
        let (key, value) = (format!("k{i:02}"), format!("v{i}"));
        via.write(put(&key, &value)).await?;
        acknowledged.insert(key, value);
    }
    for node in nodes.values() {
        check_all(node, &acknowledged).await;
    }

    // The leader goes away; the others elect a new one and keep serving.
    let old = nodes.remove(&first_leader).unwrap();
    old.shutdown().await?;
    drop(old);
    let stopped_at = Instant::now();
    let second_leader = leader_of(&nodes, Duration::from_secs(8)).await;
    assert_ne!(second_leader, first_leader);
    let survivor = nodes.values().next().unwrap().clone();
    survivor.write(put("after-failover", "yes")).await?;
    println!(
        "failover: writes served again after {:?}",
        stopped_at.elapsed()
    );
    acknowledged.insert("after-failover".into(), "yes".into());
    for i in 30..40 {
        let (key, value) = (format!("k{i:02}"), format!("v{i}"));
        survivor.write(put(&key, &value)).await?;
        acknowledged.insert(key, value);
    }
    for node in nodes.values() {
        check_all(node, &acknowledged).await;
    }

    // The old leader restarts from its directory and catches up.
    let restarted = start(
        first_leader,
        &members,
        dirs[first_leader as usize - 1].path(),
    )
    .await;
    nodes.insert(first_leader, restarted.clone());
    check_all(&restarted, &acknowledged).await;
    // Reading its engine directly (no barrier) also sees everything once
    // it has applied the leader's log.
    let leader = leader_of(&nodes, Duration::from_secs(8)).await;
    let target = nodes[&leader].status().last_log_index;
    let deadline = Instant::now() + Duration::from_secs(8);
    while restarted.status().last_applied_index < target {
        assert!(Instant::now() < deadline, "restarted node did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (key, value) in &acknowledged {
        let got = restarted.engine().get(Bytes::from(key.clone())).await?;
        assert_eq!(got.as_deref(), Some(value.as_bytes()));
    }
    for node in nodes.values() {
        node.shutdown().await?;
    }
    Ok(())
}
