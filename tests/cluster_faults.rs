//! Three in-process nodes on a fault-injecting network (drops, delays,
//! duplicates, partitions; `naive_kv::cluster::faults`), with four
//! concurrent clients on three shared keys through every node. Each test
//! injects one failure under load, then reads every key on every running
//! node and checks that the recorded history is linearizable per key and
//! that no acknowledged write was lost (`cluster_support::linearizability`).
//!
//! Each test takes a few seconds; `NAIVEKV_CLUSTER_TESTS=1` runs each
//! longer and repeats the failure.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{Clients, Recorder, TestCluster, check, long_tests};
use naive_kv::cluster::MemberChange;
use naive_kv::cluster::faults::FaultRules;

/// Four clients: more than the nodes, so some share a node.
const CLIENTS: usize = 4;

/// How often a failure is repeated.
fn rounds() -> usize {
    if long_tests() { 5 } else { 1 }
}

/// A phase of load: 1 s by default, 3 s in the long run.
fn phase() -> Duration {
    Duration::from_millis(if long_tests() { 3000 } else { 1000 })
}

/// A network that loses, duplicates and delays a little.
fn lossy() -> FaultRules {
    FaultRules {
        drop_per_mille: 20,
        duplicate_per_mille: 20,
        max_delay: Duration::from_millis(3),
        ..FaultRules::default()
    }
}

/// Writes acknowledged among operations invoked after `since`.
fn acknowledged_since(recorder: &Recorder, since: Instant, start: Instant) -> usize {
    let since = since.duration_since(start).as_nanos() as u64;
    recorder
        .history
        .borrow()
        .iter()
        .filter(|op| op.invoked >= since && op.returned.is_some())
        .filter(|op| !matches!(op.action, cluster_support::linearizability::Action::Get(_)))
        .count()
}

