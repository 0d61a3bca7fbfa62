//! Redis clients on a three-node cluster: every node serves RESP; writes
//! go through the leader, reads see every acknowledged write, INCR through
//! two nodes at once loses nothing, a node cut off from the majority
//! answers `-CLUSTERDOWN`, and `INFO replication` names roles as Redis
//! does and carries the cluster's figures.
//!
//! The clients are redis-rs's blocking ones, run on blocking threads while
//! the nodes run on the test's runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cluster_support::{TestCluster, serve_resp};

/// Runs `work` with a redis-rs connection to `port`, off the runtime.
async fn with_redis<T: Send + 'static>(
    port: u16,
    work: impl FnOnce(&mut redis::Connection) -> T + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let mut con = client.get_connection().unwrap();
        con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        work(&mut con)
    })
    .await
    .unwrap()
}

/// One command through `port`.
async fn q<T: redis::FromRedisValue + Send + 'static>(port: u16, args: &[&str]) -> T {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    with_redis(port, move |con| cmd(con, &args)).await
}

fn cmd<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[String]) -> T {
    let mut command = redis::cmd(&args[0]);
    for arg in &args[1..] {
        command.arg(arg);
    }
    command
        .query(con)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The raw reply line to one command (for error codes redis-rs renames).
async fn raw_line(port: u16, args: &[&str]) -> String {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed");
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    })
    .await
    .unwrap()
}

struct RespCluster {
    cluster: TestCluster,
    /// Each node's RESP port, by node id order.
    ports: Vec<u16>,
    leader: u64,
}

impl RespCluster {
    async fn start(seed: u64) -> RespCluster {
        let cluster = TestCluster::start(3, seed, None).await;
        let leader = cluster.leader(Duration::from_secs(10)).await;
        let ports = cluster
            .ids()
            .into_iter()
            .map(|id| serve_resp(&cluster.node(id)))
            .collect();
        RespCluster {
            cluster,
            ports,
            leader,
        }
    }

    fn port(&self, id: u64) -> u16 {
        let index = self.cluster.ids().iter().position(|i| *i == id).unwrap();
        self.ports[index]
    }

    /// The ids of the nodes that do not lead.
    fn followers(&self) -> Vec<u64> {
        let ids = self.cluster.ids();
        ids.into_iter().filter(|id| *id != self.leader).collect()
    }
}

#[actix_rt::test]
async fn strings_and_expiry_through_different_nodes_read_back_everywhere() {
    let c = RespCluster::start(201).await;
    let [a, b, d] = [c.ports[0], c.ports[1], c.ports[2]];
    assert_eq!(q::<String>(a, &["SET", "k", "v1"]).await, "OK");
    // Read your write through another node (reads pass the read barrier).
    assert_eq!(
        q::<Option<String>>(b, &["GET", "k"]).await,
        Some("v1".into())
    );
    assert_eq!(q::<i64>(d, &["EXPIRE", "k", "100"]).await, 1);
    let ttl: i64 = q(a, &["TTL", "k"]).await;
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(q::<i64>(b, &["PERSIST", "k"]).await, 1);
    assert_eq!(q::<i64>(d, &["TTL", "k"]).await, -1);
    assert_eq!(q::<String>(d, &["SET", "e", "x", "PX", "200"]).await, "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    while q::<Option<String>>(a, &["GET", "e"]).await.is_some() {
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(q::<i64>(b, &["INCR", "n"]).await, 1);
    assert_eq!(q::<i64>(d, &["INCRBY", "n", "10"]).await, 11);
    assert_eq!(q::<i64>(a, &["APPEND", "k", "+"]).await, 3);
    assert_eq!(
        q::<Option<String>>(d, &["GET", "k"]).await,
        Some("v1+".into())
    );
    assert_eq!(q::<i64>(a, &["DEL", "k", "n"]).await, 2);
    assert_eq!(q::<Option<String>>(b, &["GET", "k"]).await, None);
    // MULTI/EXEC through a follower runs whole, on every node.
    let follower = c.port(c.followers()[0]);
    let replies: Vec<i64> = with_redis(follower, |con| {
        redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("t")
            .cmd("INCR")
            .arg("t")
            .query(con)
            .unwrap()
    })
    .await;
    assert_eq!(replies, vec![1, 2]);
    assert_eq!(q::<String>(a, &["MSET", "m1", "1", "m2", "2"]).await, "OK");
    assert_eq!(q::<String>(b, &["FLUSHALL"]).await, "OK");
    for port in [a, b, d] {
        assert_eq!(q::<i64>(port, &["DBSIZE"]).await, 0);
    }
    c.cluster.shutdown().await;
}

#[actix_rt::test]
async fn incr_loops_through_two_nodes_lose_no_increment() {
    let c = RespCluster::start(202).await;
    let followers = c.followers();
    let ports = [c.port(followers[0]), c.port(followers[1]), c.port(c.leader)];
    const EACH: i64 = 100;
    let loops = ports[..2].iter().map(|&port| {
        with_redis(port, |con| {
            for _ in 0..EACH {
                cmd::<i64>(con, &["INCR".into(), "counter".into()]);
            }
        })
    });
    futures_util::future::join_all(loops).await;
    for port in ports {
        let total: i64 = q(port, &["GET", "counter"]).await;
        assert_eq!(total, 2 * EACH);
    }
    c.cluster.shutdown().await;
}

#[actix_rt::test]
async fn a_node_cut_off_from_the_majority_answers_clusterdown() {
    let c = RespCluster::start(203).await;
    let lonely = c.followers()[0];
    let rest: Vec<u64> = c
        .cluster
        .ids()
        .into_iter()
        .filter(|i| *i != lonely)
        .collect();
    let port = c.port(lonely);
    assert_eq!(q::<String>(port, &["SET", "k", "v"]).await, "OK");
    c.cluster.faults.partition(&[lonely], &rest);
    for args in [&["GET", "k"][..], &["SET", "k", "w"], &["INCR", "n"]] {
        let line = raw_line(port, args).await;
        assert!(line.starts_with("-CLUSTERDOWN "), "{args:?}: {line}");
    }
    // INFO describes the node as it is, at once, as during any outage.
    let started = Instant::now();
    let line = raw_line(port, &["INFO", "server"]).await;
    assert!(line.starts_with('$'), "INFO during the outage: {line}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    c.cluster.faults.heal();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = raw_line(port, &["SET", "k", "back"]).await;
        if line == "+OK\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still down after healing: {line}"
        );
    }
    assert_eq!(
        q::<Option<String>>(port, &["GET", "k"]).await,
        Some("back".into())
    );
    c.cluster.shutdown().await;
}

