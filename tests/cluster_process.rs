//! Three real `run_server` processes on loopback ports form a cluster;
//! writes go through every node; node 1 (the node that formed the cluster,
//! usually the first leader) is SIGKILLed; the others serve writes again
//! within a few election timeouts; node 1 restarts from its directory and
//! every acknowledged write is read back on every node.
//!
//! Runs only with NAIVEKV_CLUSTER_TESTS=1 (it takes several seconds).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use naive_kv::client::{Client, ClientError};

mod cluster_support;

use cluster_support::{free_ports, long_tests as enabled};

struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    children: BTreeMap<usize, Child>,
}

impl Cluster {
    fn list(&self) -> String {
        let members: Vec<String> = (0..3)
            .map(|i| format!("{}=127.0.0.1:{}", i + 1, self.peer_ports[i]))
            .collect();
        members.join(",")
    }

    /// The shared secret, written beside node 1's directory.
    fn secret_file(&self) -> std::path::PathBuf {
        let path = self.dirs[0].path().join("cluster-secret");
        if !path.exists() {
            std::fs::write(&path, "a process cluster's secret\n").unwrap();
        }
        path
    }

    fn start(&mut self, i: usize) {
        let child = Command::new(env!("CARGO_BIN_EXE_run_server"))
            .arg("--directory")
            .arg(self.dirs[i].path())
            .args(["--port", &self.client_ports[i].to_string()])
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--peer-port", &self.peer_ports[i].to_string()])
            .args(["--cluster", &self.list()])
            .arg("--cluster-secret-file")
            .arg(self.secret_file())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.insert(i, child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children.remove(&i) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_ports[i]))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

/// Retries `put` through node `i` until it is acknowledged or `within`
/// passes; returns whether it was.
async fn put_until(cluster: &Cluster, i: usize, key: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(client) = Client::connect(cluster.addr(i)).await {
            let done: Result<(), ClientError> = client.put(key.to_string(), key.to_string()).await;
            if done.is_ok() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[test]
fn three_processes_survive_a_killed_node() {
    if !enabled() {
        eprintln!("skipped: set NAIVEKV_CLUSTER_TESTS=1");
        return;
    }
    let ports = free_ports(6);
    let mut cluster = Cluster {
        dirs: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
        client_ports: ports[..3].to_vec(),
        peer_ports: ports[3..].to_vec(),
        children: BTreeMap::new(),
    };
    for i in 0..3 {
        cluster.start(i);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut acknowledged = Vec::new();
        for n in 0..30 {
            let key = format!("before-{n}");
            assert!(put_until(&cluster, n % 3, &key, Duration::from_secs(20)).await);
            acknowledged.push(key);
        }
        cluster.kill(0);
        let killed = Instant::now();
        assert!(put_until(&cluster, 1, "after-kill", Duration::from_secs(15)).await);
        eprintln!("writes served again {:?} after SIGKILL", killed.elapsed());
        acknowledged.push("after-kill".into());
        for n in 0..20 {
            let key = format!("during-{n}");
            assert!(put_until(&cluster, 1 + n % 2, &key, Duration::from_secs(10)).await);
            acknowledged.push(key);
        }
        cluster.start(0);
        for i in 0..3 {
            let deadline = Instant::now() + Duration::from_secs(20);
            let client = loop {
                match Client::connect(cluster.addr(i)).await {
                    Ok(client) => break client,
                    Err(e) => assert!(Instant::now() < deadline, "node {i}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            for key in &acknowledged {
                let mut got = client.get(key.clone()).await;
                while got.is_err() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    got = client.get(key.clone()).await;
                }
                assert_eq!(got.unwrap(), Some(Bytes::from(key.clone())), "node {i}");
            }
        }
    });
}

/// Runs `run_server ARGS` and expects it to exit at once with an error;
/// gives its stderr.
fn refused_start(args: &[String]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_run_server"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("run_server {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_cluster_node_needs_a_secret_or_insecure_peers() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let mut args: Vec<String> = vec!["--directory".into(), dir.path().display().to_string()];
    args.extend(["--port".into(), ports[0].to_string()]);
    args.extend(["--node-id".into(), "1".into()]);
    args.extend(["--peer-port".into(), ports[1].to_string()]);
    args.extend(["--cluster".into(), format!("1=127.0.0.1:{}", ports[1])]);
    let stderr = refused_start(&args);
    assert!(stderr.contains("--cluster-secret-file"), "{stderr}");

    let short = dir.path().join("short-secret");
    std::fs::write(&short, "too short\n").unwrap();
    let mut with_short = args.clone();
    with_short.extend(["--cluster-secret-file".into(), short.display().to_string()]);
    let stderr = refused_start(&with_short);
    assert!(stderr.contains("at least 16 bytes"), "{stderr}");
}