#[actix_rt::test]
async fn the_leader_is_killed_under_load_on_a_lossy_network() {
    let cluster = TestCluster::start(3, 11, None).await;
    cluster.faults.set(lossy());
    let start = Instant::now();
    let recorder = Recorder::new();
    let clients = Clients::spawn(CLIENTS, &cluster.nodes, &recorder);
    tokio::time::sleep(phase()).await;
    let mut stopped = Vec::new();
    for _ in 0..rounds() {
        let (leader, term) = cluster.leader_after(0, Duration::from_secs(10)).await;
        cluster.stop_node(leader).await;
        let killed_at = Instant::now();
        let (next, _) = cluster.leader_after(term, Duration::from_secs(10)).await;
        assert_ne!(next, leader);
        println!(
            "leader {leader} stopped; {next} leads after {:?}",
            killed_at.elapsed()
        );
        tokio::time::sleep(phase()).await;
        assert!(
            acknowledged_since(&recorder, killed_at, start) > 0,
            "no write acknowledged after the leader was killed"
        );
        stopped.push(leader);
        cluster.start_node(leader).await;
    }
    clients.stop().await;
    cluster.faults.set(FaultRules::default());
    let checked = check(&cluster, &recorder).await;
    println!(
        "{checked} operations checked, {} writes acknowledged",
        recorder.acknowledged_writes()
    );
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_partitioned_leader_steps_aside_and_rejoins_when_healed() {
    let cluster = TestCluster::start(3, 12, None).await;
    let start = Instant::now();
    let recorder = Recorder::new();
    let clients = Clients::spawn(CLIENTS, &cluster.nodes, &recorder);
    tokio::time::sleep(phase()).await;
    for _ in 0..rounds() {
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let rest: Vec<_> = cluster
            .ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        cluster.faults.partition(&[leader], &rest);
        let cut_at = Instant::now();
        // The majority elects a leader of its own and serves writes.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now_leading = rest.iter().find(|id| {
                let status = cluster.node(**id).status();
                status.role == "leader" && status.leader == Some(**id)
            });
            if now_leading.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "the majority elected no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(phase()).await;
        assert!(
            acknowledged_since(&recorder, cut_at, start) > 0,
            "the majority acknowledged no write while the leader was cut off"
        );
        cluster.faults.heal();
        cluster.caught_up(leader, Duration::from_secs(10)).await;
        tokio::time::sleep(phase() / 2).await;
    }
    clients.stop().await;
    let checked = check(&cluster, &recorder).await;
    println!(
        "{checked} operations checked, {} writes acknowledged",
        recorder.acknowledged_writes()
    );
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_follower_restarted_from_its_directory_catches_up() {
    let cluster = TestCluster::start(3, 13, None).await;
    cluster.faults.set(lossy());
    let recorder = Recorder::new();
    let clients = Clients::spawn(CLIENTS, &cluster.nodes, &recorder);
    tokio::time::sleep(phase() / 2).await;
    for _ in 0..rounds() {
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
        cluster.stop_node(follower).await;
        let before = cluster.node(leader).status().last_log_index;
        tokio::time::sleep(phase()).await;
        assert!(cluster.node(leader).status().last_log_index > before);
        cluster.start_node(follower).await;
        cluster.caught_up(follower, Duration::from_secs(8)).await;
        tokio::time::sleep(phase() / 2).await;
    }
    clients.stop().await;
    cluster.faults.set(FaultRules::default());
    let checked = check(&cluster, &recorder).await;
    println!("{checked} operations checked");
    cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_wiped_node_is_removed_re_added_and_catches_up_by_snapshot() {
    // A snapshot every 20 entries, no log kept behind it: a node that
    // misses a few hundred writes can only catch up by snapshot.
    let mut cluster = TestCluster::start(3, 14, Some(20)).await;
    let recorder = Recorder::new();
    let clients = Clients::spawn(CLIENTS, &cluster.nodes, &recorder);
    tokio::time::sleep(phase() / 2).await;
    for _ in 0..rounds() {
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
        // A wiped node has lost its vote: it must leave the membership
        // and join again as a new node, never vote with an empty log.
        cluster.stop_node(follower).await;
        cluster.wipe_node(follower);
        let remove = MemberChange::Remove { id: follower };
        cluster.node(leader).change_members(remove).await.unwrap();
        tokio::time::sleep(phase()).await;
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let purged = cluster.node(leader).raft().metrics().borrow().purged;
        assert!(
            purged.is_some_and(|p| p.index > 20),
            "the leader's log was not purged ({purged:?})"
        );
        let fresh = cluster.start_node(follower).await;
        let addr = cluster.members[&follower].clone();
        let add = MemberChange::Add { id: follower, addr };
        cluster.node(leader).change_members(add).await.unwrap();
        let status = cluster.node(leader).status();
        assert!(status.members.iter().any(|m| m.id == follower && m.voter));
        cluster.caught_up(follower, Duration::from_secs(8)).await;
        let snapshot = fresh.raft().metrics().borrow().snapshot;
        assert!(snapshot.is_some(), "node {follower} has no snapshot");
        tokio::time::sleep(phase() / 2).await;
    }
    clients.stop().await;
    let checked = check(&cluster, &recorder).await;
    println!("{checked} operations checked");
    cluster.shutdown().await;
}

/// A leader whose followers are both gone keeps leading (openraft does not
/// step down), so its proposals never commit. A write to it used to wait
/// until a follower came back (an outside probe waited minutes, and every
/// later write on the node queued behind it); it is now answered
/// UNAVAILABLE within the request timeout (2 s here). Once the followers
/// are back, writes succeed again.
#[actix_rt::test]
async fn a_leader_without_a_majority_answers_writes_unavailable_in_time() {
    use naive_kv::cluster::{ClusterError, ClusterRequest};
    let put = |value: &str| ClusterRequest::of(vec![(b"k".to_vec(), Some(value.into()))]);
    let cluster = TestCluster::start(3, 17, None).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.node(leader).write(put("1")).await.unwrap();
    let followers: Vec<_> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    for follower in &followers {
        cluster.stop_node(*follower).await;
    }
    let started = Instant::now();
    let node = cluster.node(leader);
    let written = tokio::time::timeout(Duration::from_secs(8), node.write(put("2")));
    match written.await {
        Ok(Err(ClusterError::Unavailable { .. })) => {}
        Ok(other) => panic!("expected UNAVAILABLE, got {other:?}"),
        Err(_) => panic!("the write was not answered within 8 s"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for follower in &followers {
        cluster.start_node(*follower).await;
    }
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.node(leader).write(put("3")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no write succeeded after the followers came back"
        );
    }
    cluster.shutdown().await;
}