#[actix_rt::test]
async fn info_replication_names_the_roles_and_the_cluster_figures() {
    let c = RespCluster::start(204).await;
    // A write makes every member's matched index known on the leader.
    assert_eq!(
        q::<String>(c.port(c.leader), &["SET", "k", "v"]).await,
        "OK"
    );
    for id in c.cluster.ids() {
        c.cluster.caught_up(id, Duration::from_secs(10)).await;
    }
    let leader: String = q(c.port(c.leader), &["INFO", "replication"]).await;
    assert!(leader.contains("role:master\r\n"), "{leader}");
    assert!(leader.contains("connected_slaves:2\r\n"), "{leader}");
    assert!(
        leader.contains(&format!("cluster_leader_id:{}\r\n", c.leader)),
        "{leader}"
    );
    assert!(leader.contains("cluster_term:"), "{leader}");
    for follower in c.followers() {
        let needle = format!("cluster_member_{follower}:addr=");
        assert!(leader.contains(&needle), "{leader}");
        assert!(leader.contains(&format!("id={follower},addr=")), "{leader}");
    }
    assert!(leader.contains(",matched_index="), "{leader}");
    assert!(leader.contains(",lag="), "{leader}");
    let follower_id = c.followers()[0];
    let follower: String = q(c.port(follower_id), &["INFO", "replication"]).await;
    assert!(follower.contains("role:slave\r\n"), "{follower}");
    assert!(follower.contains("master_link_status:up\r\n"), "{follower}");
    assert!(
        follower.contains(&format!("cluster_node_id:{follower_id}\r\n")),
        "{follower}"
    );
    assert!(
        follower.contains(&format!("cluster_leader_id:{}\r\n", c.leader)),
        "{follower}"
    );
    c.cluster.shutdown().await;
}

/// Pipelines `rounds` pairs `SET a i`, `SET b i` (and an MSET every tenth
/// round) on one connection, then reads both back in the same pipeline.
fn pipelined_writes(con: &mut redis::Connection, [a, b]: [&str; 2], rounds: i64) -> (i64, i64) {
    let mut pipe = redis::pipe();
    for i in 0..rounds {
        if i % 10 == 9 {
            pipe.cmd("MSET").arg(a).arg(i).arg(b).arg(i).ignore();
        } else {
            pipe.cmd("SET").arg(a).arg(i).ignore();
            pipe.cmd("SET").arg(b).arg(i).ignore();
        }
    }
    pipe.cmd("GET").arg(a).cmd("GET").arg(b);
    pipe.query(con).unwrap()
}

