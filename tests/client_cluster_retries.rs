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

/// Runs `run_client -p PORT ARGS...` without blocking the test's runtime
/// (the cluster serves on it); its exit success, stdout and stderr.
async fn run_client(port: u16, args: &[&str]) -> (bool, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_run_client"))
        .args(["-p", &port.to_string()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "run_client hangs");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let out = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[actix_rt::test]
async fn run_client_follows_the_leader_a_cut_off_follower_names() {
    let cluster = TestCluster::start(3, 73, None).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let mut ports = BTreeMap::new();
    for id in cluster.ids() {
        let node = cluster.node(id);
        let port = cluster_support::serve(&node);
        node.advertise_client_addr(SocketAddr::from(([127, 0, 0, 1], port)));
        ports.insert(id, port);
    }
    let leader_addr = SocketAddr::from(([127, 0, 0, 1], ports[&leader]));
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while cluster.node(follower).leader_client_addr() != Some(leader_addr) {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader's address is never learned"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    // Cut off, the follower answers UNAVAILABLE naming the leader's native
    // address; run_client, given only the follower, goes there.
    let rest: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != follower)
        .collect();
    cluster.faults.partition(&[follower], &rest);
    let (ok, out, err) = run_client(ports[&follower], &["set", "k", "v"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "OK");
    assert!(
        err.contains("UNAVAILABLE") && err.contains("reconnecting"),
        "{err}"
    );
    let (ok, out, err) = run_client(ports[&follower], &["get", "k"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.trim(), "v");

    cluster.shutdown().await;
}