#[actix_rt::test]
async fn pipelined_writes_commit_in_order_in_few_entries_and_read_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let c = RespCluster::start(205).await;
    const ROUNDS: i64 = 300;
    for writer in [c.leader, c.followers()[0]] {
        let keys = [format!("a{writer}"), format!("b{writer}")];
        let observer = c.port(c.followers()[1]);
        let before = c.cluster.node(c.leader).status().last_log_index.unwrap();
        let done = Arc::new(AtomicBool::new(false));
        // Another client, on another node, reads b then a: a is always
        // written before b, so it never reads a below the b it read.
        let watching = {
            let done = done.clone();
            let [a, b] = keys.clone();
            with_redis(observer, move |con| {
                let mut reads = 0;
                while !done.load(Ordering::SeqCst) || reads < 2 {
                    let b: Option<i64> = cmd(con, &["GET".into(), b.clone()]);
                    let a: Option<i64> = cmd(con, &["GET".into(), a.clone()]);
                    assert!(a >= b, "read b = {b:?}, then a = {a:?}: out of order");
                    reads += 1;
                }
            })
        };
        let [a, b] = keys.clone();
        let written = with_redis(c.port(writer), move |con| {
            let read_back = pipelined_writes(con, [&a, &b], ROUNDS);
            done.store(true, Ordering::SeqCst);
            read_back
        });
        let (read_back, ()) = futures_util::join!(written, watching);
        // Read your writes: the last of each, in the same pipeline.
        assert_eq!(read_back, (ROUNDS - 1, ROUNDS - 1));
        let after = c.cluster.node(c.leader).status().last_log_index.unwrap();
        // Without pipelining each write is an entry (about 570 here).
        let entries = after - before;
        assert!(
            entries <= 570 / 4,
            "{entries} entries for 570 writes through node {writer}"
        );
        assert_eq!(q::<i64>(observer, &["GET", &keys[1]]).await, ROUNDS - 1);
        eprintln!("{entries} entries for 570 writes through node {writer}");
    }
    c.cluster.shutdown().await;
}

#[actix_rt::test]
async fn role_and_cluster_status_name_each_members_client_addresses() {
    let c = RespCluster::start(206).await;
    // Each node's native address as a server would advertise it (the
    // RESP listeners advertised theirs when they bound).
    let native =
        |id: u64| -> std::net::SocketAddr { format!("127.0.0.1:{}", 1000 + id).parse().unwrap() };
    for id in c.cluster.ids() {
        c.cluster.node(id).advertise_client_addr(native(id));
    }
    let leader = c.cluster.node(c.leader);
    let deadline = Instant::now() + Duration::from_secs(15);
    let all_known = |status: &naive_kv::cluster::ClusterStatus| {
        status
            .members
            .iter()
            .all(|m| m.client_addr.is_some() && m.resp_addr.is_some())
    };
    while !c
        .cluster
        .ids()
        .iter()
        .all(|id| all_known(&c.cluster.node(*id).status()))
    {
        assert!(Instant::now() < deadline, "{:?}", leader.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in leader.status().members {
        assert_eq!(m.client_addr, Some(native(m.id)));
        assert_eq!(m.resp_addr.map(|a| a.port()), Some(c.port(m.id)));
    }
    // The native status carries them (what `run_client cluster status` prints).
    let wire = naive_kv::cluster::admin::status_reply(&c.cluster.node(c.followers()[0]).status());
    for m in &wire.members {
        assert_eq!(m.client_addr, native(m.node_id).to_string());
        assert_eq!(m.resp_addr, format!("127.0.0.1:{}", c.port(m.node_id)));
    }
    let info: String = q(c.port(c.leader), &["INFO", "replication"]).await;
    for id in c.followers() {
        let needle = format!(
            "client_addr={},resp_addr=127.0.0.1:{}",
            native(id),
            c.port(id)
        );
        assert!(info.contains(&needle), "{info}");
        let slave = format!("ip=127.0.0.1,port={},", c.port(id));
        assert!(info.contains(&slave), "{info}");
    }
    // ROLE on the leader: master, its applied index, each replica's RESP
    // address and matched index.
    assert_eq!(
        q::<String>(c.port(c.leader), &["SET", "k", "v"]).await,
        "OK"
    );
    let role: redis::Value = q(c.port(c.leader), &["ROLE"]).await;
    let redis::Value::Array(parts) = role else {
        panic!("{role:?}")
    };
    assert_eq!(parts[0], redis::Value::BulkString(b"master".to_vec()));
    let redis::Value::Int(offset) = parts[1] else {
        panic!("{parts:?}")
    };
    assert!(offset > 0, "{parts:?}");
    let redis::Value::Array(replicas) = &parts[2] else {
        panic!("{parts:?}")
    };
    let mut ports: Vec<String> = replicas
        .iter()
        .map(|r| {
            let redis::Value::Array(r) = r else {
                panic!("{r:?}")
            };
            assert_eq!(r[0], redis::Value::BulkString(b"127.0.0.1".to_vec()));
            let redis::Value::BulkString(port) = &r[1] else {
                panic!("{r:?}")
            };
            String::from_utf8(port.clone()).unwrap()
        })
        .collect();
    ports.sort();
    let mut expected: Vec<String> = c
        .followers()
        .iter()
        .map(|id| c.port(*id).to_string())
        .collect();
    expected.sort();
    assert_eq!(ports, expected);
    // ROLE on a follower: slave of the leader's RESP address, connected.
    let role: redis::Value = q(c.port(c.followers()[0]), &["ROLE"]).await;
    let redis::Value::Array(parts) = role else {
        panic!("{role:?}")
    };
    assert_eq!(parts[0], redis::Value::BulkString(b"slave".to_vec()));
    assert_eq!(parts[1], redis::Value::BulkString(b"127.0.0.1".to_vec()));
    assert_eq!(parts[2], redis::Value::Int(i64::from(c.port(c.leader))));
    assert_eq!(parts[3], redis::Value::BulkString(b"connected".to_vec()));
    c.cluster.shutdown().await;
}
